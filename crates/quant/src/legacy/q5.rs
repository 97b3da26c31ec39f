//! Q5_0 and Q5_1: 32 weights in 5 bits each, with one f16 scale (Q5_0: `x = d * (q - 16)`) or a
//! scale and a minimum (Q5_1: `x = d * q + m`).
//!
//! Bit layout (both): byte `j` of `qs` holds the low 4 bits of element `j` (low nibble) and of
//! element `j + 16` (high nibble); `qh`, read as a little-endian u32, holds the fifth bit of
//! element `i` at bit `i`.

use bytemuck::{Pod, Zeroable};
use half::f16;

use super::{c_f32_to_i32, c_f32_to_i8, QK};
use crate::float::{fp16_to_fp32, fp32_to_fp16};
use crate::legacy::{BlockQ8_0, BlockQ8_1, Q8_0, Q8_1};
use crate::{check_dot, check_row, BlockFormat, GgmlType};

/// ggml-common.h `block_q5_0`: 22 bytes, 2-aligned.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ5_0 {
    /// Scale.
    pub d: f16,
    /// Fifth bits, a little-endian u32 (bit `i` belongs to element `i`).
    pub qh: [u8; 4],
    /// Low 4 bits, two elements per byte (see the module docs).
    pub qs: [u8; QK / 2],
}
const _: () = assert!(size_of::<BlockQ5_0>() == 22);

/// ggml-common.h `block_q5_1`: 24 bytes, 2-aligned.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ5_1 {
    /// Scale.
    pub d: f16,
    /// Minimum (the value of quant 0).
    pub m: f16,
    /// Fifth bits, a little-endian u32 (bit `i` belongs to element `i`).
    pub qh: [u8; 4],
    /// Low 4 bits, two elements per byte (see the module docs).
    pub qs: [u8; QK / 2],
}
const _: () = assert!(size_of::<BlockQ5_1>() == 24);

/// ggml's `GGML_TYPE_Q5_0` (activation format Q8_0).
#[allow(non_camel_case_types)]
pub struct Q5_0;

/// ggml's `GGML_TYPE_Q5_1` (activation format Q8_1).
#[allow(non_camel_case_types)]
pub struct Q5_1;

/// Packs 32 five-bit codes: low nibbles into `qs`, fifth bits into the u32 `qh`
/// (ggml-quants.c quantize_row_q5_0_ref / quantize_row_q5_1_ref).
#[inline]
fn pack5(codes: &[u8; QK], qs: &mut [u8; QK / 2], qh: &mut [u8; 4]) {
    let mut h = 0u32;
    for j in 0..QK / 2 {
        let (xi0, xi1) = (codes[j], codes[j + QK / 2]);
        qs[j] = (xi0 & 0x0f) | ((xi1 & 0x0f) << 4);
        h |= u32::from((xi0 & 0x10) >> 4) << j;
        h |= u32::from((xi1 & 0x10) >> 4) << (j + QK / 2);
    }
    *qh = h.to_le_bytes();
}

/// The 5-bit code of element `j` and of element `j + 16` (ggml-quants.c dequantize_row_q5_0).
#[inline]
fn unpack5(qs: &[u8; QK / 2], qh: u32, j: usize) -> (i32, i32) {
    let xh_0 = ((qh >> j) << 4) & 0x10;
    let xh_1 = (qh >> (j + 12)) & 0x10;
    let x0 = u32::from(qs[j] & 0x0f) | xh_0;
    let x1 = u32::from(qs[j] >> 4) | xh_1;
    (x0 as i32, x1 as i32)
}

impl BlockFormat for Q5_0 {
    const TYPE: GgmlType = GgmlType::Q5_0;
    const BLOCK_SIZE: usize = QK;
    type Block = BlockQ5_0;
    type Dot = Q8_0;

    fn quantize_row(x: &[f32], out: &mut [BlockQ5_0]) {
        // ggml-quants.c quantize_row_q5_0_ref
        check_row::<Self>(x.len(), out.len());
        for (xb, y) in x.chunks_exact(QK).zip(out.iter_mut()) {
            let mut amax = 0.0f32;
            let mut max = 0.0f32;
            for &v in xb {
                if amax < v.abs() {
                    amax = v.abs();
                    max = v;
                }
            }
            let d = max / -16.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            y.d = fp32_to_fp16(d);
            let mut codes = [0u8; QK];
            for (c, &v) in codes.iter_mut().zip(xb) {
                // `MIN(31, (int8_t)(x*id + 16.5f))` stored in a uint8_t.
                *c = i32::from(c_f32_to_i8(v * id + 16.5)).min(31) as u8;
            }
            pack5(&codes, &mut y.qs, &mut y.qh);
        }
    }

    fn dequantize_row(blocks: &[BlockQ5_0], out: &mut [f32]) {
        // ggml-quants.c dequantize_row_q5_0
        check_row::<Self>(out.len(), blocks.len());
        for (b, y) in blocks.iter().zip(out.chunks_exact_mut(QK)) {
            let d = fp16_to_fp32(b.d);
            let qh = u32::from_le_bytes(b.qh);
            for j in 0..QK / 2 {
                let (x0, x1) = unpack5(&b.qs, qh, j);
                y[j] = (x0 - 16) as f32 * d;
                y[j + QK / 2] = (x1 - 16) as f32 * d;
            }
        }
    }

    fn vec_dot_ref(w: &[BlockQ5_0], x: &[BlockQ8_0]) -> f32 {
        // ggml-cpu/quants.c ggml_vec_dot_q5_0_q8_0_generic
        check_dot::<Self>(w.len(), x.len());
        let mut sumf = 0.0f32;
        for (a, b) in w.iter().zip(x) {
            let qh = u32::from_le_bytes(a.qh);
            let mut sumi0 = 0i32;
            let mut sumi1 = 0i32;
            for j in 0..QK / 2 {
                let (x0, x1) = unpack5(&a.qs, qh, j);
                sumi0 += (x0 - 16) * i32::from(b.qs[j]);
                sumi1 += (x1 - 16) * i32::from(b.qs[j + QK / 2]);
            }
            let sumi = sumi0 + sumi1;
            sumf += (fp16_to_fp32(a.d) * fp16_to_fp32(b.d)) * sumi as f32;
        }
        sumf
    }
}

impl BlockFormat for Q5_1 {
    const TYPE: GgmlType = GgmlType::Q5_1;
    const BLOCK_SIZE: usize = QK;
    type Block = BlockQ5_1;
    type Dot = Q8_1;

    fn quantize_row(x: &[f32], out: &mut [BlockQ5_1]) {
        // ggml-quants.c quantize_row_q5_1_ref
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
            let d = (max - min) / 31.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            y.d = fp32_to_fp16(d);
            y.m = fp32_to_fp16(min);
            let mut codes = [0u8; QK];
            for (c, &v) in codes.iter_mut().zip(xb) {
                // `(uint8_t)((x - min)*id + 0.5f)`: no clamp in ggml (the codes cannot pass 31).
                *c = c_f32_to_i32((v - min) * id + 0.5) as u8;
            }
            pack5(&codes, &mut y.qs, &mut y.qh);
        }
    }

    fn dequantize_row(blocks: &[BlockQ5_1], out: &mut [f32]) {
        // ggml-quants.c dequantize_row_q5_1 (`x*d + m`, not fused)
        check_row::<Self>(out.len(), blocks.len());
        for (b, y) in blocks.iter().zip(out.chunks_exact_mut(QK)) {
            let d = fp16_to_fp32(b.d);
            let m = fp16_to_fp32(b.m);
            let qh = u32::from_le_bytes(b.qh);
            for j in 0..QK / 2 {
                let (x0, x1) = unpack5(&b.qs, qh, j);
                y[j] = x0 as f32 * d + m;
                y[j + QK / 2] = x1 as f32 * d + m;
            }
        }
    }

    fn vec_dot_ref(w: &[BlockQ5_1], x: &[BlockQ8_1]) -> f32 {
        // ggml-cpu/quants.c ggml_vec_dot_q5_1_q8_1_generic
        check_dot::<Self>(w.len(), x.len());
        let mut sumf = 0.0f32;
        for (a, b) in w.iter().zip(x) {
            let qh = u32::from_le_bytes(a.qh);
            let mut sumi0 = 0i32;
            let mut sumi1 = 0i32;
            for j in 0..QK / 2 {
                let (x0, x1) = unpack5(&a.qs, qh, j);
                sumi0 += x0 * i32::from(b.qs[j]);
                sumi1 += x1 * i32::from(b.qs[j + QK / 2]);
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
    fn q5_0_known_block_and_bit_layout() {
        // max magnitude -16 -> d = 1; element i gets code i (values i - 16), so the fifth bit is
        // set exactly for elements 16..32.
        let x: Vec<f32> = (0..32).map(|i| i as f32 - 16.0).collect();
        let q = quant::<Q5_0>(&x);
        assert_eq!(q[0].d.to_f32(), 1.0);
        assert_eq!(u32::from_le_bytes(q[0].qh), 0xffff_0000);
        assert_eq!(q[0].qs[0], 0x00);
        assert_eq!(q[0].qs[5], 0x55);
        assert_eq!(dequant::<Q5_0>(&q), x);
    }

    #[test]
    fn q5_1_known_block_and_bit_layout() {
        let x: Vec<f32> = (0..32).map(|i| (31 - i) as f32 * 0.25 + 2.0).collect();
        let q = quant::<Q5_1>(&x);
        assert_eq!(q[0].d.to_f32(), 0.25);
        assert_eq!(q[0].m.to_f32(), 2.0);
        // Code of element i is 31 - i: fifth bit set for i in 0..16.
        assert_eq!(u32::from_le_bytes(q[0].qh), 0x0000_ffff);
        assert_eq!(q[0].qs[0], 0x0f | (0x0f << 4));
        assert_eq!(dequant::<Q5_1>(&q), x);
    }

    #[test]
    fn tricky_rows_do_not_panic() {
        for row in tricky_rows(96) {
            let y0 = dequant::<Q5_0>(&quant::<Q5_0>(&row));
            let y1 = dequant::<Q5_1>(&quant::<Q5_1>(&row));
            if row.iter().all(|v| v.abs() < 1e4) {
                assert!(y0.iter().chain(&y1).all(|v| v.is_finite()));
            }
        }
    }

    #[test]
    fn vec_dot_matches_block_formula() {
        let w: Vec<f32> = (0..128).map(|i| ((i * 53 % 97) as f32 - 48.0) / 9.0).collect();
        let x: Vec<f32> = (0..128).map(|i| (i as f32 * 0.21).sin() * 2.0).collect();
        let (w0, x0) = (quant::<Q5_0>(&w), quant::<Q8_0>(&x));
        let exact: f64 =
            dequant::<Q5_0>(&w0).iter().zip(dequant::<Q8_0>(&x0)).map(|(a, b)| f64::from(*a) * f64::from(b)).sum();
        let got = Q5_0::vec_dot_ref(&w0, &x0);
        assert!((f64::from(got) - exact).abs() < 1e-4 * exact.abs().max(1.0), "{got} vs {exact}");

        let (w1, x1) = (quant::<Q5_1>(&w), quant::<Q8_1>(&x));
        let mut exact = 0.0f64;
        for (a, b) in w1.iter().zip(&x1) {
            let qh = u32::from_le_bytes(a.qh);
            let sumi: i32 = (0..16)
                .map(|j| {
                    let (c0, c1) = unpack5(&a.qs, qh, j);
                    c0 * i32::from(b.qs[j]) + c1 * i32::from(b.qs[j + 16])
                })
                .sum();
            exact += f64::from(a.d.to_f32()) * f64::from(b.d.to_f32()) * f64::from(sumi)
                + f64::from(a.m.to_f32()) * f64::from(b.s.to_f32());
        }
        let got = Q5_1::vec_dot_ref(&w1, &x1);
        assert!((f64::from(got) - exact).abs() < 1e-4 * exact.abs().max(1.0), "{got} vs {exact}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Q5_0: d = max/-16, codes -16..=15: rounding costs |d|/2, the clamped +16 side one
        /// step |d|; f16 storage of d adds 16*|d|*2^-11; 2^-20 covers f16 subnormal d.
        #[test]
        fn q5_0_round_trip_error(x in proptest::collection::vec(-100.0f32..100.0, 64)) {
            let y = dequant::<Q5_0>(&quant::<Q5_0>(&x));
            for (xb, yb) in x.chunks(32).zip(y.chunks(32)) {
                let d = xb.iter().fold(0.0f32, |m, v| m.max(v.abs())) / 16.0;
                let bound = d * (1.0 + 16.0 * 2f32.powi(-11)) + 2f32.powi(-20);
                for (a, b) in xb.iter().zip(yb) {
                    prop_assert!((a - b).abs() <= bound, "{} -> {} (bound {})", a, b, bound);
                }
            }
        }

        /// Q5_1: d = (max-min)/31 and codes 0..=31 span [min, max]: rounding costs d/2; f16
        /// storage adds 31*d*2^-11 (scale) and |min|*2^-11 (minimum).
        #[test]
        fn q5_1_round_trip_error(x in proptest::collection::vec(-100.0f32..100.0, 64)) {
            let y = dequant::<Q5_1>(&quant::<Q5_1>(&x));
            for (xb, yb) in x.chunks(32).zip(y.chunks(32)) {
                let min = xb.iter().fold(f32::MAX, |m, &v| m.min(v));
                let max = xb.iter().fold(-f32::MAX, |m, &v| m.max(v));
                let d = (max - min) / 31.0;
                let bound = d * (0.5 + 31.0 * 2f32.powi(-11)) + min.abs() * 2f32.powi(-11) + 2f32.powi(-20);
                for (a, b) in xb.iter().zip(yb) {
                    prop_assert!((a - b).abs() <= bound * 1.0001, "{} -> {} (bound {})", a, b, bound);
                }
            }
        }
    }
}
