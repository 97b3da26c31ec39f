//! AVX-512 (F, BW, VL, VNNI): the [`Simd`] vocabulary of the float algorithms
//! (`crate::simd`; `exp` scales by `vscalefps`: 0 below -104, +inf above 88.7), activation
//! quantizers and the GEMV dot products of the quantized formats.
//!
//! GEMV kernels read weights straight from ggml's blocks and activations in the lane layout
//! (`act.rs`): unsigned weight codes meet signed activation bytes in `vpdpbusd`, whose integer
//! sums start from the precomputed `-offset * sum(x)` lanes; each 16-lane integer vector is
//! converted once and scaled by `weight scale * activation scale` per lane.

#![allow(clippy::missing_safety_doc)]

use std::arch::x86_64::*;

use quill_quant::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0};

use half::f16;

use crate::act::GemvAct;
use crate::formats::k_layout::*;
use crate::formats::LegacyBlock;
use crate::simd::{float_kernels, simd_basics, Simd};

#[inline(always)]
unsafe fn rd16(p: *const u8) -> u64 {
    u64::from(p.cast::<u16>().read_unaligned())
}

#[inline(always)]
unsafe fn rd32(p: *const u8) -> u64 {
    u64::from(p.cast::<u32>().read_unaligned())
}

/// Four f16 scales (packed in a u64) as 16 f32 lanes `[d0 x4, d1 x4, d2 x4, d3 x4]`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
fn f16x4_lanes(d: u64) -> __m512 {
    let v = _mm_cvtph_ps(_mm_cvtsi64_si128(d as i64));
    _mm512_permutexvar_ps(_mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0), _mm512_castps128_ps512(v))
}

/// Two f16 scales (packed in a u32) as 16 f32 lanes `[d0 x8, d1 x8]`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
fn f16x2_lanes(d: u64) -> __m512 {
    let v = _mm_cvtph_ps(_mm_cvtsi64_si128(d as i64));
    _mm512_permutexvar_ps(_mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0), _mm512_castps128_ps512(v))
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
fn f16_to_f32(bits: u64) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi64_si128(bits as i64)))
}

#[inline(always)]
unsafe fn ld(p: *const u8) -> __m512i {
    _mm512_loadu_si512(p.cast())
}

#[inline(always)]
unsafe fn ldps(p: *const u8) -> __m512 {
    _mm512_loadu_ps(p.cast())
}

/// The 16 bytes at each of four pointers, as one register.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
unsafe fn gather4x16(p0: *const u8, p1: *const u8, p2: *const u8, p3: *const u8) -> __m512i {
    let lo =
        _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(_mm_loadu_si128(p0.cast())), _mm_loadu_si128(p1.cast()));
    let hi =
        _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(_mm_loadu_si128(p2.cast())), _mm_loadu_si128(p3.cast()));
    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
}

/// Lane `i` of the result is the sum of `v[i]`'s lanes: 16 horizontal sums in 45 shuffles and
/// adds with short dependency chains (one `reduce_add` per row costs 8 serial steps).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
pub(crate) fn reduce16(v: &[__m512; 16]) -> __m512 {
    // Pairs of rows: [a0+a2, b0+b2, a1+a3, b1+b3] per 128-bit lane.
    let s2: [__m512; 8] = std::array::from_fn(|i| {
        _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]), _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]))
    });
    // Quads: [a, b, c, d] partial sums per 128-bit lane.
    let s4: [__m512; 4] = std::array::from_fn(|i| {
        let (x, y) = (_mm512_castps_pd(s2[2 * i]), _mm512_castps_pd(s2[2 * i + 1]));
        _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)), _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)))
    });
    // Sum the 128-bit lanes: [q0 l0+l1, q0 l2+l3, q1 l0+l1, q1 l2+l3], then whole quads.
    let s8: [__m512; 2] = std::array::from_fn(|i| {
        let (x, y) = (s4[2 * i], s4[2 * i + 1]);
        _mm512_add_ps(_mm512_shuffle_f32x4::<0b10_00_10_00>(x, y), _mm512_shuffle_f32x4::<0b11_01_11_01>(x, y))
    });
    _mm512_add_ps(
        _mm512_shuffle_f32x4::<0b10_00_10_00>(s8[0], s8[1]),
        _mm512_shuffle_f32x4::<0b11_01_11_01>(s8[0], s8[1]),
    )
}

/// The GEMV row loop shared by the quantized kernels: one row at a time, so that each thread
/// reads its rows as one sequential stream (which the hardware prefetchers follow; two rows
/// interleaved halve the bandwidth), groups alternating between two accumulators for
/// instruction-level parallelism, the last partial group from a zero-padded copy (its
/// activation lanes are zero past the row's end), horizontal sums 16 rows at a time.
macro_rules! gemv_rows {
    ($w:expr, $rb:expr, $k:expr, $act:expr, $out:expr, $elems:expr, $wbytes:expr, $abytes:expr, $group:ident) => {{
        let (w, rb, k, out): (&[u8], usize, usize, &mut [f32]) = ($w, $rb, $k, $out);
        let a = $act.lanes.as_ptr().cast::<u8>();
        let (full, n_groups) = (k / $elems, k.div_ceil($elems));
        let mut pad = [0u8; $wbytes];
        let tail = rb - full * $wbytes;
        let mut sums = [_mm512_setzero_ps(); 16];
        for r in 0..out.len() {
            let p = w.as_ptr().add(r * rb);
            let (mut acc0, mut acc1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
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
            sums[r % 16] = _mm512_add_ps(acc0, acc1);
            if r % 16 == 15 {
                _mm512_storeu_ps(out.as_mut_ptr().add(r - 15), reduce16(&sums));
            }
        }
        let done = out.len() / 16 * 16;
        for (r, o) in out.iter_mut().enumerate().skip(done) {
            *o = _mm512_reduce_add_ps(sums[r % 16]);
        }
    }};
}

/// Low and high nibbles of 64 bytes.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
fn nibbles(q: __m512i) -> (__m512i, __m512i) {
    let m = _mm512_set1_epi8(0x0f);
    (_mm512_and_si512(q, m), _mm512_and_si512(_mm512_srli_epi16::<4>(q), m))
}

/// The 64 code bytes and the 16 scale lanes of four legacy blocks of `BYTES` bytes (scale at
/// 0, codes at `QS`, both at even offsets): the group is loaded as two registers (the second
/// masked to the group's end) and its 16-bit words permuted into place.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
unsafe fn legacy4<const BYTES: usize, const QS: usize>(b: *const u8) -> (__m512i, __m512, __m512i, __m512i) {
    let z0 = ld(b);
    let z1 = _mm512_maskz_loadu_epi8((1u64 << (4 * BYTES - 64)) - 1, b.add(64).cast());
    let w = |blk: usize, i: usize| ((BYTES * blk + QS) / 2 + i) as i16;
    let idx: [i16; 32] = std::array::from_fn(|i| w(i / 8, i % 8));
    let qs = _mm512_permutex2var_epi16(z0, _mm512_loadu_si512(idx.as_ptr().cast()), z1);
    let didx: [i16; 32] = std::array::from_fn(|i| ((BYTES / 2) * (i / 4 % 4)) as i16);
    let d =
        _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi16(_mm512_loadu_si512(didx.as_ptr().cast()), z0)));
    (qs, d, z0, z1)
}

/// Bytes of one block of each legacy format.
const Q4_0_BYTES: usize = <BlockQ4_0 as LegacyBlock>::BYTES;
const Q4_1_BYTES: usize = <BlockQ4_1 as LegacyBlock>::BYTES;
const Q5_0_BYTES: usize = <BlockQ5_0 as LegacyBlock>::BYTES;
const Q5_1_BYTES: usize = <BlockQ5_1 as LegacyBlock>::BYTES;
const Q8_0_BYTES: usize = <BlockQ8_0 as LegacyBlock>::BYTES;

/// Byte `f` of each of the four consecutive blocks of `bytes` bytes at `b`.
#[inline(always)]
unsafe fn at4(b: *const u8, bytes: usize, f: usize) -> [*const u8; 4] {
    [b.add(f), b.add(bytes + f), b.add(2 * bytes + f), b.add(3 * bytes + f)]
}

/// The f16 fields at `p[0..4]` packed into a u64 (`f16x4_lanes`'s argument).
#[inline(always)]
unsafe fn rd16x4(p: [*const u8; 4]) -> u64 {
    rd16(p[0]) | rd16(p[1]) << 16 | rd16(p[2]) << 32 | rd16(p[3]) << 48
}

/// Four Q4_0 blocks against one P32 group (x0, x1, dx, corr).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
unsafe fn group_q4_0(b: *const u8, a: *const u8, acc: __m512) -> __m512 {
    let (qs, d, _, _) = legacy4::<Q4_0_BYTES, { <BlockQ4_0 as LegacyBlock>::QS }>(b);
    let (lo, hi) = nibbles(qs);
    let sumi = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(ld(a.add(192)), lo, ld(a)), hi, ld(a.add(64)));
    _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi), _mm512_mul_ps(d, ldps(a.add(128))), acc)
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) unsafe fn gemv_q4_0(w: &[u8], rb: usize, k: usize, act: &GemvAct<'_>, out: &mut [f32]) {
    gemv_rows!(w, rb, k, act, out, 128, 4 * Q4_0_BYTES, 256, group_q4_0)
}

/// Four Q4_1 blocks against one P32 group with minimum terms.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
unsafe fn group_q4_1(b: *const u8, a: *const u8, acc: __m512) -> __m512 {
    type B = BlockQ4_1;
    let d = rd16x4(at4(b, Q4_1_BYTES, B::D));
    let m = rd16x4(at4(b, Q4_1_BYTES, B::M.expect("Q4_1 has a minimum")));
    let [q0, q1, q2, q3] = at4(b, Q4_1_BYTES, B::QS);
    let (lo, hi) = nibbles(gather4x16(q0, q1, q2, q3));
    let sumi = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, ld(a)), hi, ld(a.add(64)));
    let acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi), _mm512_mul_ps(f16x4_lanes(d), ldps(a.add(128))), acc);
    _mm512_fmadd_ps(f16x4_lanes(m), ldps(a.add(256)), acc)
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) unsafe fn gemv_q4_1(w: &[u8], rb: usize, k: usize, act: &GemvAct<'_>, out: &mut [f32]) {
    gemv_rows!(w, rb, k, act, out, 128, 4 * Q4_1_BYTES, 320, group_q4_1)
}

/// Fifth bits of four Q5 blocks as two byte masks over the P32 registers: bit `16b + j` of
/// the first is bit `j` of block `b`'s `qh`, of the second bit `j + 16`.
#[inline(always)]
fn qh_masks(h: [u64; 4]) -> (u64, u64) {
    let lo = (h[0] & 0xffff) | (h[1] & 0xffff) << 16 | (h[2] & 0xffff) << 32 | (h[3] & 0xffff) << 48;
    let hi = (h[0] >> 16) | (h[1] >> 16) << 16 | (h[2] >> 16) << 32 | (h[3] >> 16) << 48;
    (lo, hi)
}

/// Four Q5_0 blocks against one P32 group.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
unsafe fn group_q5_0(b: *const u8, a: *const u8, acc: __m512) -> __m512 {
    type B = BlockQ5_0;
    let d = rd16x4(at4(b, Q5_0_BYTES, B::D));
    let (mlo, mhi) = qh_masks(at4(b, Q5_0_BYTES, B::QH.expect("Q5_0 has fifth bits")).map(|p| rd32(p)));
    let [q0, q1, q2, q3] = at4(b, Q5_0_BYTES, B::QS);
    let (lo, hi) = nibbles(gather4x16(q0, q1, q2, q3));
    let sixteen = _mm512_set1_epi8(16);
    let (lo, hi) = (_mm512_mask_add_epi8(lo, mlo, lo, sixteen), _mm512_mask_add_epi8(hi, mhi, hi, sixteen));
    let sumi = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(ld(a.add(192)), lo, ld(a)), hi, ld(a.add(64)));
    _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi), _mm512_mul_ps(f16x4_lanes(d), ldps(a.add(128))), acc)
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) unsafe fn gemv_q5_0(w: &[u8], rb: usize, k: usize, act: &GemvAct<'_>, out: &mut [f32]) {
    gemv_rows!(w, rb, k, act, out, 128, 4 * Q5_0_BYTES, 256, group_q5_0)
}

/// Four Q5_1 blocks against one P32 group with minimum terms.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
unsafe fn group_q5_1(b: *const u8, a: *const u8, acc: __m512) -> __m512 {
    type B = BlockQ5_1;
    let d = rd16x4(at4(b, Q5_1_BYTES, B::D));
    let m = rd16x4(at4(b, Q5_1_BYTES, B::M.expect("Q5_1 has a minimum")));
    let (mlo, mhi) = qh_masks(at4(b, Q5_1_BYTES, B::QH.expect("Q5_1 has fifth bits")).map(|p| rd32(p)));
    let [q0, q1, q2, q3] = at4(b, Q5_1_BYTES, B::QS);
    let (lo, hi) = nibbles(gather4x16(q0, q1, q2, q3));
    let sixteen = _mm512_set1_epi8(16);
    let (lo, hi) = (_mm512_mask_add_epi8(lo, mlo, lo, sixteen), _mm512_mask_add_epi8(hi, mhi, hi, sixteen));
    let sumi = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, ld(a)), hi, ld(a.add(64)));
    let acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi), _mm512_mul_ps(f16x4_lanes(d), ldps(a.add(128))), acc);
    _mm512_fmadd_ps(f16x4_lanes(m), ldps(a.add(256)), acc)
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) unsafe fn gemv_q5_1(w: &[u8], rb: usize, k: usize, act: &GemvAct<'_>, out: &mut [f32]) {
    gemv_rows!(w, rb, k, act, out, 128, 4 * Q5_1_BYTES, 320, group_q5_1)
}

/// Two Q8_0 blocks against one Nat group (x, dx, corr): codes flipped to `q + 128`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
unsafe fn group_q8_0(b: *const u8, a: *const u8, acc: __m512) -> __m512 {
    type B = BlockQ8_0;
    let b1 = b.add(Q8_0_BYTES);
    let d = rd16(b.add(B::D)) | rd16(b1.add(B::D)) << 16;
    let q = _mm512_inserti64x4::<1>(
        _mm512_castsi256_si512(_mm256_loadu_si256(b.add(B::QS).cast())),
        _mm256_loadu_si256(b1.add(B::QS).cast()),
    );
    let u = _mm512_xor_si512(q, _mm512_set1_epi8(-128));
    let sumi = _mm512_dpbusd_epi32(ld(a.add(128)), u, ld(a));
    _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi), _mm512_mul_ps(f16x2_lanes(d), ldps(a.add(64))), acc)
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) unsafe fn gemv_q8_0(w: &[u8], rb: usize, k: usize, act: &GemvAct<'_>, out: &mut [f32]) {
    gemv_rows!(w, rb, k, act, out, 64, 2 * Q8_0_BYTES, 192, group_q8_0)
}

/// The 8 scales and 8 minimums of a Q4_K / Q5_K block as 16 f32 `[sc0..8, m0..8]`
/// (ggml-cpu `ggml_vec_dot_q4_K_q8_K`'s `utmp` unpacking of `get_scale_min_k4`).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
unsafe fn k4_scales_mins(s: *const u8) -> __m512 {
    let (sc, m) = crate::decode::k4_scale_min_words(s);
    _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_set_epi64x(m as i64, sc as i64)))
}

/// The P32 registers of one half (four sub-blocks, 64 bytes of `qs`) of a Q4_K / Q5_K block:
/// register 0 = first 16 codes of each sub-block, register 1 = last 16. The low nibbles of
/// the 16-byte pieces q0..q3 are sub-blocks 0, 0, 2, 2 and the high nibbles 1, 1, 3, 3
/// (first and second halves), so two two-source qword permutes of the nibble registers do it.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
unsafe fn k4_half(qs: *const u8) -> (__m512i, __m512i) {
    let (lo, hi) = nibbles(ld(qs));
    // Qwords 0..8 index `lo`, 8..16 index `hi`.
    let r0 = _mm512_permutex2var_epi64(lo, _mm512_set_epi64(13, 12, 5, 4, 9, 8, 1, 0), hi);
    let r1 = _mm512_permutex2var_epi64(lo, _mm512_set_epi64(15, 14, 7, 6, 11, 10, 3, 2), hi);
    (r0, r1)
}

/// Adds 16 to the codes of one Q5_K half whose fifth bit is set: bit `4h + s` of `qh[j]`
/// (first 16) and of `qh[16 + j]` (last 16) for sub-block `s` of the half.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
unsafe fn k5_high(qh: *const u8, h: usize, r0: __m512i, r1: __m512i) -> (__m512i, __m512i) {
    let bits = _mm512_set_epi64(
        0x0808_0808_0808_0808,
        0x0808_0808_0808_0808,
        0x0404_0404_0404_0404,
        0x0404_0404_0404_0404,
        0x0202_0202_0202_0202,
        0x0202_0202_0202_0202,
        0x0101_0101_0101_0101,
        0x0101_0101_0101_0101,
    );
    let bits = if h == 0 { bits } else { _mm512_slli_epi64::<4>(bits) };
    let q0 = _mm512_broadcast_i32x4(_mm_loadu_si128(qh.cast()));
    let q1 = _mm512_broadcast_i32x4(_mm_loadu_si128(qh.add(16).cast()));
    let sixteen = _mm512_set1_epi8(16);
    let r0 = _mm512_mask_add_epi8(r0, _mm512_test_epi8_mask(q0, bits), r0, sixteen);
    let r1 = _mm512_mask_add_epi8(r1, _mm512_test_epi8_mask(q1, bits), r1, sixteen);
    (r0, r1)
}

/// One Q4_K (`FIVE = false`) or Q5_K block against two P32 groups.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
unsafe fn block_k4<const FIVE: bool>(b: *const u8, a: *const u8, acc: __m512) -> __m512 {
    // d and dmin, adjacent f16 fields.
    const _: () = assert!(K4_DMIN == K4_D + 2);
    let dd = _mm_cvtph_ps(_mm_cvtsi32_si128(b.add(K4_D).cast::<i32>().read_unaligned()));
    let (d, dmin) = (_mm_cvtss_f32(dd), _mm_cvtss_f32(_mm_movehdup_ps(dd)));
    let dx = *a.add(128).cast::<f32>();
    let sm = k4_scales_mins(b.add(K4_SCALES));
    // [sc * d * dx (8), m * -dmin (8)]
    let sm = _mm512_mul_ps(sm, _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(d * dx), _mm512_set1_ps(-dmin)));
    let qs = b.add(k4_qs(FIVE));
    let mut acc = acc;
    for h in 0..2 {
        let ah = a.add(320 * h);
        let (mut r0, mut r1) = k4_half(qs.add(64 * h));
        if FIVE {
            (r0, r1) = k5_high(b.add(Q5K_QH), h, r0, r1);
        }
        let sumi = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), r0, ld(ah)), r1, ld(ah.add(64)));
        let base = 4 * h as i32;
        let idx =
            _mm512_add_epi32(_mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0), _mm512_set1_epi32(base));
        let sc = _mm512_permutexvar_ps(idx, sm);
        let mn = _mm512_permutexvar_ps(_mm512_add_epi32(idx, _mm512_set1_epi32(8)), sm);
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi), sc, acc);
        acc = _mm512_fmadd_ps(mn, ldps(ah.add(256)), acc);
    }
    acc
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
unsafe fn block_q4_k(b: *const u8, a: *const u8, acc: __m512) -> __m512 {
    block_k4::<false>(b, a, acc)
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
unsafe fn block_q5_k(b: *const u8, a: *const u8, acc: __m512) -> __m512 {
    block_k4::<true>(b, a, acc)
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) unsafe fn gemv_q4_k(w: &[u8], rb: usize, k: usize, act: &GemvAct<'_>, out: &mut [f32]) {
    gemv_rows!(w, rb, k, act, out, 256, k4_bytes(false), 640, block_q4_k)
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) unsafe fn gemv_q5_k(w: &[u8], rb: usize, k: usize, act: &GemvAct<'_>, out: &mut [f32]) {
    gemv_rows!(w, rb, k, act, out, 256, k4_bytes(true), 640, block_q5_k)
}

/// One Q6_K block against four Nat groups (x, dx, corr = -32 * sum). The block is
/// read in address order (codes, then scales, then d): reading the scale at its end first
/// costs a demand miss per block when streaming from memory.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
unsafe fn block_q6_k(b: *const u8, a: *const u8, acc: __m512) -> __m512 {
    let m4 = _mm512_set1_epi8(0x0f);
    let m30 = _mm512_set1_epi8(0x30);
    let mut sumi = [_mm512_setzero_si512(); 4];
    for h in 0..2 {
        let ql = ld(b.add(Q6K_QL + 64 * h));
        let qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(b.add(Q6K_QH + 32 * h).cast()));
        let qh = _mm512_srlv_epi64(qh, _mm512_set_epi64(2, 2, 2, 2, 0, 0, 0, 0));
        // (A & C) | B with A = low/high nibbles, B = the two high bits in place, C = 0x0f.
        let g0 = _mm512_ternarylogic_epi32::<0xec>(ql, _mm512_and_si512(_mm512_slli_epi16::<4>(qh), m30), m4);
        let g1 = _mm512_ternarylogic_epi32::<0xec>(_mm512_srli_epi16::<4>(ql), _mm512_and_si512(qh, m30), m4);
        for (j, g) in [g0, g1].into_iter().enumerate() {
            let ag = a.add(192 * (2 * h + j));
            sumi[2 * h + j] = _mm512_dpbusd_epi32(ld(ag.add(128)), g, ld(ag));
        }
    }
    let d = f16_to_f32(rd16(b.add(Q6K_D)));
    let dx = *a.add(64).cast::<f32>();
    let sc = _mm512_mul_ps(
        _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(b.add(Q6K_SCALES).cast()))),
        _mm512_set1_ps(d * dx),
    );
    let mut acc = acc;
    for (grp, s) in sumi.into_iter().enumerate() {
        let idx = _mm512_add_epi32(
            _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0),
            _mm512_set1_epi32(4 * grp as i32),
        );
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_permutexvar_ps(idx, sc), acc);
    }
    acc
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) unsafe fn gemv_q6_k(w: &[u8], rb: usize, k: usize, act: &GemvAct<'_>, out: &mut [f32]) {
    gemv_rows!(w, rb, k, act, out, 256, Q6K_BYTES, 768, block_q6_k)
}

#[inline(always)]
fn mask16(n: usize) -> __mmask16 {
    ((1u32 << n.min(16)) - 1) as u16
}

/// AVX-512 F/BW/VL (+ VNNI for the integer kernels), 16 f32 lanes.
#[derive(Clone, Copy)]
pub(crate) struct Avx512;

impl Simd for Avx512 {
    const LANES: usize = 16;
    const GEMM_TOKENS: usize = 12;
    const EXP_LO: f32 = -104.0;
    const EXP_HI: f32 = 89.0;
    type V = __m512;
    type I = __m512i;
    type M = __mmask16;

    simd_basics!(__m512; zero = _mm512_setzero_ps, splat = _mm512_set1_ps, load = _mm512_loadu_ps,
        store = _mm512_storeu_ps; add = _mm512_add_ps, sub = _mm512_sub_ps, mul = _mm512_mul_ps,
        div = _mm512_div_ps, max = _mm512_max_ps, min = _mm512_min_ps);

    #[inline(always)]
    unsafe fn load_part(p: *const f32, n: usize) -> __m512 {
        _mm512_maskz_loadu_ps(mask16(n), p)
    }
    #[inline(always)]
    unsafe fn store_part(p: *mut f32, n: usize, v: __m512) {
        _mm512_mask_storeu_ps(p, mask16(n), v)
    }
    #[inline(always)]
    unsafe fn load_f16(p: *const f16) -> __m512 {
        _mm512_cvtph_ps(_mm256_loadu_si256(p.cast()))
    }
    #[inline(always)]
    unsafe fn load_bf16(p: *const u16) -> __m512 {
        _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(_mm256_loadu_si256(p.cast()))))
    }
    #[inline(always)]
    unsafe fn fma(a: __m512, b: __m512, c: __m512) -> __m512 {
        _mm512_fmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn fnma(a: __m512, b: __m512, c: __m512) -> __m512 {
        _mm512_fnmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn round(v: __m512) -> __m512 {
        _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v)
    }
    #[inline(always)]
    unsafe fn exp_scale(_x: __m512, y: __m512, n: __m512) -> __m512 {
        _mm512_scalef_ps(y, n)
    }
    #[inline(always)]
    unsafe fn hsum(v: __m512) -> f32 {
        _mm512_reduce_add_ps(v)
    }
    #[inline(always)]
    unsafe fn hmax(v: __m512) -> f32 {
        _mm512_reduce_max_ps(v)
    }
    #[inline(always)]
    unsafe fn hsums(v: &[__m512]) -> __m512 {
        reduce16(v.try_into().expect("16 registers"))
    }
    #[inline(always)]
    unsafe fn keep_first(v: __m512, n: usize) -> __m512 {
        _mm512_maskz_mov_ps(mask16(n), v)
    }
    #[inline(always)]
    unsafe fn abs(v: __m512) -> __m512 {
        _mm512_abs_ps(v)
    }
    #[inline(always)]
    unsafe fn round_away(x: __m512) -> __m512 {
        // Truncate, then add the sign where the fraction was at least one half (exact for
        // every float).
        let t = _mm512_roundscale_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(x);
        let frac = _mm512_abs_ps(_mm512_sub_ps(x, t));
        let half = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(frac, _mm512_set1_ps(0.5));
        let sign = _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(i32::MIN));
        let one = _mm512_castsi512_ps(_mm512_or_si512(sign, _mm512_set1_epi32(0x3f80_0000)));
        _mm512_mask_add_ps(t, half, t, one)
    }
    #[inline(always)]
    unsafe fn store_i8(p: *mut i8, v: __m512) {
        _mm_storeu_si128(p.cast(), _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(v)));
    }
    #[inline(always)]
    unsafe fn iota(base: i32) -> __m512i {
        _mm512_add_epi32(
            _mm512_set1_epi32(base),
            _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
        )
    }
    #[inline(always)]
    unsafe fn splat_i(x: i32) -> __m512i {
        _mm512_set1_epi32(x)
    }
    #[inline(always)]
    unsafe fn min_i(a: __m512i, b: __m512i) -> __m512i {
        _mm512_min_epi32(a, b)
    }
    #[inline(always)]
    unsafe fn gt_i(a: __m512i, b: __m512i) -> __mmask16 {
        _mm512_cmpgt_epi32_mask(a, b)
    }
    #[inline(always)]
    unsafe fn select(m: __mmask16, a: __m512, b: __m512) -> __m512 {
        _mm512_mask_blend_ps(m, a, b)
    }
}

float_kernels!(Avx512, "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c");
pub(crate) use float_kernels::*;
