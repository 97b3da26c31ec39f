//! AVX-512 (F, BW, VL, VNNI): the [`Simd`] vocabulary of the float algorithms
//! (`crate::simd`; `exp` scales by `vscalefps`: 0 below -104, +inf above 88.7) and the
//! activation quantizers. The quantized GEMV of this backend is the AVX2 one (see the table),
//! which sums in the order of the AVX-512 GEMM.

#![allow(clippy::missing_safety_doc)]

use std::arch::x86_64::*;

use half::f16;

use crate::simd::{float_kernels, simd_basics, Simd};

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
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe { _mm512_maskz_loadu_ps(mask16(n), p) }
    }
    #[inline(always)]
    unsafe fn store_part(p: *mut f32, n: usize, v: __m512) {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe { _mm512_mask_storeu_ps(p, mask16(n), v) }
    }
    #[inline(always)]
    unsafe fn load_f16(p: *const f16) -> __m512 {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p.cast())) }
    }
    #[inline(always)]
    unsafe fn load_bf16(p: *const u16) -> __m512 {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe { _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(_mm256_loadu_si256(p.cast())))) }
    }
    #[inline(always)]
    unsafe fn prefetch(p: *const u8) {
        // SAFETY: a prefetch never faults, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast()) }
    }
    #[inline(always)]
    unsafe fn load_i8(p: *const i8) -> __m512 {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe { _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(p.cast()))) }
    }
    #[inline(always)]
    unsafe fn splat_f16(p: *const f16) -> __m512 {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe { _mm512_cvtph_ps(_mm256_set1_epi16(p.cast::<i16>().read_unaligned())) }
    }
    #[inline(always)]
    unsafe fn fma(a: __m512, b: __m512, c: __m512) -> __m512 {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe { _mm512_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    unsafe fn fnma(a: __m512, b: __m512, c: __m512) -> __m512 {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe { _mm512_fnmadd_ps(a, b, c) }
    }
    #[inline(always)]
    unsafe fn round(v: __m512) -> __m512 {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe { _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v) }
    }
    #[inline(always)]
    unsafe fn exp_scale(_x: __m512, y: __m512, n: __m512) -> __m512 {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe { _mm512_scalef_ps(y, n) }
    }
    #[inline(always)]
    unsafe fn hsum(v: __m512) -> f32 {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe { _mm512_reduce_add_ps(v) }
    }
    #[inline(always)]
    unsafe fn hmax(v: __m512) -> f32 {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe { _mm512_reduce_max_ps(v) }
    }
    #[inline(always)]
    unsafe fn hsums(v: &[__m512]) -> __m512 {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe { reduce16(v.try_into().expect("16 registers")) }
    }
    #[inline(always)]
    unsafe fn keep_first(v: __m512, n: usize) -> __m512 {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe { _mm512_maskz_mov_ps(mask16(n), v) }
    }
    #[inline(always)]
    unsafe fn abs(v: __m512) -> __m512 {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe { _mm512_abs_ps(v) }
    }
    #[inline(always)]
    unsafe fn round_away(x: __m512) -> __m512 {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe {
            // Truncate, then add the sign where the fraction was at least one half (exact for
            // every float).
            let t = _mm512_roundscale_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(x);
            let frac = _mm512_abs_ps(_mm512_sub_ps(x, t));
            let half = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(frac, _mm512_set1_ps(0.5));
            let sign = _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(i32::MIN));
            let one = _mm512_castsi512_ps(_mm512_or_si512(sign, _mm512_set1_epi32(0x3f80_0000)));
            _mm512_mask_add_ps(t, half, t, one)
        }
    }
    #[inline(always)]
    unsafe fn store_i8(p: *mut i8, v: __m512) {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe {
            _mm_storeu_si128(p.cast(), _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(v)));
        }
    }
    #[inline(always)]
    unsafe fn iota(base: i32) -> __m512i {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe {
            _mm512_add_epi32(
                _mm512_set1_epi32(base),
                _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
            )
        }
    }
    #[inline(always)]
    unsafe fn splat_i(x: i32) -> __m512i {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe { _mm512_set1_epi32(x) }
    }
    #[inline(always)]
    unsafe fn min_i(a: __m512i, b: __m512i) -> __m512i {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe { _mm512_min_epi32(a, b) }
    }
    #[inline(always)]
    unsafe fn gt_i(a: __m512i, b: __m512i) -> __mmask16 {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe { _mm512_cmpgt_epi32_mask(a, b) }
    }
    #[inline(always)]
    unsafe fn select(m: __mmask16, a: __m512, b: __m512) -> __m512 {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe { _mm512_mask_blend_ps(m, a, b) }
    }
}

float_kernels!(Avx512, "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c");
pub(crate) use float_kernels::*;
