//! Q8_0 and Q8_1: 32 values as int8 with one f16 scale, `x = d * q`. Q8_0 is both a weight
//! format and the activation format of Q4_0, Q5_0 and Q8_0; Q8_1 is the activation format of
//! Q4_1 and Q5_1 and also stores `s = d * sum(q)`, so a dot product with a block that has a
//! minimum needs no second pass over the quants.

use bytemuck::{Pod, Zeroable};
use half::f16;

use super::{c_f32_to_i8, QK};
use crate::float::{fp16_to_fp32, fp32_to_fp16};
use crate::{check_dot, check_row, BlockFormat, GgmlType};

/// ggml-common.h `block_q8_0`: 34 bytes, 2-aligned.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ8_0 {
    /// Scale.
    pub d: f16,
    /// Quants, element `i` at `qs[i]`; the quantizer produces -127..=127.
    pub qs: [i8; QK],
}
const _: () = assert!(size_of::<BlockQ8_0>() == 34);

/// ggml-common.h `block_q8_1`: 36 bytes, 2-aligned.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ8_1 {
    /// Scale.
    pub d: f16,
    /// `d * sum(qs)`, rounded to f16.
    pub s: f16,
    /// Quants, element `i` at `qs[i]`.
    pub qs: [i8; QK],
}
const _: () = assert!(size_of::<BlockQ8_1>() == 36);

/// ggml's `GGML_TYPE_Q8_0` (its own activation format).
#[allow(non_camel_case_types)]
pub struct Q8_0;

/// ggml's `GGML_TYPE_Q8_1`, an activation format. ggml has no Q8_1 x Q8_1 kernel; the
/// [`BlockFormat::vec_dot_ref`] here is Quill's plain integer dot product, for completeness.
#[allow(non_camel_case_types)]
pub struct Q8_1;

/// The scale of a Q8 block: `amax / 127` and its inverse, 0 for an all-zero block
/// (ggml-quants.c quantize_row_q8_0_ref).
#[inline]
fn q8_scale(xb: &[f32]) -> (f32, f32) {
    let mut amax = 0.0f32;
    for &v in xb {
        // ggml-impl.h MAX(a, b) is `a > b ? a : b`: a NaN input replaces amax.
        amax = if amax > v.abs() { amax } else { v.abs() };
    }
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    (d, id)
}

impl BlockFormat for Q8_0 {
    const TYPE: GgmlType = GgmlType::Q8_0;
    const BLOCK_SIZE: usize = QK;
    type Block = BlockQ8_0;
    type Dot = Q8_0;

    fn quantize_row(x: &[f32], out: &mut [BlockQ8_0]) {
        // ggml-quants.c quantize_row_q8_0_ref (roundf: halves away from zero)
        check_row::<Self>(x.len(), out.len());
        for (xb, y) in x.chunks_exact(QK).zip(out.iter_mut()) {
            let (d, id) = q8_scale(xb);
            y.d = fp32_to_fp16(d);
            for (q, &v) in y.qs.iter_mut().zip(xb) {
                *q = c_f32_to_i8((v * id).round());
            }
        }
    }

    fn dequantize_row(blocks: &[BlockQ8_0], out: &mut [f32]) {
        // ggml-quants.c dequantize_row_q8_0
        check_row::<Self>(out.len(), blocks.len());
        for (b, y) in blocks.iter().zip(out.chunks_exact_mut(QK)) {
            let d = fp16_to_fp32(b.d);
            for (o, &q) in y.iter_mut().zip(&b.qs) {
                *o = f32::from(q) * d;
            }
        }
    }

    fn vec_dot_ref(w: &[BlockQ8_0], x: &[BlockQ8_0]) -> f32 {
        // ggml-cpu/quants.c ggml_vec_dot_q8_0_q8_0_generic
        check_dot::<Self>(w.len(), x.len());
        let mut sumf = 0.0f32;
        for (a, b) in w.iter().zip(x) {
            let sumi: i32 = a.qs.iter().zip(&b.qs).map(|(&p, &q)| i32::from(p) * i32::from(q)).sum();
            sumf += sumi as f32 * (fp16_to_fp32(a.d) * fp16_to_fp32(b.d));
        }
        sumf
    }
}

impl BlockFormat for Q8_1 {
    const TYPE: GgmlType = GgmlType::Q8_1;
    const BLOCK_SIZE: usize = QK;
    type Block = BlockQ8_1;
    type Dot = Q8_1;

    fn quantize_row(x: &[f32], out: &mut [BlockQ8_1]) {
        // ggml-quants.c quantize_row_q8_1_ref
        check_row::<Self>(x.len(), out.len());
        for (xb, y) in x.chunks_exact(QK).zip(out.iter_mut()) {
            let (d, id) = q8_scale(xb);
            y.d = fp32_to_fp16(d);
            let mut sum = 0i32;
            for j in 0..QK / 2 {
                let q0 = c_f32_to_i8((xb[j] * id).round());
                let q1 = c_f32_to_i8((xb[QK / 2 + j] * id).round());
                y.qs[j] = q0;
                y.qs[QK / 2 + j] = q1;
                sum += i32::from(q0) + i32::from(q1);
            }
            y.s = fp32_to_fp16(sum as f32 * d);
        }
    }

    fn dequantize_row(blocks: &[BlockQ8_1], out: &mut [f32]) {
        // ggml has no dequantize_row_q8_1; same rule as Q8_0 (`s` is redundant).
        check_row::<Self>(out.len(), blocks.len());
        for (b, y) in blocks.iter().zip(out.chunks_exact_mut(QK)) {
            let d = fp16_to_fp32(b.d);
            for (o, &q) in y.iter_mut().zip(&b.qs) {
                *o = f32::from(q) * d;
            }
        }
    }

    fn vec_dot_ref(w: &[BlockQ8_1], x: &[BlockQ8_1]) -> f32 {
        // Not a ggml kernel: the Q8_0 rule applied to Q8_1 blocks.
        check_dot::<Self>(w.len(), x.len());
        let mut sumf = 0.0f32;
        for (a, b) in w.iter().zip(x) {
            let sumi: i32 = a.qs.iter().zip(&b.qs).map(|(&p, &q)| i32::from(p) * i32::from(q)).sum();
            sumf += sumi as f32 * (fp16_to_fp32(a.d) * fp16_to_fp32(b.d));
        }
        sumf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::legacy::test_util::tricky_rows;
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
    fn q8_0_known_block_rounds_halves_away_from_zero() {
        // amax 127 -> d = 1: 2.5 -> 3, -2.5 -> -3 (roundf), 0.49 -> 0.
        let mut x = [0.0f32; 32];
        x[0] = 127.0;
        x[1] = 2.5;
        x[2] = -2.5;
        x[3] = 0.49;
        x[4] = -127.0;
        let q = quant::<Q8_0>(&x);
        assert_eq!(q[0].d.to_f32(), 1.0);
        assert_eq!(&q[0].qs[..5], &[127, 3, -3, 0, -127]);
    }

    #[test]
    fn q8_1_stores_the_scaled_sum() {
        let x: Vec<f32> = (0..32).map(|i| i as f32 - 10.0).collect();
        let q = quant::<Q8_1>(&x);
        let d = q[0].d.to_f32();
        let sum: i32 = q[0].qs.iter().map(|&v| i32::from(v)).sum();
        assert_eq!(q[0].s.to_bits(), fp32_to_fp16(sum as f32 * (21.0f32 / 127.0)).to_bits());
        let y = dequant::<Q8_1>(&q);
        assert!(y.iter().zip(&x).all(|(a, b)| (a - b).abs() <= d * 0.51));
        let q0 = quant::<Q8_0>(&x);
        assert_eq!(&q0[0].qs, &q[0].qs);
    }

    #[test]
    fn tricky_rows_do_not_panic() {
        for row in tricky_rows(64) {
            let q = quant::<Q8_0>(&row);
            assert!(q.iter().all(|b| b.qs.iter().all(|&v| v != i8::MIN)));
            let _ = dequant::<Q8_1>(&quant::<Q8_1>(&row));
        }
    }

    #[test]
    fn vec_dot_is_the_scaled_integer_dot() {
        let w: Vec<f32> = (0..96).map(|i| (i as f32 * 0.41).sin() * 5.0).collect();
        let x: Vec<f32> = (0..96).map(|i| (i as f32 * 0.13).cos()).collect();
        let (a, b) = (quant::<Q8_0>(&w), quant::<Q8_0>(&x));
        let exact: f64 =
            dequant::<Q8_0>(&a).iter().zip(dequant::<Q8_0>(&b)).map(|(p, q)| f64::from(*p) * f64::from(q)).sum();
        let got = Q8_0::vec_dot_ref(&a, &b);
        assert!((f64::from(got) - exact).abs() < 1e-5 * exact.abs().max(1.0), "{got} vs {exact}");
        let (a, b) = (quant::<Q8_1>(&w), quant::<Q8_1>(&x));
        let got1 = Q8_1::vec_dot_ref(&a, &b);
        assert_eq!(got1, got, "Q8_1 quants and scales equal Q8_0's");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Q8_0 / Q8_1: d = amax/127 and every x/d lies in [-127, 127], so rounding costs at
        /// most d/2; storing d as f16 adds 127*d*2^-11 (~0.062 d); 2^-18 covers f16 subnormal d.
        #[test]
        fn q8_round_trip_error(x in proptest::collection::vec(-1000.0f32..1000.0, 64)) {
            let y0 = dequant::<Q8_0>(&quant::<Q8_0>(&x));
            let y1 = dequant::<Q8_1>(&quant::<Q8_1>(&x));
            for (i, xb) in x.chunks(32).enumerate() {
                let d = xb.iter().fold(0.0f32, |m, v| m.max(v.abs())) / 127.0;
                let bound = d * (0.5 + 127.0 * 2f32.powi(-11)) * 1.0001 + 2f32.powi(-18);
                for (j, a) in xb.iter().enumerate() {
                    prop_assert!((a - y0[32 * i + j]).abs() <= bound, "{} -> {} (bound {})", a, y0[32 * i + j], bound);
                    prop_assert_eq!(y0[32 * i + j].to_bits(), y1[32 * i + j].to_bits());
                }
            }
        }
    }
}
