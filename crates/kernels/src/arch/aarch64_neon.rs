//! NEON + dot-product: the [`Simd`] vocabulary of the float algorithms (`crate::simd`; `exp`
//! builds `2^n` in the exponent bits: 0 below -87.33, saturating at e^88.37), the float kernels
//! and activation quantizers over it, and `sdot`, the byte dot product of the quantized GEMV
//! (`super::aarch64_neon_gemv`) and GEMM (`super::aarch64_neon_gemm`). `vdotq_s32` is still
//! unstable in Rust, so `sdot` is written with `asm!`.

#![allow(clippy::missing_safety_doc)]

use std::arch::aarch64::*;
use std::arch::asm;

use half::f16;

use crate::simd::{float_kernels, simd_basics, Simd};

/// `acc + sum of the four byte products` per 32-bit lane (the `sdot` instruction).
#[target_feature(enable = "neon,dotprod")]
#[inline]
pub(crate) unsafe fn sdot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    // SAFETY: within this function's contract: the CPU has the target features it (or its
    // caller) names, and the caller's pointers and lengths are valid for what it touches.
    unsafe {
        let mut acc = acc;
        // SAFETY: `sdot` reads two vector registers and updates a third; no memory, no flags. The
        // enclosing function requires the dotprod feature, which the dispatcher checked.
        asm!("sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b", acc = inout(vreg) acc, a = in(vreg) a, b = in(vreg) b,
         options(pure, nomem, nostack, preserves_flags));
        acc
    }
}

/// Four f16 (as bits) widened to f32, exactly (the NEON half-precision types need Rust 1.94):
/// exponent and mantissa moved to f32 positions and scaled by 2^112 (exact for normal and
/// subnormal halves), infinities and NaNs given the all-ones exponent, then the sign.
#[target_feature(enable = "neon")]
#[inline]
pub(crate) unsafe fn load_f16x4(p: *const u16) -> float32x4_t {
    // SAFETY: within this function's contract: the CPU has the target features it (or its
    // caller) names, and the caller's pointers and lengths are valid for what it touches.
    unsafe {
        let h = vmovl_u16(vld1_u16(p));
        let sign = vshlq_n_u32::<16>(vandq_u32(h, vdupq_n_u32(0x8000)));
        let mag = vshlq_n_u32::<13>(vandq_u32(h, vdupq_n_u32(0x7fff)));
        let scaled =
            vreinterpretq_u32_f32(vmulq_f32(vreinterpretq_f32_u32(mag), vdupq_n_f32(f32::from_bits(0x7780_0000))));
        let special = vceqq_u32(vandq_u32(h, vdupq_n_u32(0x7c00)), vdupq_n_u32(0x7c00));
        let bits = vbslq_u32(special, vorrq_u32(mag, vdupq_n_u32(0x7f80_0000)), scaled);
        vreinterpretq_f32_u32(vorrq_u32(bits, sign))
    }
}

#[inline(always)]
unsafe fn zero_f32x4() -> float32x4_t {
    // SAFETY: within this function's contract: the CPU has the target features it (or its
    // caller) names, and the caller's pointers and lengths are valid for what it touches.
    unsafe { vdupq_n_f32(0.0) }
}

/// NEON (AArch64 Advanced SIMD, + dotprod for the integer kernels), 4 f32 lanes.
#[derive(Clone, Copy)]
pub(crate) struct Neon;

impl Simd for Neon {
    const LANES: usize = 4;
    const GEMM_TOKENS: usize = 12;
    const EXP_LO: f32 = -87.336_55;
    const EXP_HI: f32 = 88.376_26;
    type V = float32x4_t;
    type I = int32x4_t;
    type M = uint32x4_t;

    simd_basics!(float32x4_t; zero = zero_f32x4, splat = vdupq_n_f32, load = vld1q_f32,
        store = vst1q_f32; add = vaddq_f32, sub = vsubq_f32, mul = vmulq_f32, div = vdivq_f32,
        max = vmaxq_f32, min = vminq_f32);

    #[inline(always)]
    unsafe fn load_part(p: *const f32, n: usize) -> float32x4_t {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe {
            if n >= 4 {
                vld1q_f32(p)
            } else {
                let mut t = [0f32; 4];
                std::ptr::copy_nonoverlapping(p, t.as_mut_ptr(), n);
                vld1q_f32(t.as_ptr())
            }
        }
    }
    #[inline(always)]
    unsafe fn store_part(p: *mut f32, n: usize, v: float32x4_t) {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe {
            if n >= 4 {
                vst1q_f32(p, v)
            } else {
                let mut t = [0f32; 4];
                vst1q_f32(t.as_mut_ptr(), v);
                std::ptr::copy_nonoverlapping(t.as_ptr(), p, n);
            }
        }
    }
    #[inline(always)]
    unsafe fn load_f16(p: *const f16) -> float32x4_t {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe { load_f16x4(p.cast()) }
    }
    #[inline(always)]
    unsafe fn load_bf16(p: *const u16) -> float32x4_t {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe { vreinterpretq_f32_u32(vshlq_n_u32::<16>(vmovl_u16(vld1_u16(p)))) }
    }
    #[inline(always)]
    unsafe fn load_i8(p: *const i8) -> float32x4_t {
        // SAFETY: the Simd contract: called only where this backend's target features are on;
        // the four bytes at p are read as one unaligned i32.
        unsafe {
            let b = vreinterpret_s8_s32(vdup_n_s32(p.cast::<i32>().read_unaligned()));
            vcvtq_f32_s32(vmovl_s16(vget_low_s16(vmovl_s8(b))))
        }
    }
    #[inline(always)]
    unsafe fn splat_f16(p: *const f16) -> float32x4_t {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe { load_f16x4([p.cast::<u16>().read_unaligned(); 4].as_ptr()) }
    }
    #[inline(always)]
    unsafe fn fma(a: float32x4_t, b: float32x4_t, c: float32x4_t) -> float32x4_t {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe { vfmaq_f32(c, a, b) }
    }
    #[inline(always)]
    unsafe fn fnma(a: float32x4_t, b: float32x4_t, c: float32x4_t) -> float32x4_t {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe { vfmsq_f32(c, a, b) }
    }
    #[inline(always)]
    unsafe fn round(v: float32x4_t) -> float32x4_t {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe { vrndnq_f32(v) }
    }
    #[inline(always)]
    unsafe fn exp_scale(x: float32x4_t, y: float32x4_t, n: float32x4_t) -> float32x4_t {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe {
            let pow2n = vreinterpretq_f32_s32(vshlq_n_s32::<23>(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127))));
            let under = vcltq_f32(x, vdupq_n_f32(Self::EXP_LO));
            vreinterpretq_f32_u32(vbicq_u32(vreinterpretq_u32_f32(vmulq_f32(y, pow2n)), under))
        }
    }
    #[inline(always)]
    unsafe fn hsum(v: float32x4_t) -> f32 {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe { vaddvq_f32(v) }
    }
    #[inline(always)]
    unsafe fn hmax(v: float32x4_t) -> f32 {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe { vmaxvq_f32(v) }
    }
    #[inline(always)]
    unsafe fn hsums(v: &[float32x4_t]) -> float32x4_t {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe {
            let (a, b) = (vpaddq_f32(v[0], v[1]), vpaddq_f32(v[2], v[3]));
            vpaddq_f32(a, b)
        }
    }
    #[inline(always)]
    unsafe fn keep_first(v: float32x4_t, n: usize) -> float32x4_t {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe {
            let idx = [0u32, 1, 2, 3];
            let m = vcltq_u32(vld1q_u32(idx.as_ptr()), vdupq_n_u32(n.min(4) as u32));
            vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(v), m))
        }
    }
    #[inline(always)]
    unsafe fn abs(v: float32x4_t) -> float32x4_t {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe { vabsq_f32(v) }
    }
    #[inline(always)]
    unsafe fn round_away(v: float32x4_t) -> float32x4_t {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe { vrndaq_f32(v) }
    }
    #[inline(always)]
    unsafe fn store_i8(p: *mut i8, v: float32x4_t) {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe {
            let b = vmovn_s16(vcombine_s16(vmovn_s32(vcvtq_s32_f32(v)), vdup_n_s16(0)));
            p.cast::<u32>().write_unaligned(vget_lane_u32::<0>(vreinterpret_u32_s8(b)));
        }
    }
    #[inline(always)]
    unsafe fn iota(base: i32) -> int32x4_t {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe {
            let idx = [0i32, 1, 2, 3];
            vaddq_s32(vdupq_n_s32(base), vld1q_s32(idx.as_ptr()))
        }
    }
    #[inline(always)]
    unsafe fn splat_i(x: i32) -> int32x4_t {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe { vdupq_n_s32(x) }
    }
    #[inline(always)]
    unsafe fn min_i(a: int32x4_t, b: int32x4_t) -> int32x4_t {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe { vminq_s32(a, b) }
    }
    #[inline(always)]
    unsafe fn gt_i(a: int32x4_t, b: int32x4_t) -> uint32x4_t {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe { vcgtq_s32(a, b) }
    }
    #[inline(always)]
    unsafe fn select(m: uint32x4_t, a: float32x4_t, b: float32x4_t) -> float32x4_t {
        // SAFETY: the Simd contract: called only where this backend's target features are on.
        unsafe { vbslq_f32(m, b, a) }
    }
}

float_kernels!(Neon, "neon");
pub(crate) use float_kernels::*;
