//! AVX2 + FMA + F16C: the [`Simd`] vocabulary of the float algorithms (`crate::simd`), and the
//! activation quantizers. The integer GEMV kernels are in `x86_gemv.rs`, the GEMM kernels
//! in `x86_avx2_gemm.rs`.
//!
//! `exp` builds `2^n` in the exponent bits: 0 below -87.33, saturating at e^88.37.

#![allow(clippy::missing_safety_doc)]

use std::arch::x86_64::*;

use half::f16;

use crate::simd::{float_kernels, simd_basics, Simd};

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn hmax_ps(v: __m256) -> f32 {
    let s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_max_ss(s, _mm_movehdup_ps(s)))
}

/// AVX2 + FMA + F16C, 8 f32 lanes.
#[derive(Clone, Copy)]
pub(crate) struct Avx2;

impl Simd for Avx2 {
    const LANES: usize = 8;
    const GEMM_TOKENS: usize = 6;
    const EXP_LO: f32 = -87.336_55;
    const EXP_HI: f32 = 88.376_26;
    type V = __m256;
    type I = __m256i;
    type M = __m256;

    simd_basics!(__m256; zero = _mm256_setzero_ps, splat = _mm256_set1_ps, load = _mm256_loadu_ps,
        store = _mm256_storeu_ps; add = _mm256_add_ps, sub = _mm256_sub_ps, mul = _mm256_mul_ps,
        div = _mm256_div_ps, max = _mm256_max_ps, min = _mm256_min_ps);

    #[inline(always)]
    unsafe fn load_part(p: *const f32, n: usize) -> __m256 {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe {
            if n >= 8 {
                _mm256_loadu_ps(p)
            } else {
                let mut t = [0f32; 8];
                std::ptr::copy_nonoverlapping(p, t.as_mut_ptr(), n);
                _mm256_loadu_ps(t.as_ptr())
            }
        }
    }
    #[inline(always)]
    unsafe fn store_part(p: *mut f32, n: usize, v: __m256) {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe {
            if n >= 8 {
                _mm256_storeu_ps(p, v)
            } else {
                let mut t = [0f32; 8];
                _mm256_storeu_ps(t.as_mut_ptr(), v);
                std::ptr::copy_nonoverlapping(t.as_ptr(), p, n);
            }
        }
    }
    #[inline(always)]
    unsafe fn load_f16(p: *const f16) -> __m256 {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.cast())) }
    }
    #[inline(always)]
    unsafe fn load_bf16(p: *const u16) -> __m256 {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe { _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(_mm_loadu_si128(p.cast())))) }
    }
    #[inline(always)]
    unsafe fn prefetch(p: *const u8) {
        // SAFETY: a prefetch never faults, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast()) }
    }
    #[inline(always)]
    unsafe fn load_i8(p: *const i8) -> __m256 {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe { _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(p.cast()))) }
    }
    #[inline(always)]
    unsafe fn splat_f16(p: *const f16) -> __m256 {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe { _mm256_cvtph_ps(_mm_set1_epi16(p.cast::<i16>().read_unaligned())) }
    }
    #[inline(always)]
    unsafe fn fma(a: __m256, b: __m256, c: __m256) -> __m256 {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe { _mm256_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    unsafe fn fnma(a: __m256, b: __m256, c: __m256) -> __m256 {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe { _mm256_fnmadd_ps(a, b, c) }
    }
    #[inline(always)]
    unsafe fn round(v: __m256) -> __m256 {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe { _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v) }
    }
    #[inline(always)]
    unsafe fn exp_scale(x: __m256, y: __m256, n: __m256) -> __m256 {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe {
            let pow2n = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
                _mm256_cvtps_epi32(n),
                _mm256_set1_epi32(127),
            )));
            let under = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_set1_ps(Self::EXP_LO));
            _mm256_andnot_ps(under, _mm256_mul_ps(y, pow2n))
        }
    }
    #[inline(always)]
    unsafe fn hsum(v: __m256) -> f32 {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe {
            let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
        }
    }
    #[inline(always)]
    unsafe fn hmax(v: __m256) -> f32 {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe { hmax_ps(v) }
    }
    #[inline(always)]
    unsafe fn hsums(v: &[__m256]) -> __m256 {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe {
            // No closures here: a closure would not inherit the caller's target features.
            let s2 = [
                _mm256_add_ps(_mm256_unpacklo_ps(v[0], v[1]), _mm256_unpackhi_ps(v[0], v[1])),
                _mm256_add_ps(_mm256_unpacklo_ps(v[2], v[3]), _mm256_unpackhi_ps(v[2], v[3])),
                _mm256_add_ps(_mm256_unpacklo_ps(v[4], v[5]), _mm256_unpackhi_ps(v[4], v[5])),
                _mm256_add_ps(_mm256_unpacklo_ps(v[6], v[7]), _mm256_unpackhi_ps(v[6], v[7])),
            ];
            let (a, b, c, d) =
                (_mm256_castps_pd(s2[0]), _mm256_castps_pd(s2[1]), _mm256_castps_pd(s2[2]), _mm256_castps_pd(s2[3]));
            let s4 = [
                _mm256_add_ps(_mm256_castpd_ps(_mm256_unpacklo_pd(a, b)), _mm256_castpd_ps(_mm256_unpackhi_pd(a, b))),
                _mm256_add_ps(_mm256_castpd_ps(_mm256_unpacklo_pd(c, d)), _mm256_castpd_ps(_mm256_unpackhi_pd(c, d))),
            ];
            _mm256_add_ps(_mm256_permute2f128_ps::<0x20>(s4[0], s4[1]), _mm256_permute2f128_ps::<0x31>(s4[0], s4[1]))
        }
    }
    #[inline(always)]
    unsafe fn keep_first(v: __m256, n: usize) -> __m256 {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe {
            let keep = _mm256_cmpgt_epi32(_mm256_set1_epi32(n.min(8) as i32), _mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0));
            _mm256_and_ps(v, _mm256_castsi256_ps(keep))
        }
    }
    #[inline(always)]
    unsafe fn abs(v: __m256) -> __m256 {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe { _mm256_andnot_ps(_mm256_set1_ps(-0.0), v) }
    }
    #[inline(always)]
    unsafe fn round_away(x: __m256) -> __m256 {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe {
            // Truncate, then add the sign where the fraction was at least one half (exact for
            // every float).
            let t = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(x);
            let half = _mm256_cmp_ps::<_CMP_GE_OQ>(Self::abs(_mm256_sub_ps(x, t)), _mm256_set1_ps(0.5));
            let one = _mm256_or_ps(_mm256_and_ps(x, _mm256_set1_ps(-0.0)), _mm256_set1_ps(1.0));
            _mm256_add_ps(t, _mm256_and_ps(half, one))
        }
    }
    #[inline(always)]
    unsafe fn store_i8(p: *mut i8, v: __m256) {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe {
            // Narrow within 128-bit halves, then gather the two 4-byte results.
            let i = _mm256_cvtps_epi32(v);
            let b = _mm256_packs_epi16(_mm256_packs_epi32(i, i), _mm256_setzero_si256());
            let b = _mm256_permutevar8x32_epi32(b, _mm256_set_epi32(0, 0, 0, 0, 0, 0, 4, 0));
            _mm_storel_epi64(p.cast(), _mm256_castsi256_si128(b));
        }
    }
    #[inline(always)]
    unsafe fn iota(base: i32) -> __m256i {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe { _mm256_add_epi32(_mm256_set1_epi32(base), _mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0)) }
    }
    #[inline(always)]
    unsafe fn splat_i(x: i32) -> __m256i {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe { _mm256_set1_epi32(x) }
    }
    #[inline(always)]
    unsafe fn min_i(a: __m256i, b: __m256i) -> __m256i {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe { _mm256_min_epi32(a, b) }
    }
    #[inline(always)]
    unsafe fn gt_i(a: __m256i, b: __m256i) -> __m256 {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe { _mm256_castsi256_ps(_mm256_cmpgt_epi32(a, b)) }
    }
    #[inline(always)]
    unsafe fn select(m: __m256, a: __m256, b: __m256) -> __m256 {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe { _mm256_blendv_ps(a, b, m) }
    }
}

float_kernels!(Avx2, "avx2,fma,f16c");
pub(crate) use float_kernels::*;
