//! Q4_0 and Q4_1: 32 weights in 4 bits each, with one f16 scale (Q4_0: `x = d * (q - 8)`) or a
//! scale and a minimum (Q4_1: `x = d * q + m`).
//!
//! Nibble order (both): byte `j` of `qs` holds element `j` in its low nibble and element
//! `j + 16` in its high nibble.

use bytemuck::{Pod, Zeroable};
use half::f16;

use super::{c_f32_to_i8, QK};
use crate::float::{fp16_to_fp32, fp32_to_fp16};
use crate::legacy::{Q8_0, Q8_1};
use crate::{check_dot, check_row, BlockFormat, GgmlType};

/// ggml-common.h `block_q4_0`: 18 bytes, 2-aligned.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ4_0 {
    /// Scale.
    pub d: f16,
    /// Quants `q` in 0..16 (value `d * (q - 8)`), two per byte as described in the module docs.
    pub qs: [u8; QK / 2],
}
const _: () = assert!(size_of::<BlockQ4_0>() == 18);

/// ggml-common.h `block_q4_1`: 20 bytes, 2-aligned.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ4_1 {
    /// Scale.
    pub d: f16,
    /// Minimum (the value of quant 0).
    pub m: f16,
    /// Quants `q` in 0..16 (value `d * q + m`), two per byte as described in the module docs.
    pub qs: [u8; QK / 2],
}
const _: () = assert!(size_of::<BlockQ4_1>() == 20);

/// ggml's `GGML_TYPE_Q4_0` (activation format Q8_0).
#[allow(non_camel_case_types)]
pub struct Q4_0;

/// ggml's `GGML_TYPE_Q4_1` (activation format Q8_1).
#[allow(non_camel_case_types)]
pub struct Q4_1;

impl BlockFormat for Q4_0 {
    const TYPE: GgmlType = GgmlType::Q4_0;
    const BLOCK_SIZE: usize = QK;
    type Block = BlockQ4_0;
    type Dot = Q8_0;

    fn quantize_row(x: &[f32], out: &mut [BlockQ4_0]) {
        // ggml-quants.c quantize_row_q4_0_ref
        check_row::<Self>(x.len(), out.len());
        for (xb, y) in x.chunks_exact(QK).zip(out.iter_mut()) {
            // The value of largest magnitude (the first one on ties) maps to -8.
            let mut amax = 0.0f32;
            let mut max = 0.0f32;
            for &v in xb {
                if amax < v.abs() {
                    amax = v.abs();
                    max = v;
                }
            }
            let d = max / -8.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            y.d = fp32_to_fp16(d);
            for j in 0..QK / 2 {
                let x0 = xb[j] * id;
                let x1 = xb[QK / 2 + j] * id;
                // `MIN(15, (int8_t)(x + 8.5f))` stored in a uint8_t: truncation, not rounding.
                let xi0 = i32::from(c_f32_to_i8(x0 + 8.5)).min(15) as u8;
                let xi1 = i32::from(c_f32_to_i8(x1 + 8.5)).min(15) as u8;
                y.qs[j] = xi0 | (xi1 << 4);
            }
        }
    }

    fn dequantize_row(blocks: &[BlockQ4_0], out: &mut [f32]) {
        // ggml-quants.c dequantize_row_q4_0
        check_row::<Self>(out.len(), blocks.len());
        for (b, y) in blocks.iter().zip(out.chunks_exact_mut(QK)) {
            let d = fp16_to_fp32(b.d);
            for j in 0..QK / 2 {
                let x0 = i32::from(b.qs[j] & 0x0f) - 8;
                let x1 = i32::from(b.qs[j] >> 4) - 8;
                y[j] = x0 as f32 * d;
                y[j + QK / 2] = x1 as f32 * d;
            }
        }
    }

    fn vec_dot_ref(w: &[BlockQ4_0], x: &[crate::BlockQ8_0]) -> f32 {
        // ggml-cpu/quants.c ggml_vec_dot_q4_0_q8_0_generic
        check_dot::<Self>(w.len(), x.len());
        let mut sumf = 0.0f32;
        for (a, b) in w.iter().zip(x) {
            let mut sumi0 = 0i32;
            let mut sumi1 = 0i32;
            for j in 0..QK / 2 {
                let v0 = i32::from(a.qs[j] & 0x0f) - 8;
                let v1 = i32::from(a.qs[j] >> 4) - 8;
                sumi0 += v0 * i32::from(b.qs[j]);
                sumi1 += v1 * i32::from(b.qs[j + QK / 2]);
            }
            let sumi = sumi0 + sumi1;
            sumf += sumi as f32 * fp16_to_fp32(a.d) * fp16_to_fp32(b.d);
        }
        sumf
    }
}

impl BlockFormat for Q4_1 {
    const TYPE: GgmlType = GgmlType::Q4_1;
    const BLOCK_SIZE: usize = QK;
    type Block = BlockQ4_1;
    type Dot = Q8_1;

    fn quantize_row(x: &[f32], out: &mut [BlockQ4_1]) {
        // ggml-quants.c quantize_row_q4_1_ref
        check_row::<Self>(x.len(), out.len());
        for (xb, y) in x.chunks_exact(QK).zip(out.iter_mut()) {
            let mut min = f32::MAX;
            let mut max = -f32::MAX;
            for &v in xb {
                if v < min {
                    min = v;
                }
                if v > max {
                    max = v;
                }
            }
            let d = (max - min) / 15.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            y.d = fp32_to_fp16(d);
            y.m = fp32_to_fp16(min);
            for j in 0..QK / 2 {
                let x0 = (xb[j] - min) * id;
                let x1 = (xb[QK / 2 + j] - min) * id;
                let xi0 = i32::from(c_f32_to_i8(x0 + 0.5)).min(15) as u8;
                let xi1 = i32::from(c_f32_to_i8(x1 + 0.5)).min(15) as u8;
                y.qs[j] = xi0 | (xi1 << 4);
            }
        }
    }

    fn dequantize_row(blocks: &[BlockQ4_1], out: &mut [f32]) {
        // ggml-quants.c dequantize_row_q4_1 (`x*d + m`, two roundings: ggml-base is built
        // without FMA contraction)
        check_row::<Self>(out.len(), blocks.len());
        for (b, y) in blocks.iter().zip(out.chunks_exact_mut(QK)) {
            let d = fp16_to_fp32(b.d);
            let m = fp16_to_fp32(b.m);
            for j in 0..QK / 2 {
                let x0 = i32::from(b.qs[j] & 0x0f);
                let x1 = i32::from(b.qs[j] >> 4);
                y[j] = x0 as f32 * d + m;
                y[j + QK / 2] = x1 as f32 * d + m;
            }
        }
    }

    fn vec_dot_ref(w: &[BlockQ4_1], x: &[crate::BlockQ8_1]) -> f32 {
        // ggml-cpu/quants.c ggml_vec_dot_q4_1_q8_1_generic: the Q8_1 block's `s` (= d * sum(q))
        // carries the minimum's contribution.
        check_dot::<Self>(w.len(), x.len());
        let mut sumf = 0.0f32;
        for (a, b) in w.iter().zip(x) {
            let mut sumi0 = 0i32;
            let mut sumi1 = 0i32;
            for j in 0..QK / 2 {
                let v0 = i32::from(a.qs[j] & 0x0f);
                let v1 = i32::from(a.qs[j] >> 4);
                sumi0 += v0 * i32::from(b.qs[j]);
                sumi1 += v1 * i32::from(b.qs[j + QK / 2]);
            }
            let sumi = sumi0 + sumi1;
            sumf += (fp16_to_fp32(a.d) * fp16_to_fp32(b.d)) * sumi as f32 + fp16_to_fp32(a.m) * fp16_to_fp32(b.s);
        }
        sumf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::legacy::test_util::tricky_rows;
    use crate::legacy::BlockQ8_1;
    use proptest::prelude::*;

    fn quant<F: BlockFormat>(x: &[f32]) -> Vec<F::Block> {
        let mut q = vec![F::Block::zeroed(); x.len() / F::BLOCK_SIZE];
        F::quantize_row(x, &mut q);
        q
    }

    fn dequant<F: BlockFormat>(q: &[F::Block]) -> Vec<f32> {
        let mut y = vec![0.0; q.len() * F::BLOCK_SIZE];
        F::dequantize_row(q, &mut y);
        y
    }

    #[test]
    fn q4_0_known_block() {
        // max magnitude -8 -> d = 1, codes q = x + 8 (x = 7.6 rounds via +8.5 truncation to 15).
        let mut x = [0.0f32; 32];
        x[0] = -8.0;
        x[1] = 7.6;
        x[16] = 3.4;
        x[17] = -0.6;
        let q = quant::<Q4_0>(&x);
        assert_eq!(q[0].d.to_bits(), 0x3c00);
        assert_eq!(q[0].qs[0], 11 << 4);
        assert_eq!(q[0].qs[1], 15 | (7 << 4));
        assert_eq!(q[0].qs[2], 8 | (8 << 4));
        let y = dequant::<Q4_0>(&q);
        assert_eq!(&y[..2], &[-8.0, 7.0]);
        assert_eq!(&y[16..18], &[3.0, -1.0]);
    }

    #[test]
    fn q4_1_known_block() {
        let x: Vec<f32> = (0..32).map(|i| (i % 16) as f32 * 0.5 - 1.0).collect();
        let q = quant::<Q4_1>(&x);
        assert_eq!(q[0].d.to_f32(), 0.5);
        assert_eq!(q[0].m.to_f32(), -1.0);
        assert_eq!(dequant::<Q4_1>(&q), x);
        assert_eq!(q[0].qs[3], 3 | (3 << 4));
    }

    #[test]
    fn zero_blocks_stay_zero() {
        // d = 0 / -8 is -0.0 in ggml too (f16 0x8000); every code is 8.
        let q = quant::<Q4_0>(&[0.0; 64]);
        assert!(q.iter().all(|b| b.d.to_bits() == 0x8000 && b.qs == [0x88; 16]));
        assert_eq!(dequant::<Q4_0>(&q), vec![0.0; 64]);
        let q = quant::<Q4_1>(&[0.0; 32]);
        assert_eq!(bytemuck::bytes_of(&q[0]), &[0u8; 20]);
    }

    #[test]
    fn tricky_rows_do_not_panic_and_stay_in_range() {
        for row in tricky_rows(64) {
            for y in dequant::<Q4_0>(&quant::<Q4_0>(&row)) {
                assert!(!y.is_nan() || row.iter().any(|v| v.abs() > 1e20));
            }
            let _ = dequant::<Q4_1>(&quant::<Q4_1>(&row));
        }
    }

    /// The dot product equals the exact dot product of the two dequantized rows, up to float
    /// rounding of the per-block sums.
    #[test]
    fn vec_dot_matches_dequantized_dot() {
        let w: Vec<f32> = (0..256).map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0).collect();
        let x: Vec<f32> = (0..256).map(|i| (i as f32 * 0.3).cos()).collect();
        let (w0, x0) = (quant::<Q4_0>(&w), quant::<Q8_0>(&x));
        let exact: f64 =
            dequant::<Q4_0>(&w0).iter().zip(dequant::<Q8_0>(&x0)).map(|(a, b)| f64::from(*a) * f64::from(b)).sum();
        let got = Q4_0::vec_dot_ref(&w0, &x0);
        assert!((f64::from(got) - exact).abs() < 1e-4 * exact.abs().max(1.0), "{got} vs {exact}");

        let (w1, x1): (Vec<BlockQ4_1>, Vec<BlockQ8_1>) = (quant::<Q4_1>(&w), quant::<Q8_1>(&x));
        // The minimum's term uses Q8_1's stored `s` (d * sum(q) rounded to f16), so the exact
        // value is computed from the block fields.
        let mut exact = 0.0f64;
        for (a, b) in w1.iter().zip(&x1) {
            let sumi: i32 = (0..32)
                .map(|j| i32::from(if j < 16 { a.qs[j] & 15 } else { a.qs[j - 16] >> 4 }) * i32::from(b.qs[j]))
                .sum();
            exact += f64::from(a.d.to_f32()) * f64::from(b.d.to_f32()) * f64::from(sumi)
                + f64::from(a.m.to_f32()) * f64::from(b.s.to_f32());
        }
        let got = Q4_1::vec_dot_ref(&w1, &x1);
        assert!((f64::from(got) - exact).abs() < 1e-4 * exact.abs().max(1.0), "{got} vs {exact}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Q4_0: d = max/-8, codes -8..=7. Rounding costs at most |d|/2, but the side opposite
        /// to `max` reaches +8*|d| and is clamped to 7: at most one step |d|. Storing d as f16
        /// adds at most 8 * |d| * 2^-11 (8 = largest code magnitude); 2^-20 covers f16
        /// subnormal d.
        #[test]
        fn q4_0_round_trip_error(x in proptest::collection::vec(-100.0f32..100.0, 64)) {
            let y = dequant::<Q4_0>(&quant::<Q4_0>(&x));
            for (xb, yb) in x.chunks(32).zip(y.chunks(32)) {
                let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                let d = amax / 8.0;
                let bound = d * (1.0 + 8.0 * 2f32.powi(-11)) + 2f32.powi(-20);
                for (a, b) in xb.iter().zip(yb) {
                    prop_assert!((a - b).abs() <= bound, "{} -> {} (bound {})", a, b, bound);
                }
            }
        }

        /// Q4_1: d = (max-min)/15, codes 0..=15 cover [min, max] exactly, so rounding costs at
        /// most d/2; f16 storage of d adds 15*d*2^-11 and of m adds |m|*2^-11.
        #[test]
        fn q4_1_round_trip_error(x in proptest::collection::vec(-100.0f32..100.0, 64)) {
            let y = dequant::<Q4_1>(&quant::<Q4_1>(&x));
            for (xb, yb) in x.chunks(32).zip(y.chunks(32)) {
                let min = xb.iter().fold(f32::MAX, |m, &v| m.min(v));
                let max = xb.iter().fold(-f32::MAX, |m, &v| m.max(v));
                let d = (max - min) / 15.0;
                let bound = d * (0.5 + 15.0 * 2f32.powi(-11)) + min.abs() * 2f32.powi(-11) + 2f32.powi(-20);
                for (a, b) in xb.iter().zip(yb) {
                    prop_assert!((a - b).abs() <= bound * 1.0001, "{} -> {} (bound {})", a, b, bound);
                }
            }
        }
    }
}
