//! NEON + dot-product kernels: activation quantizers and GEMV dot products.
//!
//! Same activation lane layout as x86 (`act.rs`), 16 bytes (4 lanes) at a time: `sdot` (signed
//! x signed, 4-byte lanes) of the unsigned codes (all below 128, so they read as the same
//! signed bytes) against activation bytes, starting from the `corr` lanes. `vdotq_s32` is still
//! unstable in Rust, so `sdot` is written with `asm!`. Q4_0 and Q8_0 read ggml's blocks
//! directly; the other formats decode a row with the portable decoder first.
//! No GEMM here: prefill runs one GEMV per token on NEON.

#![allow(clippy::missing_safety_doc)]

use std::arch::aarch64::*;
use std::arch::asm;

use gguf_file::GgmlType;
use quill_quant::{fp16_to_fp32, fp32_to_fp16, BlockQ8_0, BlockQ8_1, BlockQ8_K};

use crate::act::GemvAct;
use crate::decode::decode_row;
use crate::formats::{quant_spec, Lanes};

/// `acc + sum of the four byte products` per 32-bit lane (the `sdot` instruction).
#[target_feature(enable = "neon,dotprod")]
#[inline]
pub(crate) unsafe fn sdot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: `sdot` reads two vector registers and updates a third; no memory, no flags. The
    // enclosing function requires the dotprod feature, which the dispatcher checked.
    asm!("sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b", acc = inout(vreg) acc, a = in(vreg) a, b = in(vreg) b,
         options(pure, nomem, nostack, preserves_flags));
    acc
}

#[inline(always)]
unsafe fn rd_f16(p: *const u8) -> f32 {
    fp16_to_fp32(half::f16::from_bits(p.cast::<u16>().read_unaligned()))
}

/// Narrows 4 x 4 i32 (each in -128..=127) to 16 i8 in order.
#[target_feature(enable = "neon")]
#[inline]
fn narrow16(q: [int32x4_t; 4]) -> int8x16_t {
    let a = vcombine_s16(vmovn_s32(q[0]), vmovn_s32(q[1]));
    let b = vcombine_s16(vmovn_s32(q[2]), vmovn_s32(q[3]));
    vcombine_s8(vmovn_s16(a), vmovn_s16(b))
}

/// One Q8_0 block's codes and scale: ggml-quants.c `quantize_row_q8_0_ref` (`vrndaq` rounds
/// half away from zero like `roundf`).
#[target_feature(enable = "neon")]
#[inline]
unsafe fn q8_block(x: *const f32) -> ([int32x4_t; 8], f32) {
    let v: [float32x4_t; 8] = std::array::from_fn(|j| vld1q_f32(x.add(4 * j)));
    let mut m = vabsq_f32(v[0]);
    for vj in &v[1..] {
        m = vmaxq_f32(m, vabsq_f32(*vj));
    }
    let d = vmaxvq_f32(m) / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    (v.map(|vj| vcvtq_s32_f32(vrndaq_f32(vmulq_n_f32(vj, id)))), d)
}

#[target_feature(enable = "neon,dotprod")]
pub(crate) unsafe fn quantize_q8_0(x: &[f32], out: &mut [BlockQ8_0]) {
    debug_assert_eq!(x.len(), out.len() * 32);
    for (i, b) in out.iter_mut().enumerate() {
        let (q, d) = q8_block(x.as_ptr().add(32 * i));
        b.d = fp32_to_fp16(d);
        vst1q_s8(b.qs.as_mut_ptr(), narrow16([q[0], q[1], q[2], q[3]]));
        vst1q_s8(b.qs.as_mut_ptr().add(16), narrow16([q[4], q[5], q[6], q[7]]));
    }
}

#[target_feature(enable = "neon,dotprod")]
pub(crate) unsafe fn quantize_q8_1(x: &[f32], out: &mut [BlockQ8_1]) {
    debug_assert_eq!(x.len(), out.len() * 32);
    for (i, b) in out.iter_mut().enumerate() {
        let (q, d) = q8_block(x.as_ptr().add(32 * i));
        b.d = fp32_to_fp16(d);
        let sum: i32 = q.iter().map(|&v| vaddvq_s32(v)).sum();
        b.s = fp32_to_fp16(sum as f32 * d);
        vst1q_s8(b.qs.as_mut_ptr(), narrow16([q[0], q[1], q[2], q[3]]));
        vst1q_s8(b.qs.as_mut_ptr().add(16), narrow16([q[4], q[5], q[6], q[7]]));
    }
}

/// ggml-quants.c `quantize_row_q8_K_ref` (`vcvtnq` rounds half to even like `nearest_int`).
#[target_feature(enable = "neon,dotprod")]
pub(crate) unsafe fn quantize_q8_k(x: &[f32], out: &mut [BlockQ8_K]) {
    debug_assert_eq!(x.len(), out.len() * 256);
    for (i, b) in out.iter_mut().enumerate() {
        let xb = x.as_ptr().add(256 * i);
        let mut m = vdupq_n_f32(0.0);
        for j in 0..64 {
            m = vmaxq_f32(m, vabsq_f32(vld1q_f32(xb.add(4 * j))));
        }
        let amax = vmaxvq_f32(m);
        if amax == 0.0 {
            *b = bytemuck::Zeroable::zeroed();
            continue;
        }
        let first = (0..256).find(|&j| (*xb.add(j)).abs() == amax).unwrap_or(0);
        let iscale = -127.0 / *xb.add(first);
        for j in 0..16 {
            let q: [int32x4_t; 4] = std::array::from_fn(|l| {
                let v = vmulq_n_f32(vld1q_f32(xb.add(16 * j + 4 * l)), iscale);
                vminq_s32(vcvtnq_s32_f32(v), vdupq_n_s32(127))
            });
            b.bsums[j] = (vaddvq_s32(q[0]) + vaddvq_s32(q[1]) + vaddvq_s32(q[2]) + vaddvq_s32(q[3])) as i16;
            vst1q_s8(b.qs.as_mut_ptr().add(16 * j), narrow16(q));
        }
        b.d = 1.0 / iscale;
    }
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

/// Four Q4_0 blocks (72 bytes) against one P32 group (x0, x1, dx, corr).
#[target_feature(enable = "neon,dotprod")]
#[inline]
unsafe fn group_q4_0(p: *const u8, a: *const u8, acc: float32x4_t) -> float32x4_t {
    let mut acc = acc;
    for b in 0..4 {
        let blk = p.add(18 * b);
        let qs = vld1q_u8(blk.add(2));
        let lo = vreinterpretq_s8_u8(vandq_u8(qs, vdupq_n_u8(0x0f)));
        let hi = vreinterpretq_s8_u8(vshrq_n_u8::<4>(qs));
        let corr = vld1q_s32(a.add(192 + 16 * b).cast());
        let s = sdot(sdot(corr, lo, vld1q_s8(a.add(16 * b).cast())), hi, vld1q_s8(a.add(64 + 16 * b).cast()));
        let dx = vld1q_f32(a.add(128 + 16 * b).cast());
        acc = vfmaq_f32(acc, vcvtq_f32_s32(s), vmulq_n_f32(dx, rd_f16(blk)));
    }
    acc
}

#[target_feature(enable = "neon,dotprod")]
pub(crate) unsafe fn vec_dot_q4_0_q8_0(w: &[u8], rb: usize, k: usize, act: &GemvAct<'_>, out: &mut [f32]) {
    gemv_rows!(w, rb, k, act, out, 128, 72, 256, group_q4_0)
}

/// Two Q8_0 blocks (68 bytes) against one Nat group: signed codes, no correction.
#[target_feature(enable = "neon,dotprod")]
#[inline]
unsafe fn group_q8_0(p: *const u8, a: *const u8, acc: float32x4_t) -> float32x4_t {
    let mut acc = acc;
    for h in 0..2 {
        let blk = p.add(34 * h);
        let d = rd_f16(blk);
        for c in 0..2 {
            let chunk = 2 * h + c;
            let s = sdot(vdupq_n_s32(0), vld1q_s8(blk.add(2 + 16 * c).cast()), vld1q_s8(a.add(16 * chunk).cast()));
            let dx = vld1q_f32(a.add(64 + 16 * chunk).cast());
            acc = vfmaq_f32(acc, vcvtq_f32_s32(s), vmulq_n_f32(dx, d));
        }
    }
    acc
}

#[target_feature(enable = "neon,dotprod")]
pub(crate) unsafe fn vec_dot_q8_0_q8_0(w: &[u8], rb: usize, k: usize, act: &GemvAct<'_>, out: &mut [f32]) {
    gemv_rows!(w, rb, k, act, out, 64, 68, 192, group_q8_0)
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

macro_rules! decoded {
    ($($name:ident => $ty:ident),* $(,)?) => {$(
        #[target_feature(enable = "neon,dotprod")]
        pub(crate) unsafe fn $name(w: &[u8], rb: usize, k: usize, act: &GemvAct<'_>, out: &mut [f32]) {
            gemv_decoded(GgmlType::$ty, w, rb, k, act, out)
        }
    )*};
}

decoded! {
    vec_dot_q4_1_q8_1 => Q4_1,
    vec_dot_q5_0_q8_0 => Q5_0,
    vec_dot_q5_1_q8_1 => Q5_1,
    vec_dot_q4_k_q8_k => Q4_K,
    vec_dot_q5_k_q8_k => Q5_K,
    vec_dot_q6_k_q8_k => Q6_K,
}

/// Four f16 (as bits) widened to f32, exactly (the NEON half-precision types need Rust 1.94):
/// exponent and mantissa moved to f32 positions and scaled by 2^112 (exact for normal and
/// subnormal halves), infinities and NaNs given the all-ones exponent, then the sign.
#[target_feature(enable = "neon")]
#[inline]
pub(crate) unsafe fn load_f16x4(p: *const u16) -> float32x4_t {
    let h = vmovl_u16(vld1_u16(p));
    let sign = vshlq_n_u32::<16>(vandq_u32(h, vdupq_n_u32(0x8000)));
    let mag = vshlq_n_u32::<13>(vandq_u32(h, vdupq_n_u32(0x7fff)));
    let scaled = vreinterpretq_u32_f32(vmulq_f32(vreinterpretq_f32_u32(mag), vdupq_n_f32(f32::from_bits(0x7780_0000))));
    let special = vceqq_u32(vandq_u32(h, vdupq_n_u32(0x7c00)), vdupq_n_u32(0x7c00));
    let bits = vbslq_u32(special, vorrq_u32(mag, vdupq_n_u32(0x7f80_0000)), scaled);
    vreinterpretq_f32_u32(vorrq_u32(bits, sign))
}

/// Float rows against f32 activations, 16 elements per step, scalar tail.
macro_rules! gemv_float {
    ($w:expr, $rb:expr, $k:expr, $act:expr, $out:expr, $esz:expr, $load:expr, $one:expr) => {{
        let (w, rb, k, out): (&[u8], usize, usize, &mut [f32]) = ($w, $rb, $k, $out);
        let x = $act.x.as_ptr();
        let full = k / 16;
        for (r, o) in out.iter_mut().enumerate() {
            let p = w.as_ptr().add(r * rb);
            let mut acc = [vdupq_n_f32(0.0); 4];
            for i in 0..full {
                for (j, a) in acc.iter_mut().enumerate() {
                    let e = 16 * i + 4 * j;
                    *a = vfmaq_f32(*a, $load(p.add(e * $esz)), vld1q_f32(x.add(e)));
                }
            }
            let mut sum = vaddvq_f32(vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3])));
            for e in 16 * full..k {
                sum += $one(p.add(e * $esz)) * *x.add(e);
            }
            *o = sum;
        }
    }};
}

#[target_feature(enable = "neon,dotprod")]
pub(crate) unsafe fn vec_dot_f32_f32(w: &[u8], rb: usize, k: usize, act: &GemvAct<'_>, out: &mut [f32]) {
    gemv_float!(w, rb, k, act, out, 4, |p: *const u8| vld1q_f32(p.cast()), |p: *const u8| p
        .cast::<f32>()
        .read_unaligned())
}

#[target_feature(enable = "neon,dotprod")]
pub(crate) unsafe fn vec_dot_f16_f32(w: &[u8], rb: usize, k: usize, act: &GemvAct<'_>, out: &mut [f32]) {
    gemv_float!(w, rb, k, act, out, 2, |p: *const u8| load_f16x4(p.cast()), |p: *const u8| rd_f16(p))
}

#[target_feature(enable = "neon,dotprod")]
pub(crate) unsafe fn vec_dot_bf16_f32(w: &[u8], rb: usize, k: usize, act: &GemvAct<'_>, out: &mut [f32]) {
    gemv_float!(
        w,
        rb,
        k,
        act,
        out,
        2,
        |p: *const u8| vreinterpretq_f32_u32(vshll_n_u16::<16>(vld1_u16(p.cast()))),
        |p: *const u8| f32::from_bits(u32::from(p.cast::<u16>().read_unaligned()) << 16)
    )
}
