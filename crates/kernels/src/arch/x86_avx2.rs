//! AVX2 + FMA + F16C activation quantizers (the GEMV kernels are in `x86_avx2_gemv.rs`, the
//! GEMM kernels in `x86_avx2_gemm.rs`).

#![allow(clippy::missing_safety_doc)]

use std::arch::x86_64::*;

use quill_quant::{BlockQ8_0, BlockQ8_1, BlockQ8_K};

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
