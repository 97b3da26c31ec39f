//! Portable decoders of one weight row into unsigned codes in natural element order plus one
//! scale (and minimum) per scale block, so that `w[i] = dw[i / sblock] * (code[i] - offset) +
//! mw[i / sblock]` with the offsets of [`crate::formats::QuantSpec`]. The GEMM panel builders
//! call them inside `#[target_feature]` wrappers, where the compiler vectorises the byte loops;
//! their cost is shared by every token of a prefill.
//!
//! Block layouts follow ggml-common.h (the `block_*` structs); bit orders are those of
//! ggml-quants.c `dequantize_row_*`.

use gguf_file::GgmlType;
use half::f16;
use quill_quant::fp16_to_fp32;

#[inline(always)]
fn f16_at(b: &[u8], i: usize) -> f32 {
    fp16_to_fp32(f16::from_bits(u16::from_le_bytes([b[i], b[i + 1]])))
}

/// The 6-bit scale and min of sub-block `j` of a Q4_K / Q5_K block (ggml-quants.c
/// `get_scale_min_k4`).
#[inline(always)]
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// The 8 six-bit scales and 8 six-bit minimums of a Q4_K / Q5_K block, from its 12 packed
/// `scales` bytes at `s`, as 8 bytes each in a u64 (ggml-cpu's `utmp` unpacking in
/// `ggml_vec_dot_q4_K_q8_K`; the same values as [`scale_min_k4`]).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[inline(always)]
pub(crate) unsafe fn k4_scale_min_words(s: *const u8) -> (u64, u64) {
    // SAFETY: within this function's contract: the CPU has the target features it (or its
    // caller) names, and the caller's pointers and lengths are valid for what it touches.
    unsafe {
        const KMASK1: u32 = 0x3f3f_3f3f;
        const KMASK2: u32 = 0x0f0f_0f0f;
        const KMASK3: u32 = 0x0303_0303;
        let u0 = s.cast::<u32>().read_unaligned();
        let u1 = s.add(4).cast::<u32>().read_unaligned();
        let u2 = s.add(8).cast::<u32>().read_unaligned();
        let sc = u64::from(u0 & KMASK1) | u64::from((u2 & KMASK2) | (((u0 >> 6) & KMASK3) << 4)) << 32;
        let m = u64::from(u1 & KMASK1) | u64::from(((u2 >> 4) & KMASK2) | (((u1 >> 6) & KMASK3) << 4)) << 32;
        (sc, m)
    }
}

/// Decodes row `w` (`k` elements of `ty`) into `codes` (`k`), `dw` and `mw` (`k / sblock`;
/// `mw` is left alone for formats without a minimum).
#[inline(always)]
pub(crate) fn decode_row(ty: GgmlType, w: &[u8], k: usize, codes: &mut [u8], dw: &mut [f32], mw: &mut [f32]) {
    match ty {
        GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q5_1 => {
            // (block bytes, offset of the codes, of the fifth bits, minimum?)
            let (bytes, qs_at, qh_at, min) = match ty {
                GgmlType::Q4_0 => (18, 2, 0, false),
                GgmlType::Q4_1 => (20, 4, 0, true),
                GgmlType::Q5_0 => (22, 6, 2, false),
                _ => (24, 8, 4, true),
            };
            let five = qh_at != 0;
            for (i, (b, c)) in w.chunks_exact(bytes).zip(codes[..k].chunks_exact_mut(32)).enumerate() {
                dw[i] = f16_at(b, 0);
                if min {
                    mw[i] = f16_at(b, 2);
                }
                let qs: &[u8; 16] = b[qs_at..qs_at + 16].try_into().expect("16 code bytes");
                let c: &mut [u8; 32] = c.try_into().expect("32 codes");
                for j in 0..16 {
                    c[j] = qs[j] & 15;
                    c[j + 16] = qs[j] >> 4;
                }
                if five {
                    let qh = u32::from_le_bytes([b[qh_at], b[qh_at + 1], b[qh_at + 2], b[qh_at + 3]]);
                    for (j, v) in c.iter_mut().enumerate() {
                        *v |= (((qh >> j) & 1) as u8) << 4;
                    }
                }
            }
        }
        GgmlType::Q8_0 => {
            for ((b, c), d) in w.chunks_exact(34).zip(codes[..k].chunks_exact_mut(32)).zip(dw.iter_mut()) {
                *d = f16_at(b, 0);
                let qs: &[u8; 32] = b[2..34].try_into().expect("32 code bytes");
                let c: &mut [u8; 32] = c.try_into().expect("32 codes");
                for j in 0..32 {
                    c[j] = qs[j] ^ 0x80;
                }
            }
        }
        GgmlType::Q4_K | GgmlType::Q5_K => {
            let (bytes, five) = if ty == GgmlType::Q4_K { (144, false) } else { (176, true) };
            for (i, b) in w.chunks_exact(bytes).enumerate() {
                let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
                let scales = &b[4..16];
                let (qh, qs) = if five { (&b[16..48], &b[48..176]) } else { (&b[0..0], &b[16..144]) };
                let c = &mut codes[256 * i..256 * i + 256];
                for j in 0..8 {
                    let (sc, m) = scale_min_k4(j, scales);
                    dw[8 * i + j] = d * f32::from(sc);
                    mw[8 * i + j] = -(dmin * f32::from(m));
                }
                for h in 0..4 {
                    let q = &qs[32 * h..32 * h + 32];
                    for l in 0..32 {
                        c[64 * h + l] = q[l] & 15;
                        c[64 * h + 32 + l] = q[l] >> 4;
                    }
                    if five {
                        for l in 0..32 {
                            c[64 * h + l] |= ((qh[l] >> (2 * h)) & 1) << 4;
                            c[64 * h + 32 + l] |= ((qh[l] >> (2 * h + 1)) & 1) << 4;
                        }
                    }
                }
            }
        }
        GgmlType::Q6_K => {
            for (i, b) in w.chunks_exact(210).enumerate() {
                let d = f16_at(b, 208);
                for j in 0..16 {
                    dw[16 * i + j] = d * f32::from(b[192 + j] as i8);
                }
                let c = &mut codes[256 * i..256 * i + 256];
                for h in 0..2 {
                    let (ql, qh) = (&b[64 * h..64 * h + 64], &b[128 + 32 * h..128 + 32 * h + 32]);
                    let y = &mut c[128 * h..128 * h + 128];
                    for l in 0..32 {
                        y[l] = (ql[l] & 15) | ((qh[l] & 3) << 4);
                        y[l + 32] = (ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4);
                        y[l + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
                        y[l + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
                    }
                }
            }
        }
        other => unreachable!("{other} has no integer decoder"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::{quant_spec, SIMD_QUANT_TYPES};

    /// Codes, scales and minimums rebuild exactly the values of quill_quant's dequantizer (up to
    /// the float rounding of `d * sc` products).
    #[test]
    fn decoded_rows_dequantize_like_quant() {
        let k = 512;
        let x: Vec<f32> = (0..k).map(|i| ((i * 37) % 101) as f32 / 7.0 - 6.0 + (i as f32 * 0.1).sin()).collect();
        for &ty in SIMD_QUANT_TYPES.iter().filter(|&&t| t != GgmlType::Q4_0_8_8) {
            let spec = quant_spec(ty).unwrap();
            let mut w = vec![0u8; quill_quant::row_bytes(ty, k).unwrap()];
            quill_quant::quantize(ty, &x, k, &mut w).unwrap();
            let mut want = vec![0f32; k];
            quill_quant::dequantize(ty, &w, &mut want).unwrap();
            let mut codes = vec![0u8; k];
            let (mut dw, mut mw) = (vec![0f32; k / spec.sblock], vec![0f32; k / spec.sblock]);
            decode_row(ty, &w, k, &mut codes, &mut dw, &mut mw);
            for i in 0..k {
                let s = i / spec.sblock;
                let got = dw[s] * (i32::from(codes[i]) - spec.offset) as f32 + mw[s];
                assert!((got - want[i]).abs() <= 1e-5 * (1.0 + want[i].abs()), "{ty} {i}: {got} vs {}", want[i]);
            }
        }
    }

    /// Whatever the bytes (a hostile file's too), codes stay within the format's `max_code`:
    /// the AVX2 GEMM sums byte products in i16 on that promise.
    #[test]
    fn codes_never_exceed_max_code() {
        let k = 512;
        let mut state = 0x1234_5678_9abc_def0u64;
        for &ty in SIMD_QUANT_TYPES.iter().filter(|&&t| t != GgmlType::Q4_0_8_8) {
            let spec = quant_spec(ty).unwrap();
            let n = quill_quant::row_bytes(ty, k).unwrap();
            for _ in 0..50 {
                let w: Vec<u8> = (0..n)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        (state >> 24) as u8
                    })
                    .collect();
                let mut codes = vec![0u8; k];
                let (mut dw, mut mw) = (vec![0f32; k / spec.sblock], vec![0f32; k / spec.sblock]);
                decode_row(ty, &w, k, &mut codes, &mut dw, &mut mw);
                assert!(codes.iter().all(|&c| c <= spec.max_code), "{ty}: a code above {}", spec.max_code);
            }
        }
    }
}
