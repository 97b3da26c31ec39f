//! Q6_K: 256 weights in 16 sub-blocks of 16, each `x = d * sc_j * (q - 32)` with 6-bit codes
//! `q` and signed 8-bit sub-block scales `sc_j` (6.5625 bits per weight).
//!
//! Code order: the block is two halves of 128; in half `h`, for `l` in 0..32, `ql[64h + l]`
//! holds the low 4 bits of elements `128h + l` (low nibble) and `128h + 64 + l` (high nibble),
//! `ql[64h + 32 + l]` those of `128h + 32 + l` and `128h + 96 + l`, and `qh[32h + l]` the high
//! 2 bits of `128h + l`, `+32`, `+64`, `+96` at bit offsets 0, 2, 4, 6.

use bytemuck::{Pod, Zeroable};
use half::f16;

use super::{make_qx_quants_rmse1, nearest_int, BlockQ8_K, GROUP_MAX_EPS, Q8_K, QK_K};
use crate::float::{fp16_to_fp32, fp32_to_fp16};
use crate::{check_dot, check_row, BlockFormat, GgmlType};

/// ggml-common.h `block_q6_K`: 210 bytes, 2-aligned.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ6_K {
    /// Low 4 bits of the codes, ordered as described in the module docs.
    pub ql: [u8; QK_K / 2],
    /// High 2 bits of the codes, ordered as described in the module docs.
    pub qh: [u8; QK_K / 4],
    /// Signed 8-bit scale of each 16-element sub-block.
    pub scales: [i8; QK_K / 16],
    /// Super-block scale.
    pub d: f16,
}
const _: () = assert!(size_of::<BlockQ6_K>() == 210);

/// ggml's `GGML_TYPE_Q6_K` (activation format Q8_K).
#[allow(non_camel_case_types)]
pub struct Q6_K;

/// The signed code `q - 32` of every element (ggml-quants.c dequantize_row_q6_K's unpacking).
#[inline]
fn codes(b: &BlockQ6_K) -> [i8; QK_K] {
    let mut out = [0i8; QK_K];
    for h in 0..QK_K / 128 {
        let (ql, qh) = (&b.ql[64 * h..64 * h + 64], &b.qh[32 * h..32 * h + 32]);
        let y = &mut out[128 * h..128 * h + 128];
        for l in 0..32 {
            y[l] = ((ql[l] & 0x0f) | ((qh[l] & 3) << 4)) as i8 - 32;
            y[l + 32] = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
            y[l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
            y[l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
        }
    }
    out
}

impl BlockFormat for Q6_K {
    const TYPE: GgmlType = GgmlType::Q6_K;
    const BLOCK_SIZE: usize = QK_K;
    type Block = BlockQ6_K;
    type Dot = Q8_K;

    fn quantize_row(x: &[f32], out: &mut [BlockQ6_K]) {
        // ggml-quants.c quantize_row_q6_K_ref
        check_row::<Self>(x.len(), out.len());
        for (xb, y) in x.chunks_exact(QK_K).zip(out.iter_mut()) {
            let mut l = [0i8; QK_K];
            let mut scales = [0.0f32; QK_K / 16];
            let mut max_scale = 0.0f32;
            let mut max_abs_scale = 0.0f32;
            for ib in 0..QK_K / 16 {
                let scale = make_qx_quants_rmse1(32, &xb[16 * ib..16 * ib + 16], &mut l[16 * ib..16 * ib + 16]);
                scales[ib] = scale;
                let abs_scale = scale.abs();
                if abs_scale > max_abs_scale {
                    max_abs_scale = abs_scale;
                    max_scale = scale;
                }
            }

            if max_abs_scale < GROUP_MAX_EPS {
                *y = BlockQ6_K::zeroed();
                y.d = fp32_to_fp16(0.0);
                continue;
            }

            let iscale = -128.0 / max_scale;
            y.d = fp32_to_fp16(1.0 / iscale);
            for ib in 0..QK_K / 16 {
                // `MIN(127, nearest_int(...))` stored in an int8_t.
                y.scales[ib] = nearest_int(iscale * scales[ib]).min(127) as i8;
            }

            // Requantize against the stored scales; sub-blocks whose scale is zero keep the
            // search's codes (ggml's `if (!d) continue;`).
            for j in 0..QK_K / 16 {
                let d = fp16_to_fp32(y.d) * f32::from(y.scales[j]);
                if d == 0.0 {
                    continue;
                }
                for ii in 0..16 {
                    let q = nearest_int(xb[16 * j + ii] / d);
                    l[16 * j + ii] = ((-32).max(31.min(q)) + 32) as i8;
                }
            }

            for h in 0..QK_K / 128 {
                let (j, ql, qh) = (128 * h, &mut y.ql[64 * h..64 * h + 64], &mut y.qh[32 * h..32 * h + 32]);
                for k in 0..32 {
                    let lu = |i: usize| l[j + k + i] as u8;
                    ql[k] = (lu(0) & 0x0f) | ((lu(64) & 0x0f) << 4);
                    ql[k + 32] = (lu(32) & 0x0f) | ((lu(96) & 0x0f) << 4);
                    qh[k] = (lu(0) >> 4) | ((lu(32) >> 4) << 2) | ((lu(64) >> 4) << 4) | ((lu(96) >> 4) << 6);
                }
            }
        }
    }

    fn dequantize_row(blocks: &[BlockQ6_K], out: &mut [f32]) {
        // ggml-quants.c dequantize_row_q6_K: `d * sc[is] * q`, left to right
        check_row::<Self>(out.len(), blocks.len());
        for (b, y) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
            let d = fp16_to_fp32(b.d);
            let q = codes(b);
            for (i, (o, &c)) in y.iter_mut().zip(&q).enumerate() {
                *o = d * f32::from(b.scales[i / 16]) * f32::from(c);
            }
        }
    }

    fn vec_dot_ref(w: &[BlockQ6_K], x: &[BlockQ8_K]) -> f32 {
        // ggml-cpu/quants.c ggml_vec_dot_q6_K_q8_K_generic
        check_dot::<Self>(w.len(), x.len());
        let mut sums = [0.0f32; 8];
        for (a, b) in w.iter().zip(x) {
            let q = codes(a);
            let mut aux32 = [0i32; 8];
            for j in 0..QK_K / 16 {
                let scale = i32::from(a.scales[j]);
                for k in 0..2 {
                    let base = 16 * j + 8 * k;
                    for l in 0..8 {
                        let aux16 = i16::from(b.qs[base + l]) * i16::from(q[base + l]);
                        aux32[l] += scale * i32::from(aux16);
                    }
                }
            }
            let d = fp16_to_fp32(a.d) * b.d;
            for l in 0..8 {
                sums[l] += d * aux32[l] as f32;
            }
        }
        let mut sumf = 0.0f32;
        for s in sums {
            sumf += s;
        }
        sumf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kquants::test_util::{dequant, quant};
    use proptest::prelude::*;

    #[test]
    fn layout_and_a_known_block() {
        // Element i = (i % 64 - 32) * 0.5: every sub-block's largest magnitude is -16 (code -32
        // at scale 0.5) or 15.5; dequantization recovers the grid within a scale step.
        let x: Vec<f32> = (0..256).map(|i| ((i % 64) as f32 - 32.0) * 0.5).collect();
        let q = quant::<Q6_K>(&x);
        let y = dequant::<Q6_K>(&q);
        let d = fp16_to_fp32(q[0].d);
        for (i, (a, b)) in x.iter().zip(&y).enumerate() {
            let step = (d * f32::from(q[0].scales[i / 16])).abs();
            // Half a step, plus 32 codes times half a unit of the int8 scale rounding.
            assert!((a - b).abs() <= step * 0.5 + d.abs() * 16.0, "{i}: {a} {b}");
        }
        // Pack/unpack agree: the codes of the dequantized row are those stored.
        let c = codes(&q[0]);
        for i in 0..256 {
            let step = d * f32::from(q[0].scales[i / 16]);
            assert_eq!((y[i] / step).round() as i8, c[i]);
        }
    }

    #[test]
    fn zero_block_is_all_zero_bytes() {
        let q = quant::<Q6_K>(&[0.0; 256]);
        assert_eq!(bytemuck::bytes_of(&q[0]), &[0u8; 210]);
        let tiny: Vec<f32> = (0..256).map(|i| i as f32 * 1e-20).collect();
        let q = quant::<Q6_K>(&tiny);
        assert_eq!(bytemuck::bytes_of(&q[0]), &[0u8; 210], "scales below GROUP_MAX_EPS zero the block");
    }

    #[test]
    fn vec_dot_matches_dequantized_dot() {
        let w: Vec<f32> = (0..512).map(|i| ((i * 41 % 103) as f32 - 51.0) / 17.0).collect();
        let x: Vec<f32> = (0..512).map(|i| (i as f32 * 0.29).sin() * 0.7).collect();
        let (wq, xq) = (quant::<Q6_K>(&w), quant::<Q8_K>(&x));
        let exact: f64 =
            dequant::<Q6_K>(&wq).iter().zip(dequant::<Q8_K>(&xq)).map(|(a, b)| f64::from(*a) * f64::from(b)).sum();
        let got = Q6_K::vec_dot_ref(&wq, &xq);
        assert!((f64::from(got) - exact).abs() < 1e-4 * exact.abs().max(1.0), "{got} vs {exact}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Q6_K bound, per 16-element sub-block with largest magnitude a_j and block maximum A:
        /// the search's scale s_j has |s_j| <= a_j/31.1 (its trial scales are a_j/(32 +- 0.9));
        /// the int8 scale is rounded against the largest scale (|s| <= A/31.1, 128 steps), so
        /// the effective step moves by at most A/(2*128*31.1). Codes -32..=31: half a step of
        /// rounding, or, on the side opposite to the extreme that was mapped to -32, a clamp
        /// from +32 to 31 (one step), plus 32 times the scale error: a_j/31.1 + A/248.
        #[test]
        fn round_trip_error(x in proptest::collection::vec(-50.0f32..50.0, 256), shift in -30.0f32..30.0) {
            let x: Vec<f32> = x.iter().map(|v| v + shift).collect();
            let y = dequant::<Q6_K>(&quant::<Q6_K>(&x));
            let big_a = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            for (xs, ys) in x.chunks(16).zip(y.chunks(16)) {
                let a_j = xs.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                let bound = a_j / 31.1 + big_a / 248.0 + 2f32.powi(-14);
                for (a, b) in xs.iter().zip(ys) {
                    prop_assert!((a - b).abs() <= bound, "{} -> {} (bound {})", a, b, bound);
                }
            }
        }
    }
}
