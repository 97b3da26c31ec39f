//! AVX2 + FMA + F16C kernels: activation quantizers and GEMV dot products.
//!
//! Same activation lane layout as AVX-512 (`act.rs`), read 32 bytes (8 lanes) at a time. AVX2
//! has no `vpdpbusd`: `vpmaddubsw` (unsigned codes x signed activations, pairs summed to i16;
//! codes <= 63 keep it from saturating) then `vpmaddwd` by ones gives the same 4-byte lanes.
//! Q8_0's signed weights take ggml's sign trick (`|w|` x `sign(x, w)`) and ignore `corr`.

#![allow(clippy::missing_safety_doc)]

use std::arch::x86_64::*;

use quill_quant::{BlockQ8_0, BlockQ8_1, BlockQ8_K};

use crate::act::GemvAct;

#[inline(always)]
unsafe fn rd16(p: *const u8) -> u64 {
    u64::from(p.cast::<u16>().read_unaligned())
}

#[inline(always)]
unsafe fn ld(p: *const u8) -> __m256i {
    _mm256_loadu_si256(p.cast())
}

#[inline(always)]
unsafe fn ldps(p: *const u8) -> __m256 {
    _mm256_loadu_ps(p.cast())
}

/// Two f16 scales (packed in a u32) as 8 f32 lanes `[d0 x4, d1 x4]`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn f16x2_lanes(d: u64) -> __m256 {
    let v = _mm_cvtph_ps(_mm_cvtsi64_si128(d as i64));
    _mm256_permutevar8x32_ps(_mm256_castps128_ps256(v), _mm256_set_epi32(1, 1, 1, 1, 0, 0, 0, 0))
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn f16_to_f32(bits: u64) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi64_si128(bits as i64)))
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn f32_to_f16(v: f32) -> u16 {
    _mm_extract_epi16::<0>(_mm_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm_set_ss(v))) as u16
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn hsum_ps(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn hsum_epi32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s)))
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn hmax_ps(v: __m256) -> f32 {
    let s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_max_ss(s, _mm_movehdup_ps(s)))
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn abs_ps(v: __m256) -> __m256 {
    _mm256_andnot_ps(_mm256_set1_ps(-0.0), v)
}

/// Round half away from zero (C `roundf`), exact for every float.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn round_away(x: __m256) -> __m256 {
    let t = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(x);
    let half = _mm256_cmp_ps::<_CMP_GE_OQ>(abs_ps(_mm256_sub_ps(x, t)), _mm256_set1_ps(0.5));
    let one = _mm256_or_ps(_mm256_and_ps(x, _mm256_set1_ps(-0.0)), _mm256_set1_ps(1.0));
    _mm256_add_ps(t, _mm256_and_ps(half, one))
}

/// Packs 32 i32 (four registers, each in -128..=127) to 32 i8 in order.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn pack32(q: [__m256i; 4]) -> __m256i {
    let a = _mm256_packs_epi32(q[0], q[1]);
    let b = _mm256_packs_epi32(q[2], q[3]);
    _mm256_permutevar8x32_epi32(_mm256_packs_epi16(a, b), _mm256_set_epi32(7, 3, 6, 2, 5, 1, 4, 0))
}

/// One Q8_0 block's codes (as i32) and scale (ggml-quants.c `quantize_row_q8_0_ref`).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn q8_block(x: *const f32) -> ([__m256i; 4], f32) {
    let v: [__m256; 4] = std::array::from_fn(|j| _mm256_loadu_ps(x.add(8 * j)));
    let m = _mm256_max_ps(_mm256_max_ps(abs_ps(v[0]), abs_ps(v[1])), _mm256_max_ps(abs_ps(v[2]), abs_ps(v[3])));
    let d = hmax_ps(m) / 127.0;
    let id = _mm256_set1_ps(if d != 0.0 { 1.0 / d } else { 0.0 });
    (v.map(|v| _mm256_cvttps_epi32(round_away(_mm256_mul_ps(v, id)))), d)
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn quantize_q8_0(x: &[f32], out: &mut [BlockQ8_0]) {
    debug_assert_eq!(x.len(), out.len() * 32);
    for (i, b) in out.iter_mut().enumerate() {
        let (q, d) = q8_block(x.as_ptr().add(32 * i));
        b.d = half::f16::from_bits(f32_to_f16(d));
        _mm256_storeu_si256(b.qs.as_mut_ptr().cast(), pack32(q));
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn quantize_q8_1(x: &[f32], out: &mut [BlockQ8_1]) {
    debug_assert_eq!(x.len(), out.len() * 32);
    for (i, b) in out.iter_mut().enumerate() {
        let (q, d) = q8_block(x.as_ptr().add(32 * i));
        b.d = half::f16::from_bits(f32_to_f16(d));
        let sum = hsum_epi32(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
        b.s = half::f16::from_bits(f32_to_f16(sum as f32 * d));
        _mm256_storeu_si256(b.qs.as_mut_ptr().cast(), pack32(q));
    }
}

/// ggml-quants.c `quantize_row_q8_K_ref` (see the AVX-512 version).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn quantize_q8_k(x: &[f32], out: &mut [BlockQ8_K]) {
    debug_assert_eq!(x.len(), out.len() * 256);
    for (i, b) in out.iter_mut().enumerate() {
        let xb = x.as_ptr().add(256 * i);
        let mut m = _mm256_setzero_ps();
        for j in 0..32 {
            m = _mm256_max_ps(m, abs_ps(_mm256_loadu_ps(xb.add(8 * j))));
        }
        let amax = hmax_ps(m);
        if amax == 0.0 {
            *b = bytemuck::Zeroable::zeroed();
            continue;
        }
        let va = _mm256_set1_ps(amax);
        let mut max = 0.0;
        for j in 0..32 {
            let eq = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(abs_ps(_mm256_loadu_ps(xb.add(8 * j))), va));
            if eq != 0 {
                max = *xb.add(8 * j + eq.trailing_zeros() as usize);
                break;
            }
        }
        let iscale = -127.0 / max;
        let vs = _mm256_set1_ps(iscale);
        for j in 0..8 {
            let q: [__m256i; 4] = std::array::from_fn(|l| {
                let v = _mm256_mul_ps(vs, _mm256_loadu_ps(xb.add(32 * j + 8 * l)));
                _mm256_min_epi32(_mm256_cvtps_epi32(v), _mm256_set1_epi32(127))
            });
            b.bsums[2 * j] = hsum_epi32(_mm256_add_epi32(q[0], q[1])) as i16;
            b.bsums[2 * j + 1] = hsum_epi32(_mm256_add_epi32(q[2], q[3])) as i16;
            _mm256_storeu_si256(b.qs.as_mut_ptr().add(32 * j).cast(), pack32(q));
        }
        b.d = 1.0 / iscale;
    }
}

/// Lane `i` of the result is the sum of `v[i]`'s lanes (8 horizontal sums with short
/// dependency chains).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn reduce8(v: &[__m256; 8]) -> __m256 {
    let s2: [__m256; 4] = std::array::from_fn(|i| {
        _mm256_add_ps(_mm256_unpacklo_ps(v[2 * i], v[2 * i + 1]), _mm256_unpackhi_ps(v[2 * i], v[2 * i + 1]))
    });
    let s4: [__m256; 2] = std::array::from_fn(|i| {
        let (x, y) = (_mm256_castps_pd(s2[2 * i]), _mm256_castps_pd(s2[2 * i + 1]));
        _mm256_add_ps(_mm256_castpd_ps(_mm256_unpacklo_pd(x, y)), _mm256_castpd_ps(_mm256_unpackhi_pd(x, y)))
    });
    _mm256_add_ps(_mm256_permute2f128_ps::<0x20>(s4[0], s4[1]), _mm256_permute2f128_ps::<0x31>(s4[0], s4[1]))
}

/// The GEMV row loop (see the AVX-512 file): one row at a time as one sequential stream, two
/// accumulators, the last partial group from a zero-padded copy, sums 8 rows at a time.
macro_rules! gemv_rows {
    ($w:expr, $rb:expr, $k:expr, $act:expr, $out:expr, $elems:expr, $wbytes:expr, $abytes:expr, $group:ident) => {{
        let (w, rb, k, out): (&[u8], usize, usize, &mut [f32]) = ($w, $rb, $k, $out);
        let a = $act.lanes.as_ptr().cast::<u8>();
        let (full, n_groups) = (k / $elems, k.div_ceil($elems));
        let mut pad = [0u8; $wbytes];
        let tail = rb - full * $wbytes;
        let mut sums = [_mm256_setzero_ps(); 8];
        for r in 0..out.len() {
            let p = w.as_ptr().add(r * rb);
            let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            let mut g = 0;
            while g + 2 <= full {
                acc0 = $group(p.add(g * $wbytes), a.add(g * $abytes), acc0);
                acc1 = $group(p.add((g + 1) * $wbytes), a.add((g + 1) * $abytes), acc1);
                g += 2;
            }
            if g < full {
                acc0 = $group(p.add(g * $wbytes), a.add(g * $abytes), acc0);
            }
            if full < n_groups {
                std::ptr::copy_nonoverlapping(p.add(full * $wbytes), pad.as_mut_ptr(), tail);
                acc1 = $group(pad.as_ptr(), a.add(full * $abytes), acc1);
            }
            sums[r % 8] = _mm256_add_ps(acc0, acc1);
            if r % 8 == 7 {
                _mm256_storeu_ps(out.as_mut_ptr().add(r - 7), reduce8(&sums));
            }
        }
        let done = out.len() / 8 * 8;
        for (r, o) in out.iter_mut().enumerate().skip(done) {
            *o = hsum_ps(sums[r % 8]);
        }
    }};
}

/// Sum of `codes x activation` per 4-byte lane, for codes <= 63 (no `vpmaddubsw` saturation).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn dot_u8_i8(u: __m256i, x: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(u, x), _mm256_set1_epi16(1))
}

/// Two 16-byte loads as one register.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn load2x16(p0: *const u8, p1: *const u8) -> __m256i {
    _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(_mm_loadu_si128(p0.cast())), _mm_loadu_si128(p1.cast()))
}

/// Low and high nibbles of 32 bytes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn nibbles(q: __m256i) -> (__m256i, __m256i) {
    let m = _mm256_set1_epi8(0x0f);
    (_mm256_and_si256(q, m), _mm256_and_si256(_mm256_srli_epi16::<4>(q), m))
}

/// Fifth bits (`qh` of two Q5 blocks) added to P32 half-registers: byte `16b + j` of `lo`
/// gets bit `j` of block `b`'s `qh`, of `hi` bit `j + 16`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn add_fifth_bits(qh0: *const u8, qh1: *const u8, lo: __m256i, hi: __m256i) -> (__m256i, __m256i) {
    let h0 = qh0.cast::<u32>().read_unaligned();
    let h1 = qh1.cast::<u32>().read_unaligned();
    // Spread 32 bits over 32 bytes: byte i tests bit i.
    let spread = |bits: u32| {
        let v = _mm256_set1_epi32(bits as i32);
        let v = _mm256_shuffle_epi8(
            v,
            _mm256_set_epi64x(0x0303_0303_0303_0303, 0x0202_0202_0202_0202, 0x0101_0101_0101_0101, 0),
        );
        let sel = _mm256_set1_epi64x(0x8040_2010_0804_0201_u64 as i64);
        _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(v, sel), sel), _mm256_set1_epi8(16))
    };
    let lo_bits = (h0 & 0xffff) | (h1 & 0xffff) << 16;
    let hi_bits = (h0 >> 16) | (h1 >> 16) << 16;
    (_mm256_add_epi8(lo, spread(lo_bits)), _mm256_add_epi8(hi, spread(hi_bits)))
}

/// Legacy P32 half-group: two blocks of `BYTES` bytes (scale at 0, minimum at 2 when `MIN`,
/// fifth bits at `QH` when `FIVE`, nibbles at `QS`) against 8 activation lanes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn half_legacy<const BYTES: usize, const QS: usize, const QH: usize, const FIVE: bool, const MIN: bool>(
    b: *const u8,
    a: *const u8,
    acc: __m256,
) -> __m256 {
    let d = rd16(b) | rd16(b.add(BYTES)) << 16;
    let (mut lo, mut hi) = nibbles(load2x16(b.add(QS), b.add(BYTES + QS)));
    if FIVE {
        (lo, hi) = add_fifth_bits(b.add(QH), b.add(BYTES + QH), lo, hi);
    }
    let p = _mm256_add_epi16(_mm256_maddubs_epi16(lo, ld(a)), _mm256_maddubs_epi16(hi, ld(a.add(64))));
    let mut sumi = _mm256_madd_epi16(p, _mm256_set1_epi16(1));
    if !MIN {
        sumi = _mm256_add_epi32(sumi, ld(a.add(192)));
    }
    let acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), _mm256_mul_ps(f16x2_lanes(d), ldps(a.add(128))), acc);
    if MIN {
        let m = rd16(b.add(2)) | rd16(b.add(BYTES + 2)) << 16;
        _mm256_fmadd_ps(f16x2_lanes(m), ldps(a.add(256)), acc)
    } else {
        acc
    }
}

/// A legacy P32 group (four blocks) as two half-groups.
macro_rules! legacy_group {
    ($name:ident, $bytes:expr, $qs:expr, $qh:expr, $five:expr, $min:expr) => {
        #[target_feature(enable = "avx2,fma,f16c")]
        #[inline]
        unsafe fn $name(b: *const u8, a: *const u8, acc: __m256) -> __m256 {
            let acc = half_legacy::<$bytes, $qs, $qh, $five, $min>(b, a, acc);
            half_legacy::<$bytes, $qs, $qh, $five, $min>(b.add(2 * $bytes), a.add(32), acc)
        }
    };
}

legacy_group!(group_q4_0, 18, 2, 0, false, false);
legacy_group!(group_q4_1, 20, 4, 0, false, true);
legacy_group!(group_q5_0, 22, 6, 2, true, false);
legacy_group!(group_q5_1, 24, 8, 4, true, true);

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn vec_dot_q4_0_q8_0(w: &[u8], rb: usize, k: usize, act: &GemvAct<'_>, out: &mut [f32]) {
    gemv_rows!(w, rb, k, act, out, 128, 72, 256, group_q4_0)
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn vec_dot_q4_1_q8_1(w: &[u8], rb: usize, k: usize, act: &GemvAct<'_>, out: &mut [f32]) {
    gemv_rows!(w, rb, k, act, out, 128, 80, 320, group_q4_1)
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn vec_dot_q5_0_q8_0(w: &[u8], rb: usize, k: usize, act: &GemvAct<'_>, out: &mut [f32]) {
    gemv_rows!(w, rb, k, act, out, 128, 88, 256, group_q5_0)
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn vec_dot_q5_1_q8_1(w: &[u8], rb: usize, k: usize, act: &GemvAct<'_>, out: &mut [f32]) {
    gemv_rows!(w, rb, k, act, out, 128, 96, 320, group_q5_1)
}

/// Two Q8_0 blocks (68 bytes) against one Nat group, with ggml's sign trick.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn group_q8_0(b: *const u8, a: *const u8, acc: __m256) -> __m256 {
    let mut acc = acc;
    for h in 0..2 {
        let bh = b.add(34 * h);
        let w = ld(bh.add(2));
        let x = ld(a.add(32 * h));
        let p = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
        let sumi = _mm256_madd_epi16(p, _mm256_set1_epi16(1));
        let s = _mm256_mul_ps(_mm256_set1_ps(f16_to_f32(rd16(bh))), ldps(a.add(64 + 32 * h)));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), s, acc);
    }
    acc
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn vec_dot_q8_0_q8_0(w: &[u8], rb: usize, k: usize, act: &GemvAct<'_>, out: &mut [f32]) {
    gemv_rows!(w, rb, k, act, out, 64, 68, 192, group_q8_0)
}

/// `[sc0..8]` and `[m0..8]` of a Q4_K / Q5_K block as f32 (ggml's `utmp` unpacking).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn k4_scales_mins(s: *const u8) -> (__m256, __m256) {
    const KMASK1: u32 = 0x3f3f_3f3f;
    const KMASK2: u32 = 0x0f0f_0f0f;
    const KMASK3: u32 = 0x0303_0303;
    let u0 = s.cast::<u32>().read_unaligned();
    let u1 = s.add(4).cast::<u32>().read_unaligned();
    let u2 = s.add(8).cast::<u32>().read_unaligned();
    let sc = u64::from(u0 & KMASK1) | u64::from((u2 & KMASK2) | (((u0 >> 6) & KMASK3) << 4)) << 32;
    let m = u64::from(u1 & KMASK1) | u64::from(((u2 >> 4) & KMASK2) | (((u1 >> 6) & KMASK3) << 4)) << 32;
    let f = |v: u64| _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(v as i64)));
    (f(sc), f(m))
}

/// Lanes `[v[i] x4, v[i + 1] x4]`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn pair_lanes(v: __m256, i: i32) -> __m256 {
    _mm256_permutevar8x32_ps(v, _mm256_set_epi32(i + 1, i + 1, i + 1, i + 1, i, i, i, i))
}

/// One Q4_K (`FIVE = false`) or Q5_K block against two P32 groups, a pair of sub-blocks at a
/// time.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn block_k4<const FIVE: bool>(b: *const u8, a: *const u8, acc: __m256) -> __m256 {
    let (d, dmin) = (f16_to_f32(rd16(b)), f16_to_f32(rd16(b.add(2))));
    let dx = *a.add(128).cast::<f32>();
    let (sc, m) = k4_scales_mins(b.add(4));
    let sc = _mm256_mul_ps(sc, _mm256_set1_ps(d * dx));
    let m = _mm256_mul_ps(m, _mm256_set1_ps(-dmin));
    let qs = if FIVE { b.add(48) } else { b.add(16) };
    let shift = _mm256_set_epi64x(4, 4, 0, 0);
    let mask = _mm256_set1_epi8(0x0f);
    let mut acc = acc;
    for h in 0..2 {
        for p in 0..2 {
            // Sub-blocks 4h + 2p (low nibbles of 32 bytes) and 4h + 2p + 1 (high nibbles).
            let q = qs.add(64 * h + 32 * p);
            let mut r0 = _mm256_and_si256(
                _mm256_srlv_epi64(_mm256_broadcastsi128_si256(_mm_loadu_si128(q.cast())), shift),
                mask,
            );
            let mut r1 = _mm256_and_si256(
                _mm256_srlv_epi64(_mm256_broadcastsi128_si256(_mm_loadu_si128(q.add(16).cast())), shift),
                mask,
            );
            if FIVE {
                let s0 = (4 * h + 2 * p) as u32;
                let bits = _mm256_set_epi64x(
                    (0x0101_0101_0101_0101u64 << (s0 + 1)) as i64,
                    (0x0101_0101_0101_0101u64 << (s0 + 1)) as i64,
                    (0x0101_0101_0101_0101u64 << s0) as i64,
                    (0x0101_0101_0101_0101u64 << s0) as i64,
                );
                let sixteen = _mm256_set1_epi8(16);
                let q0 = _mm256_broadcastsi128_si256(_mm_loadu_si128(b.add(16).cast()));
                let q1 = _mm256_broadcastsi128_si256(_mm_loadu_si128(b.add(32).cast()));
                r0 =
                    _mm256_add_epi8(r0, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(q0, bits), bits), sixteen));
                r1 =
                    _mm256_add_epi8(r1, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(q1, bits), bits), sixteen));
            }
            let ah = a.add(320 * h + 32 * p);
            let sumi = _mm256_add_epi32(dot_u8_i8(r0, ld(ah)), dot_u8_i8(r1, ld(ah.add(64))));
            let j = (4 * h + 2 * p) as i32;
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), pair_lanes(sc, j), acc);
            acc = _mm256_fmadd_ps(pair_lanes(m, j), ldps(ah.add(256)), acc);
        }
    }
    acc
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn block_q4_k(b: *const u8, a: *const u8, acc: __m256) -> __m256 {
    block_k4::<false>(b, a, acc)
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn block_q5_k(b: *const u8, a: *const u8, acc: __m256) -> __m256 {
    block_k4::<true>(b, a, acc)
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn vec_dot_q4_k_q8_k(w: &[u8], rb: usize, k: usize, act: &GemvAct<'_>, out: &mut [f32]) {
    gemv_rows!(w, rb, k, act, out, 256, 144, 640, block_q4_k)
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn vec_dot_q5_k_q8_k(w: &[u8], rb: usize, k: usize, act: &GemvAct<'_>, out: &mut [f32]) {
    gemv_rows!(w, rb, k, act, out, 256, 176, 640, block_q5_k)
}

/// One Q6_K block against four Nat groups, 32 codes at a time; the block is read in address
/// order (codes, scales, d), as in the AVX-512 file.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn block_q6_k(b: *const u8, a: *const u8, acc: __m256) -> __m256 {
    let (m4, m30) = (_mm256_set1_epi8(0x0f), _mm256_set1_epi8(0x30));
    let mut sumi = [_mm256_setzero_si256(); 8];
    for h in 0..2 {
        let (qla, qlb, qh) = (ld(b.add(64 * h)), ld(b.add(64 * h + 32)), ld(b.add(128 + 32 * h)));
        let y = [
            _mm256_or_si256(_mm256_and_si256(qla, m4), _mm256_and_si256(_mm256_slli_epi16::<4>(qh), m30)),
            _mm256_or_si256(_mm256_and_si256(qlb, m4), _mm256_and_si256(_mm256_slli_epi16::<2>(qh), m30)),
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(qla), m4), _mm256_and_si256(qh, m30)),
            _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16::<4>(qlb), m4),
                _mm256_and_si256(_mm256_srli_epi16::<2>(qh), m30),
            ),
        ];
        for (c, &yc) in y.iter().enumerate() {
            // 32 codes = elements 128h + 32c.. = Nat group 2h + c/2, half c % 2.
            let ag = a.add(192 * (2 * h + c / 2) + 32 * (c % 2));
            sumi[4 * h + c] = _mm256_add_epi32(dot_u8_i8(yc, ld(ag)), ld(ag.add(128)));
        }
    }
    let d = f16_to_f32(rd16(b.add(208)));
    let dx = *a.add(64).cast::<f32>();
    let sd = _mm256_set1_ps(d * dx);
    let sc_lo = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(b.add(192).cast()))), sd);
    let sc_hi = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(b.add(200).cast()))), sd);
    let mut acc = acc;
    for (chunk, s) in sumi.into_iter().enumerate() {
        // Chunk of 32 codes = sub-blocks 2 chunk, 2 chunk + 1.
        let sc = if chunk < 4 { sc_lo } else { sc_hi };
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), pair_lanes(sc, 2 * (chunk % 4) as i32), acc);
    }
    acc
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn vec_dot_q6_k_q8_k(w: &[u8], rb: usize, k: usize, act: &GemvAct<'_>, out: &mut [f32]) {
    gemv_rows!(w, rb, k, act, out, 256, 210, 768, block_q6_k)
}

/// Float rows against f32 activations; `$load` widens 8 weights to f32, `$one` one weight.
macro_rules! gemv_float {
    ($w:expr, $rb:expr, $k:expr, $act:expr, $out:expr, $esz:expr, $load:ident, $one:expr) => {{
        let (w, rb, k, out): (&[u8], usize, usize, &mut [f32]) = ($w, $rb, $k, $out);
        let x = $act.x.as_ptr();
        let full = k / 32;
        for (r, o) in out.iter_mut().enumerate() {
            let p = w.as_ptr().add(r * rb);
            let mut acc = [_mm256_setzero_ps(); 4];
            for i in 0..full {
                for (j, a) in acc.iter_mut().enumerate() {
                    let e = 32 * i + 8 * j;
                    *a = _mm256_fmadd_ps($load(p.add(e * $esz)), _mm256_loadu_ps(x.add(e)), *a);
                }
            }
            let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
            let mut sum = hsum_ps(s);
            for e in 32 * full..k {
                sum += $one(p.add(e * $esz)) * *x.add(e);
            }
            *o = sum;
        }
    }};
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn load_f32(p: *const u8) -> __m256 {
    _mm256_loadu_ps(p.cast())
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn load_f16(p: *const u8) -> __m256 {
    _mm256_cvtph_ps(_mm_loadu_si128(p.cast()))
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn load_bf16(p: *const u8) -> __m256 {
    _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(_mm_loadu_si128(p.cast()))))
}

unsafe fn one_f32(p: *const u8) -> f32 {
    p.cast::<f32>().read_unaligned()
}

unsafe fn one_f16(p: *const u8) -> f32 {
    half::f16::from_bits(p.cast::<u16>().read_unaligned()).to_f32()
}

unsafe fn one_bf16(p: *const u8) -> f32 {
    f32::from_bits(u32::from(p.cast::<u16>().read_unaligned()) << 16)
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn vec_dot_f32_f32(w: &[u8], rb: usize, k: usize, act: &GemvAct<'_>, out: &mut [f32]) {
    gemv_float!(w, rb, k, act, out, 4, load_f32, one_f32)
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn vec_dot_f16_f32(w: &[u8], rb: usize, k: usize, act: &GemvAct<'_>, out: &mut [f32]) {
    gemv_float!(w, rb, k, act, out, 2, load_f16, one_f16)
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn vec_dot_bf16_f32(w: &[u8], rb: usize, k: usize, act: &GemvAct<'_>, out: &mut [f32]) {
    gemv_float!(w, rb, k, act, out, 2, load_bf16, one_bf16)
}
