//! The x86 products of Q4_0 weights stored eight rows interleaved (`Q4_0_8_8`, see
//! `quill_quant::interleave`): one load brings 8 bytes of four rows' blocks, so a `vpmaddubsw`
//! multiplies four rows at once against one activation broadcast, each row's sums stay in its own
//! two lanes (one horizontal add per block joins them), and the float chain of `crate::order`
//! runs on 8 rows at once straight from registers. Per 8 rows and block: 4 loads of codes, 8 products, one
//! horizontal add, one float step (the row-at-a-time Q4_0 kernel needs about twice the
//! instructions). Each row's float operations are exactly Q4_0's (`isum + corr`, `d * dx`, chain
//! `s % 4`), so an interleaved file gives the same bits as its Q4_0 original.

#![allow(clippy::missing_safety_doc)]

use std::arch::x86_64::*;

use super::x86_avx2::Avx2;
use super::x86_dot::{ld, sum_chains, Dot};
use crate::act::ActBlocks;
use crate::simd::prefetch_ahead;
use crate::CHAINS;

/// Bytes of one group block: 8 F16 scales, then 128 bytes of codes (8-byte chunks, row `i % 8`
/// bytes `8 * (i / 8)..`, XOR 0x88).
pub(crate) const GROUP_BLOCK: usize = 144;

/// Tokens per tile: each group block is decoded once per tile.
const TOKENS: usize = 4;

/// The 8 rows' unsigned codes of one group block: `[lo0, hi0, lo1, hi1, ..]` for the four
/// 32-byte loads (rows 0-3 bytes 0-8, rows 4-7 bytes 0-8, rows 0-3 bytes 8-16, rows 4-7 bytes
/// 8-16); `lo` holds elements `j`, `hi` elements `j + 16` of byte `j`.
#[inline(always)]
unsafe fn group_codes(bp: *const u8) -> [__m256i; 8] {
    // SAFETY: within this function's contract: the CPU has AVX2 and `bp` points at a whole
    // group block.
    unsafe {
        let (m, flip) = (_mm256_set1_epi8(0x0f), _mm256_set1_epi8(0x88u8 as i8));
        let mut c = [_mm256_setzero_si256(); 8];
        for i in 0..4 {
            let u = _mm256_xor_si256(ld(bp.add(16 + 32 * i)), flip);
            c[2 * i] = _mm256_and_si256(u, m);
            c[2 * i + 1] = _mm256_and_si256(_mm256_srli_epi16::<4>(u), m);
        }
        c
    }
}

/// 8 bytes at `p` in every 64-bit lane.
#[inline(always)]
unsafe fn bcast8(p: *const i8) -> __m256i {
    // SAFETY: the caller's contract: the CPU has AVX2, `p` holds 8 bytes.
    unsafe { _mm256_set1_epi64x(p.cast::<i64>().read_unaligned()) }
}

/// The 8 rows' integer sums of one block against a token's 32 codes at `x`, lanes in the order
/// rows 0, 1, 4, 5, 2, 3, 6, 7.
#[inline(always)]
unsafe fn block_isums<D: Dot>(c: &[__m256i; 8], x: *const i8) -> __m256i {
    // SAFETY: within this function's contract: the CPU has the caller's features and `x` holds
    // 32 codes.
    unsafe {
        let xs = [bcast8(x), bcast8(x.add(16)), bcast8(x.add(8)), bcast8(x.add(24))];
        let r03 = D::dot4([c[0], c[1], c[4], c[5]], xs);
        let r47 = D::dot4([c[2], c[3], c[6], c[7]], xs);
        _mm256_hadd_epi32(r03, r47)
    }
}

/// Group block `b` (at `w`) against tokens `t0..t0 + T` of `a` into chain `c` of each token.
#[inline(always)]
unsafe fn group_block<D: Dot, const T: usize>(
    w: *const u8,
    b: usize,
    c: usize,
    a: &ActBlocks<'_>,
    t0: usize,
    acc: &mut [[__m256; CHAINS]; T],
) {
    // SAFETY: within this function's contract (that of `group`).
    unsafe {
        let bp = w.add(b * GROUP_BLOCK);
        prefetch_ahead::<Avx2>(bp, GROUP_BLOCK);
        // Scales in the lanes' row order (0, 1, 4, 5, 2, 3, 6, 7).
        let d = _mm256_cvtph_ps(_mm_shuffle_epi32::<0xD8>(_mm_loadu_si128(bp.cast())));
        let codes = group_codes(bp);
        for (t, acc) in acc.iter_mut().enumerate() {
            let s = (t0 + t) * a.n_sb + b;
            let i = block_isums::<D>(&codes, a.qs.as_ptr().add((t0 + t) * a.k + 32 * b));
            let i = _mm256_add_epi32(i, _mm256_set1_epi32(*a.corr.get_unchecked(s)));
            let scale = _mm256_mul_ps(d, _mm256_set1_ps(*a.dx.get_unchecked(s)));
            acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i), scale, acc[c]);
        }
    }
}

/// One 8-row group (`nb` group blocks at `w`) against tokens `t0..t0 + T` of `a`, into
/// `out[t * stride + r]`.
#[inline(always)]
unsafe fn group<D: Dot, const T: usize>(
    w: *const u8,
    nb: usize,
    a: &ActBlocks<'_>,
    t0: usize,
    out: *mut f32,
    stride: usize,
) {
    // SAFETY: within this function's contract: the CPU has the caller's features, `w` holds
    // `nb` group blocks, `a` holds tokens t0..t0 + T of `nb` blocks each and `out` 8 columns of
    // T rows `stride` apart.
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); CHAINS]; T];
        let full = nb / CHAINS * CHAINS;
        for b in (0..full).step_by(CHAINS) {
            for c in 0..CHAINS {
                group_block::<D, T>(w, b + c, c, a, t0, &mut acc);
            }
        }
        for b in full..nb {
            group_block::<D, T>(w, b, b - full, a, t0, &mut acc);
        }
        for (t, acc) in acc.into_iter().enumerate() {
            let v = _mm256_permute4x64_epi64::<0xD8>(_mm256_castps_si256(sum_chains(acc)));
            _mm256_storeu_si256(out.add(t * stride).cast(), v);
        }
    }
}

/// Interleaved rows `w` (whole groups of 8 rows, `k` elements each) against every token of `a`
/// into `out[t * stride + r]`: per group, tiles of up to [`TOKENS`] tokens.
#[inline(always)]
pub(crate) unsafe fn product<D: Dot>(w: &[u8], k: usize, a: &ActBlocks<'_>, out: *mut f32, stride: usize) {
    // SAFETY: within this function's contract: the CPU has the caller's features, `w` holds
    // whole groups of `k / 32` group blocks, `a` is in the block layout of Q8_0 for `k`, `out`
    // has `w`'s rows as columns of `a.n_tokens` rows `stride` apart.
    unsafe {
        let nb = k / 32;
        let gb = nb * GROUP_BLOCK;
        debug_assert!(w.len().is_multiple_of(gb));
        for g in 0..w.len() / gb {
            let (wg, og) = (w.as_ptr().add(g * gb), out.add(8 * g));
            let mut t0 = 0;
            while t0 < a.n_tokens {
                match a.n_tokens - t0 {
                    1 => group::<D, 1>(wg, nb, a, t0, og.add(t0 * stride), stride),
                    2 => group::<D, 2>(wg, nb, a, t0, og.add(t0 * stride), stride),
                    3 => group::<D, 3>(wg, nb, a, t0, og.add(t0 * stride), stride),
                    _ => group::<D, TOKENS>(wg, nb, a, t0, og.add(t0 * stride), stride),
                }
                t0 += TOKENS;
            }
        }
    }
}
