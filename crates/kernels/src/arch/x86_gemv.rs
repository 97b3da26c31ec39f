//! The x86 GEMV (decode) of the quantized formats, written once over a byte dot product
//! ([`Dot`]: AVX2's `vpmaddubsw`, or `vpdpbusd` for the AVX-512 and AVX-VNNI tables), in
//! exactly the GEMM micro-kernel's order of float operations, so that a token gets bit for bit
//! the same numbers alone (GEMV) as inside a batch (GEMM): what a multi-sequence engine needs
//! for batch invariance.
//!
//! That order is, per output row and per scale block `s` in turn, into chain `c = s % 4`:
//! `acc[c] = fma(f32(isum_s + corr_s), dw_s * dx_s, acc[c])`, then for formats with a minimum
//! `acc[c] = fma(mw_s, sx_s, acc[c])`, and at the end `(acc[0] + acc[1]) + (acc[2] + acc[3])`
//! (four chains hide the FMA latency); where `isum_s` is the exact integer dot product of the block's
//! codes and activation codes. Integers are exact in any order, so the GEMV gets them its own
//! way. Each row is streamed alone, start to end (one sequential stream reads fastest: two rows
//! side by side, sharing the activation loads, ran 30% faster from cache and 25% slower from
//! memory on Zen 3, bench/avx2/DECODE_STEP.md); every
//! pair of scale blocks leaves one register of partial sums, four lanes per block, in a small
//! buffer, with the blocks' scales. Then for 8 rows at once the buffered registers are summed
//! across lanes with the rows landing on lanes (horizontal adds), and the float chain runs on
//! 8 rows as in GEMM.
//!
//! Legacy blocks are read in pairs against the activation in pair order (`p32`: the first 16
//! codes of both blocks, then their last 16), so that one `vpmaddubsw` serves two blocks.
//!
//! The same kernel runs a decode step of a few tokens (`step_quant`): each weight block is
//! loaded and decoded once into registers and multiplied by up to [`TOKENS`] tokens'
//! activations, each token's sums going to its own buffer and float chains; so a token's result
//! is the one-token GEMV's, bit for bit. Past 4 or 5 tokens (measured, the table's
//! `min_tokens`) the GEMM's panels cost less per token.

#![allow(clippy::missing_safety_doc)]

use std::arch::x86_64::*;
use std::marker::PhantomData;
use std::mem::MaybeUninit;

use gguf_file::GgmlType;
use quill_quant::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0};

// The float formats' GEMV (written once for every backend), so that this module names them all.
pub(crate) use super::x86_avx2::{gemv_bf16, gemv_f16, gemv_f32};
use crate::act::{ActBlocks, GemvAct};
use crate::formats::k_layout::*;
use crate::formats::{LegacyBlock, MAX_LEGACY_BYTES};
use crate::simd::prefetch_ahead;
use crate::CHAINS;

pub(crate) use super::x86_dot::{ld, rd16, sum_chains, Dot, Dpbusd, Maddubs};
// The prefetch instruction (the same for every x86 table: SSE's).
use super::x86_avx2::Avx2;

/// Scale blocks per buffered segment of a row (rows with more are done in segments: the float
/// chain carries on across them, so the order is unchanged). Large enough for every GPT-2 row
/// (6400 elements = 400 Q6_K sub-blocks) to be one segment: a row split in segments is read as
/// interleaved streams, which cut a Q6_K GEMV at k = 3072 from 7.7 to 4.7 GB/s here. The
/// buffers take 112 KB of stack.
const SEG: usize = 512;

/// Two 16-byte loads as one register.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn load2x16(p0: *const u8, p1: *const u8) -> __m256i {
    // SAFETY: within this function's contract: the CPU has the target features it (or its
    // caller) names, and the caller's pointers and lengths are valid for what it touches.
    unsafe {
        _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(_mm_loadu_si128(p0.cast())), _mm_loadu_si128(p1.cast()))
    }
}

/// Transposes 8 rows of 8 dwords: output `j` holds dword `j` of every input row.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) fn transpose8(r: [__m256i; 8]) -> [__m256i; 8] {
    let t: [__m256i; 8] = std::array::from_fn(|i| {
        let (a, b) = (r[2 * (i / 2)], r[2 * (i / 2) + 1]);
        if i % 2 == 0 {
            _mm256_unpacklo_epi32(a, b)
        } else {
            _mm256_unpackhi_epi32(a, b)
        }
    });
    // u[4g + e]: dword e (of each 128-bit half) of rows 4g..4g+4.
    let u: [__m256i; 8] = std::array::from_fn(|i| {
        let (g, e) = (i / 4, i % 4);
        let (a, b) = (t[4 * g + e / 2], t[4 * g + 2 + e / 2]);
        if e % 2 == 0 {
            _mm256_unpacklo_epi64(a, b)
        } else {
            _mm256_unpackhi_epi64(a, b)
        }
    });
    std::array::from_fn(|j| {
        let (e, hi) = (j % 4, j / 4);
        if hi == 0 {
            _mm256_permute2x128_si256::<0x20>(u[e], u[4 + e])
        } else {
            _mm256_permute2x128_si256::<0x31>(u[e], u[4 + e])
        }
    })
}

/// Where one row's segment is reduced to: `units[u * 8 + row]` (per token) holds the partial sums of scale
/// blocks `2u` (low half) and `2u + 1` (high half); scales are either f16 bits `[s][8 rows]`
/// (legacy formats) or f32 `[row][SEG]` (K-quants, transposed later).
#[derive(Clone, Copy)]
struct RowSums {
    /// Token `t`'s units start at `units + t * ustride`.
    units: *mut __m256i,
    ustride: usize,
    d16: *mut u16,
    m16: *mut u16,
    dw: *mut f32,
    mw: *mut f32,
}

/// What a weight format contributes: its block geometry and the reduction of one row's segment.
trait Fmt {
    /// Scale blocks per weight block.
    const SB_PER_BLOCK: usize;
    /// Elements per scale block.
    const SB: usize;
    const BYTES: usize;
    const MIN: bool;
    /// Whether the integer sums already include the codes' offset (Q8_0's sign trick), so that
    /// the activation's `corr` is not added.
    const SIGNED: bool;
    /// Whether scales are f16 bits (`d16`, `m16`) rather than f32 (`dw`, `mw`).
    const F16_SCALES: bool;
    /// Reduces `nb` blocks at `p` of row `r` into `out`, against `T` tokens' activations of
    /// the same segment (`x`); each weight block is loaded and decoded once for all `T`. Units are written up
    /// to an even number of scale blocks.
    unsafe fn row<D: Dot, const T: usize>(p: *const u8, x: Acts, nb: usize, r: usize, out: &RowSums);
}

/// The activations of `T` tokens from one segment on: `x` natural order (tokens `k` apart),
/// `p32` pair order (tokens `pk` apart).
#[derive(Clone, Copy)]
struct Acts {
    x: *const i8,
    p32: *const i8,
    k: usize,
    pk: usize,
}

/// The 32 codes of a 4- or 5-bit legacy block at `b` in element order.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) unsafe fn legacy_codes<B: LegacyBlock>(b: *const u8) -> __m256i {
    // SAFETY: within this function's contract: the CPU has the target features it (or its
    // caller) names, and the caller's pointers and lengths are valid for what it touches.
    unsafe {
        let q = _mm_loadu_si128(b.add(B::QS).cast());
        let both = _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(q), _mm_srli_epi16::<4>(q));
        let c = _mm256_and_si256(both, _mm256_set1_epi8(0x0f));
        match B::QH {
            Some(qh) => _mm256_or_si256(c, bit16(b.add(qh).cast::<u32>().read_unaligned())),
            None => c,
        }
    }
}

/// The codes of sub-blocks `2h` and `2h + 1` of a Q4_K (`FIVE = false`) or Q5_K block at `bp`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) unsafe fn k4_codes<const FIVE: bool>(bp: *const u8, h: usize) -> (__m256i, __m256i) {
    // SAFETY: within this function's contract: the CPU has the target features it (or its
    // caller) names, and the caller's pointers and lengths are valid for what it touches.
    unsafe {
        let mask = _mm256_set1_epi8(0x0f);
        let q = ld(bp.add(k4_qs(FIVE) + 32 * h));
        let mut lo = _mm256_and_si256(q, mask);
        let mut hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), mask);
        if FIVE {
            // Sub-block j takes bit j of each qh byte as its fifth bit.
            let (qh, one) = (ld(bp.add(Q5K_QH)), _mm256_set1_epi8(1));
            let b0 = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * h as i32)), one);
            let b1 = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * h as i32 + 1)), one);
            lo = _mm256_or_si256(lo, _mm256_slli_epi16::<4>(b0));
            hi = _mm256_or_si256(hi, _mm256_slli_epi16::<4>(b1));
        }
        (lo, hi)
    }
}

/// The codes of sub-blocks `2h` and `2h + 1` of a Q4_K (`FIVE = false`) or Q5_K block at `bp`
/// in pair order (as [`legacy_pair_codes`]): elements 0..16 of both sub-blocks, then 16..32 of
/// both, so that one [`Dot::dot2`] against the activation's pair order leaves both sub-blocks'
/// sums in one unit (no lane crossing after the products). Each 16 bytes of nibbles is loaded
/// into both lanes and shifted per lane: the low nibbles (sub-block `2h`) stay in the low lane,
/// the high ones (`2h + 1`) come down in the high lane.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn k4_pair_codes<const FIVE: bool>(bp: *const u8, h: usize) -> (__m256i, __m256i) {
    // SAFETY: within this function's contract: the CPU has the target features it (or its
    // caller) names, and the caller's pointers and lengths are valid for what it touches.
    unsafe {
        let both =
            |p: *const u8, sh: __m256i| _mm256_srlv_epi32(_mm256_broadcastsi128_si256(_mm_loadu_si128(p.cast())), sh);
        let (m, nib) = (_mm256_set1_epi8(0x0f), _mm256_set_epi32(4, 4, 4, 4, 0, 0, 0, 0));
        let q = bp.add(k4_qs(FIVE) + 32 * h);
        let (mut a, mut b) = (_mm256_and_si256(both(q, nib), m), _mm256_and_si256(both(q.add(16), nib), m));
        if FIVE {
            // Sub-block j takes bit j of each qh byte (element i's in byte i) as its fifth bit.
            let (lo, hi) = (2 * h as i32, 2 * h as i32 + 1);
            let (sh, one) = (_mm256_set_epi32(hi, hi, hi, hi, lo, lo, lo, lo), _mm256_set1_epi8(1));
            let fifth = |p: *const u8| _mm256_slli_epi16::<4>(_mm256_and_si256(both(p, sh), one));
            a = _mm256_or_si256(a, fifth(bp.add(Q5K_QH)));
            b = _mm256_or_si256(b, fifth(bp.add(Q5K_QH + 16)));
        }
        (a, b)
    }
}

/// The codes of elements `128h + 32c..128h + 32c + 32` of a Q6_K block at `bp`, in order.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) unsafe fn q6k_codes(bp: *const u8, h: usize, c: usize) -> __m256i {
    // SAFETY: within this function's contract: the CPU has the target features it (or its
    // caller) names, and the caller's pointers and lengths are valid for what it touches.
    unsafe {
        let (m4, m30) = (_mm256_set1_epi8(0x0f), _mm256_set1_epi8(0x30));
        // Low 4 bits from ql (low nibbles for c < 2, high for c >= 2), high 2 bits from qh at 2c.
        let ql = ld(bp.add(Q6K_QL + 64 * h + 32 * (c % 2)));
        let ql = if c < 2 { ql } else { _mm256_srli_epi16::<4>(ql) };
        let qh = ld(bp.add(Q6K_QH + 32 * h));
        let qh = match c {
            0 => _mm256_slli_epi16::<4>(qh),
            1 => _mm256_slli_epi16::<2>(qh),
            2 => qh,
            _ => _mm256_srli_epi16::<2>(qh),
        };
        _mm256_or_si256(_mm256_and_si256(ql, m4), _mm256_and_si256(qh, m30))
    }
}

/// Byte `j` of the result is 16 if bit `j` of the 32-bit `bits` is set, else 0. (Not written as
/// half of [`bit16_pair`]: packing one block's bits into its 64-bit form cost the GEMM panels'
/// Q5_0 unpacking measurably.)
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) fn bit16(bits: u32) -> __m256i {
    let v = _mm256_shuffle_epi8(
        _mm256_set1_epi32(bits as i32),
        _mm256_set_epi64x(0x0303_0303_0303_0303, 0x0202_0202_0202_0202, 0x0101_0101_0101_0101, 0),
    );
    let sel = _mm256_set1_epi64x(0x8040_2010_0804_0201_u64 as i64);
    _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(v, sel), sel), _mm256_set1_epi8(16))
}

/// The fifth bits of a pair of blocks in pair order, from `bits` (the first block's 32 bits low,
/// the second's high): byte `j` of the first result is 16 if bit `j` of the first block is set
/// (`j < 16`) or bit `j - 16` of the second (`j >= 16`); the second result likewise from bits
/// 16..32 of each. One broadcast serves both (one shuffle each picks the bytes).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn bit16_pair(bits: u64) -> (__m256i, __m256i) {
    let v = _mm256_set1_epi64x(bits as i64);
    let sel = _mm256_set1_epi64x(0x8040_2010_0804_0201_u64 as i64);
    let expand = |idx: __m256i| {
        let b = _mm256_and_si256(_mm256_shuffle_epi8(v, idx), sel);
        _mm256_and_si256(_mm256_cmpeq_epi8(b, sel), _mm256_set1_epi8(16))
    };
    let (b, c) = (0x0101_0101_0101_0101_i64, 0x0404_0404_0404_0404_i64);
    (expand(_mm256_set_epi64x(c + b, c, b, 0)), expand(_mm256_set_epi64x(c + 3 * b, c + 2 * b, 3 * b, 2 * b)))
}

/// The legacy 32-element formats (their byte layout from [`LegacyBlock`]).
struct Legacy<B>(PhantomData<B>);

impl<B: LegacyBlock> Fmt for Legacy<B> {
    const SB_PER_BLOCK: usize = 1;
    const SB: usize = 32;
    const BYTES: usize = B::BYTES;
    const MIN: bool = B::M.is_some();
    const SIGNED: bool = B::SIGNED;
    const F16_SCALES: bool = true;

    #[inline(always)]
    unsafe fn row<D: Dot, const T: usize>(p: *const u8, x: Acts, nb: usize, r: usize, out: &RowSums) {
        // SAFETY: within this function's contract: the CPU has the target features it (or its
        // caller) names, and the caller's pointers and lengths are valid for what it touches.
        unsafe { legacy_row::<B, D, T>(p, x.p32, x.pk, nb, r, out) }
    }
}

/// The codes of one pair of legacy blocks (`b1` may be a zero block past the row's end) in
/// pair order, decoded once for every token: the first 16 codes of both blocks and their last
/// 16 (for Q8_0's signed codes also their absolute values, for the sign trick).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn legacy_pair_codes<B: LegacyBlock>(b0: *const u8, b1: *const u8) -> [__m256i; 4] {
    // SAFETY: within this function's contract: the CPU has the target features it (or its
    // caller) names, and the caller's pointers and lengths are valid for what it touches.
    unsafe {
        if B::SIGNED {
            let lo = load2x16(b0.add(B::QS), b1.add(B::QS));
            let hi = load2x16(b0.add(B::QS + 16), b1.add(B::QS + 16));
            return [lo, hi, _mm256_abs_epi8(lo), _mm256_abs_epi8(hi)];
        }
        let q = load2x16(b0.add(B::QS), b1.add(B::QS));
        let m = _mm256_set1_epi8(0x0f);
        let (mut lo, mut hi) = (_mm256_and_si256(q, m), _mm256_and_si256(_mm256_srli_epi16::<4>(q), m));
        if let Some(qh) = B::QH {
            let h0 = b0.add(qh).cast::<u32>().read_unaligned();
            let h1 = b1.add(qh).cast::<u32>().read_unaligned();
            let (l, h) = bit16_pair(u64::from(h0) | u64::from(h1) << 32);
            lo = _mm256_or_si256(lo, l);
            hi = _mm256_or_si256(hi, h);
        }
        [lo, hi, lo, hi]
    }
}

/// A pair's codes ([`legacy_pair_codes`]) against 64 activation bytes in pair order: the
/// integer sums of both blocks, four lanes each.
#[inline(always)]
unsafe fn legacy_pair_dot<B: LegacyBlock, D: Dot>(c: &[__m256i; 4], a: *const i8) -> __m256i {
    // SAFETY: within this function's contract: the CPU has the target features its caller
    // names, and the caller's pointers and lengths are valid for what it touches.
    unsafe {
        let (x0, x1) = (ld(a.cast()), ld(a.add(32).cast()));
        if B::SIGNED {
            // ggml's sign trick: |w| x (x with w's sign) are the products w x.
            let lo = D::dot(_mm256_setzero_si256(), c[2], _mm256_sign_epi8(x0, c[0]));
            return D::dot(lo, c[3], _mm256_sign_epi8(x1, c[1]));
        }
        D::dot2(c[0], x0, c[1], x1)
    }
}

// The functions generic over `D` are `#[inline(always)]` without target features, so that each
// entry point's features reach every instruction; they hold no closures, which would not
// inherit those features (and their intrinsics would become calls).

#[inline(always)]
unsafe fn legacy_row<B: LegacyBlock, D: Dot, const T: usize>(
    p: *const u8,
    p32: *const i8,
    pk: usize,
    nb: usize,
    r: usize,
    out: &RowSums,
) {
    // SAFETY: within this function's contract: the CPU has the target features its caller
    // names, and the caller's pointers and lengths are valid for what it touches.
    unsafe {
        let zero = [0u8; MAX_LEGACY_BYTES];
        let full = nb / 2 * 2;
        // A pointer that steps by a pair (rather than `p + b * BYTES` per pair: LLVM kept that
        // multiply by 18, 22 or 34 in the loop, five instructions of about 45).
        let mut b0 = p;
        for b in (0..full).step_by(2) {
            legacy_pair::<B, D, T>(b0, p32, pk, b, b0.add(B::BYTES), r, out);
            b0 = b0.add(2 * B::BYTES);
        }
        if full < nb {
            // The odd last block pairs with a zero block (zero codes, zero scale).
            legacy_pair::<B, D, T>(b0, p32, pk, full, zero.as_ptr(), r, out);
        }
    }
}

/// Blocks `b` (at `b0`) and `b + 1` (at `b1`) of row `r` against `T` tokens into `out`.
#[inline(always)]
unsafe fn legacy_pair<B: LegacyBlock, D: Dot, const T: usize>(
    b0: *const u8,
    p32: *const i8,
    pk: usize,
    b: usize,
    b1: *const u8,
    r: usize,
    out: &RowSums,
) {
    // SAFETY: within this function's contract: the CPU has the target features its caller
    // names, and the caller's pointers and lengths are valid for what it touches.
    unsafe {
        prefetch_ahead::<Avx2>(b0, 2 * B::BYTES);
        let codes = legacy_pair_codes::<B>(b0, b1);
        for t in 0..T {
            *out.units.add(t * out.ustride + b / 2 * 8 + r) = legacy_pair_dot::<B, D>(&codes, p32.add(t * pk + 32 * b));
        }
        *out.d16.add(b * 8 + r) = rd16(b0.add(B::D));
        *out.d16.add((b + 1) * 8 + r) = rd16(b1.add(B::D));
        if let Some(m) = B::M {
            *out.m16.add(b * 8 + r) = rd16(b0.add(m));
            *out.m16.add((b + 1) * 8 + r) = rd16(b1.add(m));
        }
    }
}

/// `[sc0..8]` and `[m0..8]` of a Q4_K / Q5_K block as f32.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) unsafe fn k4_scales_mins(s: *const u8) -> (__m256, __m256) {
    // SAFETY: within this function's contract: the CPU has the target features it (or its
    // caller) names, and the caller's pointers and lengths are valid for what it touches.
    unsafe {
        let (sc, m) = crate::decode::k4_scale_min_words(s);
        let f = |v: u64| _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(v as i64)));
        (f(sc), f(m))
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) fn f16_to_f32(bits: u16) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(bits))))
}

/// Q4_K (`FIVE = false`, 144 bytes) and Q5_K (176 bytes): 8 sub-blocks of 32 per block, scale
/// `d * sc` and minimum `-(dmin * m)` each (as the portable decoder computes them).
struct K4<const FIVE: bool>;

impl<const FIVE: bool> Fmt for K4<FIVE> {
    const SB_PER_BLOCK: usize = 8;
    const SB: usize = 32;
    const BYTES: usize = k4_bytes(FIVE);
    const MIN: bool = true;
    const SIGNED: bool = false;
    const F16_SCALES: bool = false;

    #[inline(always)]
    unsafe fn row<D: Dot, const T: usize>(p: *const u8, x: Acts, nb: usize, r: usize, out: &RowSums) {
        // SAFETY: within this function's contract: the CPU has the target features it (or its
        // caller) names, and the caller's pointers and lengths are valid for what it touches.
        unsafe { k4_row::<FIVE, D, T>(p, x.p32, x.pk, nb, r, out) }
    }
}

#[inline(always)]
unsafe fn k4_row<const FIVE: bool, D: Dot, const T: usize>(
    p: *const u8,
    p32: *const i8,
    pk: usize,
    nb: usize,
    r: usize,
    out: &RowSums,
) {
    // SAFETY: within this function's contract: the CPU has the target features it (or its
    // caller) names, and the caller's pointers and lengths are valid for what it touches.
    unsafe {
        let bytes = <K4<FIVE> as Fmt>::BYTES;
        for b in 0..nb {
            let bp = p.add(b * bytes);
            prefetch_ahead::<Avx2>(bp, bytes);
            for h in 0..4 {
                let (c0, c1) = k4_pair_codes::<FIVE>(bp, h);
                for t in 0..T {
                    let xb = p32.add(t * pk + 256 * b + 64 * h);
                    *out.units.add(t * out.ustride + (4 * b + h) * 8 + r) =
                        D::dot2(c0, ld(xb.cast()), c1, ld(xb.add(32).cast()));
                }
            }
            // `d` and `dmin` (adjacent f16) converted together: one 32-bit load, one conversion
            // (two 16-bit inserts cost the FP load pipes on Zen 3).
            const { assert!(K4_DMIN == K4_D + 2) };
            let dd = _mm_cvtph_ps(_mm_cvtsi32_si128(bp.add(K4_D).cast::<i32>().read_unaligned()));
            let (d, dmin) = (_mm256_broadcastss_ps(dd), _mm256_broadcastss_ps(_mm_movehdup_ps(dd)));
            let (sc, m) = k4_scales_mins(bp.add(K4_SCALES));
            let at = r * SEG + 8 * b;
            _mm256_storeu_ps(out.dw.add(at), _mm256_mul_ps(d, sc));
            let mw = _mm256_mul_ps(dmin, m);
            _mm256_storeu_ps(out.mw.add(at), _mm256_xor_ps(mw, _mm256_set1_ps(-0.0)));
        }
    }
}

/// Q6_K (210 bytes): 16 sub-blocks of 16, scale `d * sc` (signed `sc`), codes offset by 32.
struct Q6K;

impl Fmt for Q6K {
    const SB_PER_BLOCK: usize = 16;
    const SB: usize = 16;
    const BYTES: usize = Q6K_BYTES;
    const MIN: bool = false;
    const SIGNED: bool = false;
    const F16_SCALES: bool = false;

    #[inline(always)]
    unsafe fn row<D: Dot, const T: usize>(p: *const u8, x: Acts, nb: usize, r: usize, out: &RowSums) {
        // SAFETY: within this function's contract: the CPU has the target features it (or its
        // caller) names, and the caller's pointers and lengths are valid for what it touches.
        unsafe { q6k_row::<D, T>(p, x.x, x.k, nb, r, out) }
    }
}

#[inline(always)]
unsafe fn q6k_row<D: Dot, const T: usize>(p: *const u8, x: *const i8, k: usize, nb: usize, r: usize, out: &RowSums) {
    // SAFETY: within this function's contract: the CPU has the target features it (or its
    // caller) names, and the caller's pointers and lengths are valid for what it touches.
    unsafe {
        for b in 0..nb {
            let bp = p.add(Q6K_BYTES * b);
            prefetch_ahead::<Avx2>(bp, Q6K_BYTES);
            for h in 0..2 {
                // 32 codes each: elements 128h + 32c.., i.e. sub-blocks 8h + 2c and 8h + 2c + 1,
                // whose sums land in the low and high halves.
                for c in 0..4 {
                    let yc = q6k_codes(bp, h, c);
                    for t in 0..T {
                        let xb = x.add(t * k + 256 * b + 128 * h + 32 * c);
                        *out.units.add(t * out.ustride + (8 * b + 4 * h + c) * 8 + r) =
                            D::dot(_mm256_setzero_si256(), yc, ld(xb.cast()));
                    }
                }
            }
            let d = _mm256_set1_ps(f16_to_f32(rd16(bp.add(Q6K_D))));
            for h in 0..2 {
                let sc = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(bp.add(Q6K_SCALES + 8 * h).cast())));
                _mm256_storeu_ps(out.dw.add(r * SEG + 16 * b + 8 * h), _mm256_mul_ps(d, sc));
            }
        }
    }
}

/// Sums 8 rows' registers of one unit across lanes: the rows' sums of the unit's first scale
/// block (lanes = rows), then of its second. Unpacks and adds rather than `vphaddd` (which Zen 3
/// runs on one pipe, two cycles each: that alone bound this step).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn unit_sums(u: *const __m256i) -> (__m256i, __m256i) {
    // SAFETY: within this function's contract: the CPU has the target features it (or its
    // caller) names, and the caller's pointers and lengths are valid for what it touches.
    unsafe {
        let v: [__m256i; 8] = std::array::from_fn(|r| *u.add(r));
        // Per 128-bit half (a block), rows a and b: [a0 + a2, b0 + b2, a1 + a3, b1 + b3].
        let two = |a, b| _mm256_add_epi32(_mm256_unpacklo_epi32(a, b), _mm256_unpackhi_epi32(a, b));
        // Then four rows' whole sums per half: [r0, r1, r2, r3].
        let four = |p, q| _mm256_add_epi32(_mm256_unpacklo_epi64(p, q), _mm256_unpackhi_epi64(p, q));
        let a = four(two(v[0], v[1]), two(v[2], v[3]));
        let b = four(two(v[4], v[5]), two(v[6], v[7]));
        (_mm256_permute2x128_si256::<0x20>(a, b), _mm256_permute2x128_si256::<0x31>(a, b))
    }
}

/// Tokens per tile: each weight block is decoded once per tile and multiplied by every token
/// of it (more would spill the per-token state of the float chains).
const TOKENS: usize = 4;

/// The per-row buffers of [`tile`] for up to `T` tokens (on the stack: uninitialised, so they
/// cost nothing until written, and sized by `T` so that a GEMV's frame stays small).
struct Buffers<const T: usize> {
    units: [[MaybeUninit<__m256i>; SEG / 2 * 8]; T],
    d16: [MaybeUninit<u16>; SEG * 8],
    m16: [MaybeUninit<u16>; SEG * 8],
    dw: [MaybeUninit<f32>; SEG * 8],
    mw: [MaybeUninit<f32>; SEG * 8],
}

/// One product: quantized rows `w` (`rb` bytes, `k` elements each) against every token of `a`,
/// into `out[t * stride + r]`; `p32` holds the tokens' codes in pair order (`k` rounded up to 64
/// apart) for the 32-element formats.
#[derive(Clone, Copy)]
struct Job<'a> {
    w: &'a [u8],
    rb: usize,
    k: usize,
    a: &'a ActBlocks<'a>,
    p32: &'a [i8],
    out: *mut f32,
    stride: usize,
}

/// Every row against every token of `j` (see the module docs): 8 rows at a time, each 8-row
/// group against the tokens in tiles of up to [`TOKENS`] (the group's rows stream from memory
/// once, later tiles read them from cache).
#[inline(always)]
unsafe fn tokens<F: Fmt, D: Dot>(j: &Job<'_>) {
    // SAFETY: within this function's contract: the CPU has the target features it (or its
    // caller) names, and the caller's pointers and lengths are valid for what it touches.
    unsafe {
        debug_assert_eq!(j.a.sblock, F::SB);
        debug_assert_eq!(j.k % (F::SB * F::SB_PER_BLOCK), 0);
        debug_assert!(j.w.len().is_multiple_of(j.rb));
        debug_assert!(F::SB != 32 || j.p32.len() >= j.a.n_tokens * j.k.next_multiple_of(64));
        match j.a.n_tokens {
            1 => tiles::<F, D, 1>(j),
            2 => tiles::<F, D, 2>(j),
            3 => tiles::<F, D, 3>(j),
            _ => tiles::<F, D, TOKENS>(j),
        }
    }
}

/// [`tokens`] with buffers for tiles of up to `T` tokens.
#[inline(always)]
unsafe fn tiles<F: Fmt, D: Dot, const T: usize>(j: &Job<'_>) {
    // SAFETY: within this function's contract: the CPU has the target features it (or its
    // caller) names, and the caller's pointers and lengths are valid for what it touches.
    unsafe {
        let Job { w, rb, k, a, p32, out, stride } = *j;
        let mut buf = Buffers::<T> {
            units: [const { [const { MaybeUninit::uninit() }; SEG / 2 * 8] }; T],
            d16: [const { MaybeUninit::uninit() }; SEG * 8],
            m16: [const { MaybeUninit::uninit() }; SEG * 8],
            dw: [const { MaybeUninit::uninit() }; SEG * 8],
            mw: [const { MaybeUninit::uninit() }; SEG * 8],
        };
        let sums = RowSums {
            units: buf.units.as_mut_ptr().cast(),
            ustride: a.n_sb.min(SEG).div_ceil(2) * 8,
            d16: buf.d16.as_mut_ptr().cast(),
            m16: buf.m16.as_mut_ptr().cast(),
            dw: buf.dw.as_mut_ptr().cast(),
            mw: buf.mw.as_mut_ptr().cast(),
        };
        let rows = w.len() / rb;
        for r0 in (0..rows).step_by(8) {
            let nr = (rows - r0).min(8);
            let g = Group { w: w.as_ptr().add(r0 * rb), rb, nr, k, out: out.add(r0), stride };
            for t0 in (0..a.n_tokens).step_by(T) {
                match a.n_tokens - t0 {
                    n if n >= T => tile::<F, D, T>(g, a, p32, t0, sums),
                    1 => tile::<F, D, 1>(g, a, p32, t0, sums),
                    2 => tile::<F, D, 2>(g, a, p32, t0, sums),
                    _ => tile::<F, D, 3>(g, a, p32, t0, sums),
                }
            }
        }
    }
}

/// One group of up to 8 weight rows (from `w`, `rb` bytes apart) and where its outputs go.
#[derive(Clone, Copy)]
struct Group {
    w: *const u8,
    rb: usize,
    nr: usize,
    k: usize,
    out: *mut f32,
    stride: usize,
}

/// The scales of scale blocks `c..c + 8` of a segment's 8 rows, rows on lanes: `(d, m)` (`m`
/// only with `min`); from f16 bits `[s][row]` (`f16`, the first `n` blocks) or f32 `[row][SEG]`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn block_scales(sums: RowSums, c: usize, n: usize, f16: bool, min: bool) -> ([__m256; 8], [__m256; 8]) {
    // SAFETY: within this function's contract: the CPU has the target features it (or its
    // caller) names, and the caller's pointers and lengths are valid for what it touches.
    unsafe {
        if f16 {
            let at = |f: *const u16, j: usize| _mm256_cvtph_ps(_mm_loadu_si128(f.add((c + j) * 8).cast()));
            let d: [__m256; 8] = std::array::from_fn(|j| if j < n { at(sums.d16, j) } else { _mm256_setzero_ps() });
            let m = if min { std::array::from_fn(|j| if j < n { at(sums.m16, j) } else { d[j] }) } else { d };
            return (d, m);
        }
        let rows = |f: *const f32| -> [__m256; 8] {
            let t = transpose8(std::array::from_fn(|r| ld(f.add(r * SEG + c).cast())));
            t.map(|v| _mm256_castsi256_ps(v))
        };
        (rows(sums.dw), if min { rows(sums.mw) } else { [_mm256_setzero_ps(); 8] })
    }
}

/// One token's activation terms for a run of scale blocks from `s`: corrections (formats whose
/// sums need them), scales, and sums (formats with a minimum).
#[derive(Clone, Copy)]
struct ChainAt {
    corr: Option<*const i32>,
    dx: *const f32,
    sx: Option<*const f32>,
    s: usize,
}

/// Scale block `at.s + j` of 8 rows (integer sums `i`, rows on lanes) into the float chain
/// `acc`, in the order of `crate::order`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn chain_step(at: ChainAt, j: usize, mut i: __m256i, ds: &[__m256; 8], ms: &[__m256; 8], acc: &mut __m256) {
    // SAFETY: within this function's contract: the CPU has the target features it (or its
    // caller) names, and the caller's pointers and lengths are valid for what it touches.
    unsafe {
        let s = at.s + j;
        if let Some(corr) = at.corr {
            i = _mm256_add_epi32(i, _mm256_set1_epi32(*corr.add(s)));
        }
        let scale = _mm256_mul_ps(ds[j], _mm256_set1_ps(*at.dx.add(s)));
        *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i), scale, *acc);
        if let Some(sx) = at.sx {
            *acc = _mm256_fmadd_ps(ms[j], _mm256_set1_ps(*sx.add(s)), *acc);
        }
    }
}

/// Scale blocks `c..c + n` (`n <= 8`, `c` a multiple of 8) of a segment's 8 rows into the
/// float chains of `T` tokens (token `t`'s terms from `at.s + t * n_sb`).
#[inline(always)]
unsafe fn chain_run<F: Fmt, const T: usize>(
    sums: RowSums,
    at: ChainAt,
    n_sb: usize,
    c: usize,
    n: usize,
    chains: &mut [[__m256; CHAINS]; T],
) {
    // SAFETY: within this function's contract: the CPU has the target features its caller
    // names, and the caller's pointers and lengths are valid for what it touches.
    unsafe {
        let (ds, ms) = block_scales(sums, c, n, F::F16_SCALES, F::MIN);
        for (t, chains) in chains.iter_mut().enumerate() {
            let at = ChainAt { s: at.s + t * n_sb, ..at };
            // Chain s % 4: s0 and c are multiples of 8, so the chain of c + j is j % 4.
            let units = sums.units.add(t * sums.ustride);
            for jq in (0..n).step_by(4) {
                let (a, b) = unit_sums(units.add((c + jq) / 2 * 8));
                chain_step(at, jq, a, &ds, &ms, &mut chains[0]);
                if jq + 1 < n {
                    chain_step(at, jq + 1, b, &ds, &ms, &mut chains[1]);
                }
                if jq + 2 < n {
                    let (a, b) = unit_sums(units.add((c + jq + 2) / 2 * 8));
                    chain_step(at, jq + 2, a, &ds, &ms, &mut chains[2]);
                    if jq + 3 < n {
                        chain_step(at, jq + 3, b, &ds, &ms, &mut chains[3]);
                    }
                }
            }
        }
    }
}

/// One row group against tokens `t0..t0 + T`: each segment of the 8 rows is reduced to units
/// (every weight block decoded once for the `T` tokens), then per token the float chains of
/// `crate::order` run on the 8 rows at once (rows on lanes).
#[inline(always)]
unsafe fn tile<F: Fmt, D: Dot, const T: usize>(g: Group, a: &ActBlocks<'_>, p32: &[i8], t0: usize, sums: RowSums) {
    // SAFETY: within this function's contract: the CPU has the target features it (or its
    // caller) names, and the caller's pointers and lengths are valid for what it touches.
    unsafe {
        let (k, n_sb, pk) = (g.k, a.n_sb, g.k.next_multiple_of(64));
        // The tile's activation terms; each token's start at `s` below.
        let from = ChainAt {
            corr: (!F::SIGNED).then_some(a.corr.as_ptr().add(t0 * n_sb)),
            dx: a.dx.as_ptr().add(t0 * n_sb),
            sx: F::MIN.then_some(a.sx.as_ptr().wrapping_add(t0 * n_sb)),
            s: 0,
        };
        let mut chains = [[_mm256_setzero_ps(); CHAINS]; T];
        for s0 in (0..n_sb).step_by(SEG) {
            let ns = (n_sb - s0).min(SEG);
            let b0 = s0 / F::SB_PER_BLOCK;
            // Rows past the matrix repeat its last row, so every buffer is written.
            for r in 0..8 {
                let row = g.w.add(r.min(g.nr - 1) * g.rb + b0 * F::BYTES);
                let x = Acts {
                    x: a.qs.as_ptr().add(t0 * k + s0 * F::SB),
                    p32: p32.as_ptr().wrapping_add(t0 * pk + s0 * F::SB),
                    k,
                    pk,
                };
                F::row::<D, T>(row, x, ns / F::SB_PER_BLOCK, r, &sums);
            }
            for c in (0..ns).step_by(8) {
                let at = ChainAt { s: s0 + c, ..from };
                // A whole run of 8 (all but a row's last) with the count known, so that the
                // steps are straight-line code.
                match ns - c {
                    8.. => chain_run::<F, T>(sums, at, n_sb, c, 8, &mut chains),
                    n => chain_run::<F, T>(sums, at, n_sb, c, n, &mut chains),
                }
            }
        }
        for (t, chains) in chains.into_iter().enumerate() {
            let mut tmp = [0f32; 8];
            _mm256_storeu_ps(tmp.as_mut_ptr(), sum_chains(chains));
            std::ptr::copy_nonoverlapping(tmp.as_ptr(), g.out.add((t0 + t) * g.stride), g.nr);
        }
    }
}

/// The GEMV entry points (`gemv_<format>`) and the step entry (`step_quant`) of the kernel
/// over one [`Dot`], compiled with `$features`.
macro_rules! gemv_fns {
    ($features:literal, $dot:ty; $($name:ident $ty:ident => $fmt:ty),* $(,)?) => {
        $(
            #[target_feature(enable = $features)]
            pub(crate) unsafe fn $name(w: &[u8], rb: usize, k: usize, act: &GemvAct<'_>, out: &mut [f32]) {
                let a = act.blocks.as_ref().expect("the x86 tables ask for the block layout");
                debug_assert_eq!(a.n_tokens, 1);
                debug_assert_eq!(w.len(), out.len() * rb);
                let job = Job { w, rb, k, a, p32: act.p32, out: out.as_mut_ptr(), stride: out.len() };
                // SAFETY: this function's contract (the table's): the CPU has the features
                // named above, valid rows.
                unsafe { tokens::<$fmt, $dot>(&job) }
            }
        )*

        /// The GEMV of Q4_0 interleaved by 8 rows (`Q4_0_8_8`), in Q4_0's float order
        /// (`super::x86_q4x8`).
        #[target_feature(enable = $features)]
        pub(crate) unsafe fn gemv_q4_0_8_8(w: &[u8], _rb: usize, k: usize, act: &GemvAct<'_>, out: &mut [f32]) {
            let a = act.blocks.as_ref().expect("the x86 tables ask for the block layout");
            debug_assert_eq!(a.n_tokens, 1);
            // SAFETY: this function's contract (the table's): the CPU has the features named
            // above, whole groups of rows, one output per row.
            unsafe { $crate::arch::x86_q4x8::product::<$dot>(w, k, a, out.as_mut_ptr(), out.len()) }
        }

        /// The decode step of a few tokens (`crate::table::StepQFn`): quantized rows `w`
        /// against every token of `a`, each weight block decoded once per [`TOKENS`] tokens, in
        /// the GEMV's (and the GEMM's) float order.
        #[target_feature(enable = $features)]
        #[allow(clippy::too_many_arguments)]
        pub(crate) unsafe fn step_quant(
            ty: GgmlType,
            w: &[u8],
            rb: usize,
            k: usize,
            a: &ActBlocks<'_>,
            p32: &[i8],
            out: *mut f32,
            stride: usize,
        ) {
            let job = Job { w, rb, k, a, p32, out, stride };
            // SAFETY: this function's contract (the table's): the CPU has the features named
            // above, valid rows and outputs.
            unsafe {
                match ty {
                    $(GgmlType::$ty => tokens::<$fmt, $dot>(&job),)*
                    GgmlType::Q4_0_8_8 => $crate::arch::x86_q4x8::product::<$dot>(w, k, a, out, stride),
                    other => unreachable!("{other} has no quantized step kernel"),
                }
            }
        }
    };
}

/// Passes the quantized formats and their [`Fmt`]s to `gemv_fns!` after `$args`.
macro_rules! quant_formats {
    ($($args:tt)*) => {
        gemv_fns! {$($args)*;
            gemv_q4_0 Q4_0 => Legacy<BlockQ4_0>,
            gemv_q4_1 Q4_1 => Legacy<BlockQ4_1>,
            gemv_q5_0 Q5_0 => Legacy<BlockQ5_0>,
            gemv_q5_1 Q5_1 => Legacy<BlockQ5_1>,
            gemv_q8_0 Q8_0 => Legacy<BlockQ8_0>,
            gemv_q4_k Q4_K => K4<false>,
            gemv_q5_k Q5_K => K4<true>,
            gemv_q6_k Q6_K => Q6K,
        }
    };
}

quant_formats!("avx2,fma,f16c", Maddubs);

/// The kernel on AVX-512 VNNI's `vpdpbusd` (EVEX, ymm registers): the AVX-512 table's.
pub(crate) mod vnni512 {
    use super::*;
    quant_formats!("avx2,fma,f16c,avx512vnni,avx512vl", Dpbusd<false>);
}

/// The kernel on AVX-VNNI's `vpdpbusd` (VEX): the AVX-VNNI table's, with AVX2's float GEMVs.
pub(crate) mod avxvnni {
    use super::*;
    pub(crate) use super::{gemv_bf16, gemv_f16, gemv_f32};
    quant_formats!("avx2,fma,f16c,avxvnni", Dpbusd<true>);
}
