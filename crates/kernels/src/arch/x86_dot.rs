//! The byte dot product the x86 quantized kernels are written over ([`Dot`]: AVX2's
//! `vpmaddubsw`, or `vpdpbusd` for the AVX-512 and AVX-VNNI tables) and the small helpers they
//! share: the bottom of the x86 GEMV modules, which import it and nothing from each other's
//! upper layers.

#![allow(clippy::missing_safety_doc)]

use std::arch::x86_64::*;

use crate::CHAINS;

#[inline(always)]
pub(crate) unsafe fn rd16(p: *const u8) -> u16 {
    // SAFETY: within this function's contract: the CPU has the target features it (or its
    // caller) names, and the caller's pointers and lengths are valid for what it touches.
    unsafe { p.cast::<u16>().read_unaligned() }
}

#[inline(always)]
pub(crate) unsafe fn ld(p: *const u8) -> __m256i {
    // SAFETY: within this function's contract: the CPU has the target features it (or its
    // caller) names, and the caller's pointers and lengths are valid for what it touches.
    unsafe { _mm256_loadu_si256(p.cast()) }
}

/// The byte dot product the kernel is written over: per 4-byte lane, the sum of the products of
/// 4 unsigned codes and 4 signed activations. Integer sums are exact, so every implementation
/// gives the same bits; the entry points of each are instantiated with their target features
/// (the kernel's generic functions are `#[inline(always)]` for that).
pub(crate) trait Dot {
    /// `acc` plus the lane sums of `u x x` (codes <= 127, or products that fit `vpmaddubsw`'s
    /// i16 pairs).
    unsafe fn dot(acc: __m256i, u: __m256i, x: __m256i) -> __m256i;
    /// The lane sums of `u0 x x0` plus those of `u1 x x1`, for codes <= 31 (so that two
    /// products pairs also sum exactly in i16).
    unsafe fn dot2(u0: __m256i, x0: __m256i, u1: __m256i, x1: __m256i) -> __m256i;
    /// The lane sums of four products `u_i x x_i`, for codes <= 15 (so that four product pairs
    /// sum exactly in i16: `4 * 2 * 15 * 127 < 2^15`).
    unsafe fn dot4(u: [__m256i; 4], x: [__m256i; 4]) -> __m256i;
}

/// AVX2: `vpmaddubsw` (pairs into i16), then `vpmaddwd` by ones (into i32 lanes).
pub(crate) struct Maddubs;

impl Dot for Maddubs {
    #[inline(always)]
    unsafe fn dot(acc: __m256i, u: __m256i, x: __m256i) -> __m256i {
        // SAFETY: the caller's contract: the CPU has AVX2.
        unsafe { _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, x), _mm256_set1_epi16(1))) }
    }

    #[inline(always)]
    unsafe fn dot2(u0: __m256i, x0: __m256i, u1: __m256i, x1: __m256i) -> __m256i {
        // SAFETY: the caller's contract: the CPU has AVX2; codes <= 31 keep each product pair
        // below 2^13, so two pairs sum exactly in i16.
        unsafe {
            let p = _mm256_add_epi16(_mm256_maddubs_epi16(u0, x0), _mm256_maddubs_epi16(u1, x1));
            _mm256_madd_epi16(p, _mm256_set1_epi16(1))
        }
    }

    #[inline(always)]
    unsafe fn dot4(u: [__m256i; 4], x: [__m256i; 4]) -> __m256i {
        // SAFETY: the caller's contract: the CPU has AVX2; codes <= 15 keep four product pairs
        // below 2^15 (activation codes are within -127..=127).
        unsafe {
            let p = |i: usize| _mm256_maddubs_epi16(u[i], x[i]);
            let s = _mm256_add_epi16(_mm256_add_epi16(p(0), p(1)), _mm256_add_epi16(p(2), p(3)));
            _mm256_madd_epi16(s, _mm256_set1_epi16(1))
        }
    }
}

/// `vpdpbusd` on ymm registers: the EVEX form of AVX-512 VNNI (with AVX512VL), or, with `VEX`,
/// AVX-VNNI's: 4 products per i32 lane added straight into the sums.
pub(crate) struct Dpbusd<const VEX: bool>;

impl<const VEX: bool> Dot for Dpbusd<VEX> {
    #[inline(always)]
    unsafe fn dot(acc: __m256i, u: __m256i, x: __m256i) -> __m256i {
        // SAFETY: the caller's contract: the CPU has AVX-VNNI (`VEX`) or AVX-512 VNNI and VL,
        // which the entry point that inlines this names.
        unsafe {
            if VEX {
                _mm256_dpbusd_avx_epi32(acc, u, x)
            } else {
                _mm256_dpbusd_epi32(acc, u, x)
            }
        }
    }

    #[inline(always)]
    unsafe fn dot2(u0: __m256i, x0: __m256i, u1: __m256i, x1: __m256i) -> __m256i {
        // SAFETY: as for `dot`.
        unsafe { Self::dot(Self::dot(_mm256_setzero_si256(), u0, x0), u1, x1) }
    }

    #[inline(always)]
    unsafe fn dot4(u: [__m256i; 4], x: [__m256i; 4]) -> __m256i {
        // SAFETY: as for `dot`; two chains of two, so that the dependent sums overlap.
        unsafe { _mm256_add_epi32(Self::dot2(u[0], x[0], u[1], x[1]), Self::dot2(u[2], x[2], u[3], x[3])) }
    }
}

/// The final sum of an output's accumulator chains: `(c0 + c1) + (c2 + c3)` (`crate::order`).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) fn sum_chains(c: [__m256; CHAINS]) -> __m256 {
    _mm256_add_ps(_mm256_add_ps(c[0], c[1]), _mm256_add_ps(c[2], c[3]))
}
