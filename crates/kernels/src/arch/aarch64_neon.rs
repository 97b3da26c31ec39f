//! NEON + dot-product: the [`Simd`] vocabulary of the float algorithms (`crate::simd`; `exp`
//! builds `2^n` in the exponent bits: 0 below -87.33, saturating at e^88.37), activation
//! quantizers and the GEMV dot products of the quantized formats.
//!
//! Same activation lane layout as x86 (`act.rs`), 16 bytes (4 lanes) at a time: `sdot` (signed
//! x signed, 4-byte lanes) of the unsigned codes (all below 128, so they read as the same
//! signed bytes) against activation bytes, starting from the `corr` lanes. `vdotq_s32` is still
//! unstable in Rust, so `sdot` is written with `asm!`. Q4_0 and Q8_0 read ggml's blocks
//! directly; the other formats decode a row with the portable decoder first.

#![allow(clippy::missing_safety_doc)]

use std::arch::aarch64::*;
use std::arch::asm;

use gguf_file::GgmlType;
use quill_quant::{fp16_to_fp32, BlockQ4_0, BlockQ8_0};

use half::f16;

use crate::act::GemvAct;
use crate::decode::decode_row;
use crate::formats::{quant_spec, Lanes, LegacyBlock};
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

#[inline(always)]
unsafe fn rd_f16(p: *const u8) -> f32 {
    // SAFETY: within this function's contract: the CPU has the target features it (or its
    // caller) names, and the caller's pointers and lengths are valid for what it touches.
    unsafe { fp16_to_fp32(half::f16::from_bits(p.cast::<u16>().read_unaligned())) }
}

/// The GEMV row loop: whole groups straight from the row, the last partial group from a
/// zero-padded copy (its activation lanes are zero past the row's end).
macro_rules! gemv_rows {
    ($w:expr, $rb:expr, $k:expr, $act:expr, $out:expr, $elems:expr, $wbytes:expr, $abytes:expr, $group:ident) => {{
        let (w, rb, k, out): (&[u8], usize, usize, &mut [f32]) = ($w, $rb, $k, $out);
        let a = $act.lanes.as_ptr().cast::<u8>();
        let (full, n_groups) = (k / $elems, k.div_ceil($elems));
        let mut pad = [0u8; $wbytes];
        let tail = rb - full * $wbytes;
        for (r, o) in out.iter_mut().enumerate() {
            let p = w.as_ptr().add(r * rb);
            let mut acc = vdupq_n_f32(0.0);
            for g in 0..full {
                acc = $group(p.add(g * $wbytes), a.add(g * $abytes), acc);
            }
            if full < n_groups {
                std::ptr::copy_nonoverlapping(p.add(full * $wbytes), pad.as_mut_ptr(), tail);
                acc = $group(pad.as_ptr(), a.add(full * $abytes), acc);
            }
            *o = vaddvq_f32(acc);
        }
    }};
}

/// Bytes of a Q4_0 and a Q8_0 block.
const Q4_0_BYTES: usize = <BlockQ4_0 as LegacyBlock>::BYTES;
const Q8_0_BYTES: usize = <BlockQ8_0 as LegacyBlock>::BYTES;

/// Four Q4_0 blocks against one P32 group (x0, x1, dx, corr).
#[target_feature(enable = "neon,dotprod")]
#[inline]
unsafe fn group_q4_0(p: *const u8, a: *const u8, acc: float32x4_t) -> float32x4_t {
    // SAFETY: within this function's contract: the CPU has the target features it (or its
    // caller) names, and the caller's pointers and lengths are valid for what it touches.
    unsafe {
        let mut acc = acc;
        for b in 0..4 {
            let blk = p.add(Q4_0_BYTES * b);
            let qs = vld1q_u8(blk.add(<BlockQ4_0 as LegacyBlock>::QS));
            let lo = vreinterpretq_s8_u8(vandq_u8(qs, vdupq_n_u8(0x0f)));
            let hi = vreinterpretq_s8_u8(vshrq_n_u8::<4>(qs));
            let corr = vld1q_s32(a.add(192 + 16 * b).cast());
            let s = sdot(sdot(corr, lo, vld1q_s8(a.add(16 * b).cast())), hi, vld1q_s8(a.add(64 + 16 * b).cast()));
            let dx = vld1q_f32(a.add(128 + 16 * b).cast());
            acc = vfmaq_f32(acc, vcvtq_f32_s32(s), vmulq_n_f32(dx, rd_f16(blk.add(<BlockQ4_0 as LegacyBlock>::D))));
        }
        acc
    }
}

/// Q4_0 interleaved by 8 rows: each group de-interleaved, then [`gemv_q4_0`] (the same bits
/// as the Q4_0 file on this backend).
pub(crate) unsafe fn gemv_q4_0_8_8(w: &[u8], rb: usize, k: usize, act: &GemvAct<'_>, out: &mut [f32]) {
    // SAFETY: this function's contract (the table's): the CPU has NEON and dotprod, `act` is
    // in the lane layout gemv_q4_0 reads, whole groups of rows.
    unsafe { crate::interleaved::gemv_groups(gemv_q4_0, w, rb, k, act, out) }
}

#[target_feature(enable = "neon,dotprod")]
pub(crate) unsafe fn gemv_q4_0(w: &[u8], rb: usize, k: usize, act: &GemvAct<'_>, out: &mut [f32]) {
    // SAFETY: within this function's contract: the CPU has the target features it (or its
    // caller) names, and the caller's pointers and lengths are valid for what it touches.
    unsafe { gemv_rows!(w, rb, k, act, out, 128, 4 * Q4_0_BYTES, 256, group_q4_0) }
}

/// Two Q8_0 blocks against one Nat group: signed codes, no correction.
#[target_feature(enable = "neon,dotprod")]
#[inline]
unsafe fn group_q8_0(p: *const u8, a: *const u8, acc: float32x4_t) -> float32x4_t {
    // SAFETY: within this function's contract: the CPU has the target features it (or its
    // caller) names, and the caller's pointers and lengths are valid for what it touches.
    unsafe {
        let mut acc = acc;
        for h in 0..2 {
            let blk = p.add(Q8_0_BYTES * h);
            let d = rd_f16(blk.add(<BlockQ8_0 as LegacyBlock>::D));
            for c in 0..2 {
                let chunk = 2 * h + c;
                let qs = blk.add(<BlockQ8_0 as LegacyBlock>::QS + 16 * c);
                let s = sdot(vdupq_n_s32(0), vld1q_s8(qs.cast()), vld1q_s8(a.add(16 * chunk).cast()));
                let dx = vld1q_f32(a.add(64 + 16 * chunk).cast());
                acc = vfmaq_f32(acc, vcvtq_f32_s32(s), vmulq_n_f32(dx, d));
            }
        }
        acc
    }
}

#[target_feature(enable = "neon,dotprod")]
pub(crate) unsafe fn gemv_q8_0(w: &[u8], rb: usize, k: usize, act: &GemvAct<'_>, out: &mut [f32]) {
    // SAFETY: within this function's contract: the CPU has the target features it (or its
    // caller) names, and the caller's pointers and lengths are valid for what it touches.
    unsafe { gemv_rows!(w, rb, k, act, out, 64, 2 * Q8_0_BYTES, 192, group_q8_0) }
}

/// Elements decoded at a time by [`gemv_decoded`] (a multiple of every block and group size),
/// in buffers on the stack.
const CHUNK: usize = 2048;

/// Any other quantized format: decode the row (portable), a chunk at a time, then `sdot` its
/// codes, which sit in natural order exactly where the lane layout wants them (16 contiguous
/// codes per 4 lanes).
#[target_feature(enable = "neon,dotprod")]
#[inline]
unsafe fn gemv_decoded(ty: GgmlType, w: &[u8], rb: usize, k: usize, act: &GemvAct<'_>, out: &mut [f32]) {
    // SAFETY: within this function's contract: the CPU has the target features it (or its
    // caller) names, and the caller's pointers and lengths are valid for what it touches.
    unsafe {
        let spec = quant_spec(ty).expect("a quantized format");
        let (group, units, regs) = (spec.lanes.group(), crate::act::group_units(&spec), spec.lanes.regs());
        let (bs, bb) = (ty.block_size() as usize, ty.block_bytes() as usize);
        let a = act.lanes.as_ptr().cast::<u8>();
        let mut codes = [0u8; CHUNK];
        let (mut dw, mut mw) = ([0f32; CHUNK / 16], [0f32; CHUNK / 16]);
        for (r, o) in out.iter_mut().enumerate() {
            let row = &w[r * rb..(r + 1) * rb];
            let mut acc = vdupq_n_f32(0.0);
            for e0 in (0..k).step_by(CHUNK) {
                let n = CHUNK.min(k - e0);
                let padded = n.next_multiple_of(group);
                codes[n..padded].fill(0);
                dw[n / spec.sblock..padded / spec.sblock].fill(0.0);
                mw[n / spec.sblock..padded / spec.sblock].fill(0.0);
                decode_row(ty, &row[e0 / bs * bb..(e0 + n) / bs * bb], n, &mut codes, &mut dw, &mut mw);
                let c = codes.as_ptr();
                for gl in 0..padded / group {
                    let ag = a.add(((e0 / group) + gl) * units * 64);
                    for ch in 0..4 {
                        let (e, s) = match spec.lanes {
                            Lanes::P32 => {
                                let e = gl * group + 32 * ch;
                                let x0 = vld1q_s8(ag.add(16 * ch).cast());
                                let x1 = vld1q_s8(ag.add(64 + 16 * ch).cast());
                                let corr = vld1q_s32(ag.add(64 * (regs + 1) + 16 * ch).cast());
                                let lo = vreinterpretq_s8_u8(vld1q_u8(c.add(e)));
                                let hi = vreinterpretq_s8_u8(vld1q_u8(c.add(e + 16)));
                                (e, sdot(sdot(corr, lo, x0), hi, x1))
                            }
                            Lanes::Nat => {
                                let e = gl * group + 16 * ch;
                                let x = vld1q_s8(ag.add(16 * ch).cast());
                                let corr = vld1q_s32(ag.add(64 * (regs + 1) + 16 * ch).cast());
                                (e, sdot(corr, vreinterpretq_s8_u8(vld1q_u8(c.add(e))), x))
                            }
                        };
                        let sb = e / spec.sblock;
                        let dx = vld1q_f32(ag.add(64 * regs + 16 * ch).cast());
                        acc = vfmaq_f32(acc, vcvtq_f32_s32(s), vmulq_n_f32(dx, dw[sb]));
                        if spec.has_min {
                            acc = vfmaq_n_f32(acc, vld1q_f32(ag.add(64 * (regs + 2) + 16 * ch).cast()), mw[sb]);
                        }
                    }
                }
            }
            *o = vaddvq_f32(acc);
        }
    }
}

macro_rules! decoded {
    ($($name:ident => $ty:ident),* $(,)?) => {$(
        #[target_feature(enable = "neon,dotprod")]
        pub(crate) unsafe fn $name(w: &[u8], rb: usize, k: usize, act: &GemvAct<'_>, out: &mut [f32]) {
            // SAFETY: this function's contract (the table's): the CPU has NEON + dotprod, valid rows.
            unsafe { gemv_decoded(GgmlType::$ty, w, rb, k, act, out) }
        }
    )*};
}

decoded! {
    gemv_q4_1 => Q4_1,
    gemv_q5_0 => Q5_0,
    gemv_q5_1 => Q5_1,
    gemv_q4_k => Q4_K,
    gemv_q5_k => Q5_K,
    gemv_q6_k => Q6_K,
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
