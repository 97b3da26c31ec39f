//! Q5_K: 256 weights in 8 sub-blocks of 32, each `x = d * sc_j * q - dmin * m_j` with 5-bit
//! codes `q` and 6-bit sub-block scales and mins (5.5 bits per weight).
//!
//! Code order: the low 4 bits follow Q4_K (`qs` chunk `c` holds sub-block `2c` in low nibbles,
//! `2c + 1` in high nibbles); the fifth bit of element `64c + l` is bit `2c` of `qh[l]`, of
//! element `64c + 32 + l` bit `2c + 1`.

use bytemuck::{Pod, Zeroable};
use half::f16;

use super::q4_k::kx_block_dot;
use super::{get_scale_min_k4, quantize_qkx_super_block, BlockQ8_K, K_SCALE_SIZE, Q8_K, QK_K};
use crate::float::fp16_to_fp32;
use crate::{check_dot, check_row, BlockFormat, GgmlType};

/// ggml-common.h `block_q5_K`: 176 bytes, 2-aligned.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ5_K {
    /// Super-block scale of the 6-bit scales.
    pub d: f16,
    /// Super-block scale of the 6-bit mins.
    pub dmin: f16,
    /// Eight 6-bit scales and eight 6-bit mins, packed (see [`super::get_scale_min_k4`]).
    pub scales: [u8; K_SCALE_SIZE],
    /// Fifth bits, as described in the module docs.
    pub qh: [u8; QK_K / 8],
    /// Low 4 bits, ordered as in Q4_K.
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(size_of::<BlockQ5_K>() == 176);

/// ggml's `GGML_TYPE_Q5_K` (activation format Q8_K).
#[allow(non_camel_case_types)]
pub struct Q5_K;

/// The 5-bit code of every element of a block (ggml-quants.c dequantize_row_q5_K's unpacking).
#[inline]
fn codes(b: &BlockQ5_K) -> [u8; QK_K] {
    let mut out = [0u8; QK_K];
    for c in 0..QK_K / 64 {
        let (u1, u2) = (1u8 << (2 * c), 2u8 << (2 * c));
        for l in 0..32 {
            let q = b.qs[32 * c + l];
            out[64 * c + l] = (q & 0x0f) + if b.qh[l] & u1 != 0 { 16 } else { 0 };
            out[64 * c + 32 + l] = (q >> 4) + if b.qh[l] & u2 != 0 { 16 } else { 0 };
        }
    }
    out
}

impl BlockFormat for Q5_K {
    const TYPE: GgmlType = GgmlType::Q5_K;
    const BLOCK_SIZE: usize = QK_K;
    type Block = BlockQ5_K;
    type Dot = Q8_K;

    fn quantize_row(x: &[f32], out: &mut [BlockQ5_K]) {
        // ggml-quants.c quantize_row_q5_K_ref: make_qkx2_quants(32, 31, ..., -0.5f, 0.1f, 15)
        check_row::<Self>(x.len(), out.len());
        for (xb, y) in x.chunks_exact(QK_K).zip(out.iter_mut()) {
            let (d, dmin, scales, l) = quantize_qkx_super_block(xb, 31, -0.5, 0.1, 15);
            y.d = d;
            y.dmin = dmin;
            y.scales = scales;
            y.qh = [0; QK_K / 8];
            let (mut m1, mut m2) = (1u8, 2u8);
            for c in 0..QK_K / 64 {
                for j in 0..32 {
                    let mut l1 = l[64 * c + j];
                    if l1 > 15 {
                        l1 -= 16;
                        y.qh[j] |= m1;
                    }
                    let mut l2 = l[64 * c + j + 32];
                    if l2 > 15 {
                        l2 -= 16;
                        y.qh[j] |= m2;
                    }
                    y.qs[32 * c + j] = l1 | (l2 << 4);
                }
                m1 <<= 2;
                m2 <<= 2;
            }
        }
    }

    fn dequantize_row(blocks: &[BlockQ5_K], out: &mut [f32]) {
        // ggml-quants.c dequantize_row_q5_K (`d1 * q - m1`, not fused)
        check_row::<Self>(out.len(), blocks.len());
        for (b, y) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
            let d = fp16_to_fp32(b.d);
            let min = fp16_to_fp32(b.dmin);
            let q = codes(b);
            for c in 0..QK_K / 64 {
                let (sc1, m1) = get_scale_min_k4(2 * c, &b.scales);
                let (sc2, m2) = get_scale_min_k4(2 * c + 1, &b.scales);
                let (d1, m1) = (d * f32::from(sc1), min * f32::from(m1));
                let (d2, m2) = (d * f32::from(sc2), min * f32::from(m2));
                for l in 0..32 {
                    y[64 * c + l] = d1 * f32::from(q[64 * c + l]) - m1;
                    y[64 * c + 32 + l] = d2 * f32::from(q[64 * c + 32 + l]) - m2;
                }
            }
        }
    }

    fn vec_dot_ref(w: &[BlockQ5_K], x: &[BlockQ8_K]) -> f32 {
        // ggml-cpu/quants.c ggml_vec_dot_q5_K_q8_K_generic (same tail as Q4_K)
        check_dot::<Self>(w.len(), x.len());
        let mut sums = [0.0f32; 8];
        let mut sumf = 0.0f32;
        for (a, b) in w.iter().zip(x) {
            let c = codes(a).map(|v| v as i8);
            sumf -= kx_block_dot(&c, &a.scales, a.d, a.dmin, b, &mut sums);
        }
        for s in sums {
            sumf += s;
        }
        sumf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kquants::test_util::{dequant, kquant_error_bound, quant, tricky_superblocks};
    use proptest::prelude::*;

    #[test]
    fn layout_and_a_known_block() {
        // Sub-block j is a 0..=31 ramp times (j + 1) / 8: min 0, scale (j+1)/8, max_scale 1.
        let x: Vec<f32> = (0..256).map(|i| (i % 32) as f32 * ((i / 32 + 1) as f32 / 8.0)).collect();
        let q = quant::<Q5_K>(&x);
        assert_eq!(q[0].d.to_bits(), crate::fp32_to_fp16(1.0 / 63.0).to_bits());
        assert_eq!(q[0].dmin.to_bits(), 0);
        // Element 17 (code 17) sets bit 0 of qh[17]; element 49 (sub-block 1, code 17) bit 1.
        assert_eq!(q[0].qh[17] & 3, 3);
        assert_eq!(q[0].qh[3] & 3, 0);
        assert_eq!(q[0].qs[17], 0x11);
        let back = codes(&q[0]);
        assert!(back.iter().enumerate().all(|(i, &c)| usize::from(c) == i % 32));
        let y = dequant::<Q5_K>(&q);
        let bound = kquant_error_bound(&x, 31);
        for (a, b) in x.iter().zip(&y) {
            assert!((a - b).abs() <= bound, "{a} {b}");
        }
    }

    #[test]
    fn zero_block_is_all_zero_bytes() {
        let q = quant::<Q5_K>(&[0.0; 256]);
        assert_eq!(bytemuck::bytes_of(&q[0]), &[0u8; 176]);
    }

    #[test]
    fn tricky_blocks_stay_within_bound() {
        for xb in tricky_superblocks() {
            let y = dequant::<Q5_K>(&quant::<Q5_K>(&xb));
            let bound = kquant_error_bound(&xb, 31);
            for (a, b) in xb.iter().zip(&y) {
                assert!((a - b).abs() <= bound, "{a} -> {b} (bound {bound})");
            }
        }
    }

    #[test]
    fn vec_dot_matches_dequantized_dot() {
        let w: Vec<f32> = (0..512).map(|i| ((i * 31 % 89) as f32 - 44.0) / 13.0).collect();
        let x: Vec<f32> = (0..512).map(|i| (i as f32 * 0.23).cos() * 3.0).collect();
        let (wq, xq) = (quant::<Q5_K>(&w), quant::<Q8_K>(&x));
        let exact: f64 =
            dequant::<Q5_K>(&wq).iter().zip(dequant::<Q8_K>(&xq)).map(|(a, b)| f64::from(*a) * f64::from(b)).sum();
        let got = Q5_K::vec_dot_ref(&wq, &xq);
        assert!((f64::from(got) - exact).abs() < 1e-4 * exact.abs().max(1.0), "{got} vs {exact}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// See `kquant_error_bound` (R/31 + R/63 per element).
        #[test]
        fn round_trip_error(x in proptest::collection::vec(-50.0f32..50.0, 256), shift in -30.0f32..30.0) {
            let x: Vec<f32> = x.iter().map(|v| v + shift).collect();
            let y = dequant::<Q5_K>(&quant::<Q5_K>(&x));
            let bound = kquant_error_bound(&x, 31);
            for (a, b) in x.iter().zip(&y) {
                prop_assert!((a - b).abs() <= bound, "{} -> {} (bound {})", a, b, bound);
            }
        }
    }
}
