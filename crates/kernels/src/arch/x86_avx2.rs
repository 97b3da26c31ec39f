//! AVX2 + FMA + F16C: the [`Simd`] vocabulary of the float algorithms (`crate::simd`), and the
//! activation quantizers. The integer GEMV kernels are in `x86_avx2_gemv.rs`, the GEMM kernels
//! in `x86_avx2_gemm.rs`.
//!
//! `exp` builds `2^n` in the exponent bits: 0 below -87.33, saturating at e^88.37.

#![allow(clippy::missing_safety_doc)]

use std::arch::x86_64::*;

use half::f16;
use quill_quant::{BlockQ8_0, BlockQ8_1, BlockQ8_K};

use crate::simd::{float_kernels, Simd};

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn f32_to_f16(v: f32) -> u16 {
    _mm_extract_epi16::<0>(_mm_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm_set_ss(v))) as u16
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

    #[inline(always)]
    unsafe fn zero() -> __m256 {
        _mm256_setzero_ps()
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> __m256 {
        _mm256_set1_ps(x)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m256 {
        _mm256_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m256) {
        _mm256_storeu_ps(p, v)
    }
    #[inline(always)]
    unsafe fn load_part(p: *const f32, n: usize) -> __m256 {
        if n >= 8 {
            _mm256_loadu_ps(p)
        } else {
            let mut t = [0f32; 8];
            std::ptr::copy_nonoverlapping(p, t.as_mut_ptr(), n);
            _mm256_loadu_ps(t.as_ptr())
        }
    }
    #[inline(always)]
    unsafe fn store_part(p: *mut f32, n: usize, v: __m256) {
        if n >= 8 {
            _mm256_storeu_ps(p, v)
        } else {
            let mut t = [0f32; 8];
            _mm256_storeu_ps(t.as_mut_ptr(), v);
            std::ptr::copy_nonoverlapping(t.as_ptr(), p, n);
        }
    }
    #[inline(always)]
    unsafe fn load_f16(p: *const f16) -> __m256 {
        _mm256_cvtph_ps(_mm_loadu_si128(p.cast()))
    }
    #[inline(always)]
    unsafe fn load_bf16(p: *const u16) -> __m256 {
        _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(_mm_loadu_si128(p.cast()))))
    }
    #[inline(always)]
    unsafe fn add(a: __m256, b: __m256) -> __m256 {
        _mm256_add_ps(a, b)
    }
    #[inline(always)]
    unsafe fn sub(a: __m256, b: __m256) -> __m256 {
        _mm256_sub_ps(a, b)
    }
    #[inline(always)]
    unsafe fn mul(a: __m256, b: __m256) -> __m256 {
        _mm256_mul_ps(a, b)
    }
    #[inline(always)]
    unsafe fn div(a: __m256, b: __m256) -> __m256 {
        _mm256_div_ps(a, b)
    }
    #[inline(always)]
    unsafe fn max(a: __m256, b: __m256) -> __m256 {
        _mm256_max_ps(a, b)
    }
    #[inline(always)]
    unsafe fn min(a: __m256, b: __m256) -> __m256 {
        _mm256_min_ps(a, b)
    }
    #[inline(always)]
    unsafe fn fma(a: __m256, b: __m256, c: __m256) -> __m256 {
        _mm256_fmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn fnma(a: __m256, b: __m256, c: __m256) -> __m256 {
        _mm256_fnmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn round(v: __m256) -> __m256 {
        _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v)
    }
    #[inline(always)]
    unsafe fn exp_scale(x: __m256, y: __m256, n: __m256) -> __m256 {
        let pow2n = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
            _mm256_cvtps_epi32(n),
            _mm256_set1_epi32(127),
        )));
        let under = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_set1_ps(Self::EXP_LO));
        _mm256_andnot_ps(under, _mm256_mul_ps(y, pow2n))
    }
    #[inline(always)]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
    }
    #[inline(always)]
    unsafe fn hmax(v: __m256) -> f32 {
        hmax_ps(v)
    }
    #[inline(always)]
    unsafe fn hsums(v: &[__m256]) -> __m256 {
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
    #[inline(always)]
    unsafe fn keep_first(v: __m256, n: usize) -> __m256 {
        let keep = _mm256_cmpgt_epi32(_mm256_set1_epi32(n.min(8) as i32), _mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0));
        _mm256_and_ps(v, _mm256_castsi256_ps(keep))
    }
    #[inline(always)]
    unsafe fn iota(base: i32) -> __m256i {
        _mm256_add_epi32(_mm256_set1_epi32(base), _mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0))
    }
    #[inline(always)]
    unsafe fn splat_i(x: i32) -> __m256i {
        _mm256_set1_epi32(x)
    }
    #[inline(always)]
    unsafe fn min_i(a: __m256i, b: __m256i) -> __m256i {
        _mm256_min_epi32(a, b)
    }
    #[inline(always)]
    unsafe fn gt_i(a: __m256i, b: __m256i) -> __m256 {
        _mm256_castsi256_ps(_mm256_cmpgt_epi32(a, b))
    }
    #[inline(always)]
    unsafe fn select(m: __m256, a: __m256, b: __m256) -> __m256 {
        _mm256_blendv_ps(a, b, m)
    }
}

float_kernels!(Avx2, "avx2,fma,f16c");
pub(crate) use float_kernels::*;
