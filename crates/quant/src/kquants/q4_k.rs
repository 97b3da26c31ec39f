//! Q4_K: 256 weights in 8 sub-blocks of 32, each `x = d * sc_j * q - dmin * m_j` with 4-bit
//! codes `q` and 6-bit sub-block scales `sc_j` and mins `m_j` (4.5 bits per weight).
//!
//! Code order: `qs` is 4 chunks of 32 bytes; chunk `c` holds sub-block `2c` in its low nibbles
//! and sub-block `2c + 1` in its high nibbles (element `64c + l` low, `64c + 32 + l` high).

use bytemuck::{Pod, Zeroable};
use half::f16;

use super::{get_scale_min_k4, quantize_qkx_super_block, BlockQ8_K, K_SCALE_SIZE, Q8_K, QK_K};
use crate::float::fp16_to_fp32;
use crate::{check_dot, check_row, BlockFormat, GgmlType};

/// ggml-common.h `block_q4_K`: 144 bytes, 2-aligned.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ4_K {
    /// Super-block scale of the 6-bit scales.
    pub d: f16,
    /// Super-block scale of the 6-bit mins.
    pub dmin: f16,
    /// Eight 6-bit scales and eight 6-bit mins, packed (see [`super::get_scale_min_k4`]).
    pub scales: [u8; K_SCALE_SIZE],
    /// 4-bit codes, ordered as described in the module docs.
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(size_of::<BlockQ4_K>() == 144);

/// ggml's `GGML_TYPE_Q4_K` (activation format Q8_K).
#[allow(non_camel_case_types)]
pub struct Q4_K;

/// Unpacks a Q4_K / Q5_K block's scales and mins the way the dot product reads them
/// (ggml-cpu/quants.c, the `utmp` / `kmask` shuffle): `scales[j]`, `mins[j]` for j in 0..8.
/// Equal to calling `get_scale_min_k4` for each j.
#[inline]
pub(crate) fn scales_and_mins(packed: &[u8; K_SCALE_SIZE]) -> ([u8; 8], [u8; 8]) {
    let mut sc = [0u8; 8];
    let mut m = [0u8; 8];
    for j in 0..8 {
        (sc[j], m[j]) = get_scale_min_k4(j, packed);
    }
    (sc, m)
}

/// The shared Q4_K / Q5_K dot product tail: `codes` are the 256 unsigned codes of the weight
/// block (ggml-cpu/quants.c ggml_vec_dot_q4_K_q8_K_generic after unpacking; Q5_K's is the
/// same). Accumulates into the 8 lane sums and returns the block's `dmin * sumi` term.
#[inline]
pub(crate) fn kx_block_dot(
    codes: &[i8; QK_K],
    packed: &[u8; K_SCALE_SIZE],
    d: f16,
    dmin: f16,
    y: &BlockQ8_K,
    sums: &mut [f32; 8],
) -> f32 {
    let (scales, mins) = scales_and_mins(packed);
    let mut sumi = 0i32;
    for j in 0..QK_K / 16 {
        sumi += i32::from(y.bsums[j]) * i32::from(mins[j / 2]);
    }
    let mut aux32 = [0i32; 8];
    for j in 0..QK_K / 32 {
        let scale = i32::from(scales[j]);
        for k in 0..4 {
            let base = 32 * j + 8 * k;
            for l in 0..8 {
                // `aux16[l] = q8[l] * a[l]` (fits in i16), then `aux32[l] += scale * aux16[l]`.
                let aux16 = i16::from(y.qs[base + l]) * i16::from(codes[base + l]);
                aux32[l] += scale * i32::from(aux16);
            }
        }
    }
    let dd = fp16_to_fp32(d) * y.d;
    for l in 0..8 {
        sums[l] += dd * aux32[l] as f32;
    }
    let dm = fp16_to_fp32(dmin) * y.d;
    dm * sumi as f32
}

impl BlockFormat for Q4_K {
    const TYPE: GgmlType = GgmlType::Q4_K;
    const BLOCK_SIZE: usize = QK_K;
    type Block = BlockQ4_K;
    type Dot = Q8_K;

    fn quantize_row(x: &[f32], out: &mut [BlockQ4_K]) {
        // ggml-quants.c quantize_row_q4_K_ref: make_qkx2_quants(32, 15, ..., -1.f, 0.1f, 20)
        check_row::<Self>(x.len(), out.len());
        for (xb, y) in x.chunks_exact(QK_K).zip(out.iter_mut()) {
            let (d, dmin, scales, l) = quantize_qkx_super_block(xb, 15, -1.0, 0.1, 20);
            y.d = d;
            y.dmin = dmin;
            y.scales = scales;
            for c in 0..QK_K / 64 {
                for k in 0..32 {
                    y.qs[32 * c + k] = l[64 * c + k] | (l[64 * c + 32 + k] << 4);
                }
            }
        }
    }

    fn dequantize_row(blocks: &[BlockQ4_K], out: &mut [f32]) {
        // ggml-quants.c dequantize_row_q4_K (`d1 * q - m1`, not fused)
        check_row::<Self>(out.len(), blocks.len());
        for (b, y) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
            let d = fp16_to_fp32(b.d);
            let min = fp16_to_fp32(b.dmin);
            for c in 0..QK_K / 64 {
                let (sc1, m1) = get_scale_min_k4(2 * c, &b.scales);
                let (sc2, m2) = get_scale_min_k4(2 * c + 1, &b.scales);
                let (d1, m1) = (d * f32::from(sc1), min * f32::from(m1));
                let (d2, m2) = (d * f32::from(sc2), min * f32::from(m2));
                let q = &b.qs[32 * c..32 * c + 32];
                for l in 0..32 {
                    y[64 * c + l] = d1 * f32::from(q[l] & 0x0f) - m1;
                    y[64 * c + 32 + l] = d2 * f32::from(q[l] >> 4) - m2;
                }
            }
        }
    }

    fn vec_dot_ref(w: &[BlockQ4_K], x: &[BlockQ8_K]) -> f32 {
        // ggml-cpu/quants.c ggml_vec_dot_q4_K_q8_K_generic
        check_dot::<Self>(w.len(), x.len());
        let mut sums = [0.0f32; 8];
        let mut sumf = 0.0f32;
        for (a, b) in w.iter().zip(x) {
            let mut codes = [0i8; QK_K];
            for c in 0..QK_K / 64 {
                for l in 0..32 {
                    codes[64 * c + l] = (a.qs[32 * c + l] & 0x0f) as i8;
                    codes[64 * c + 32 + l] = (a.qs[32 * c + l] >> 4) as i8;
                }
            }
            sumf -= kx_block_dot(&codes, &a.scales, a.d, a.dmin, b, &mut sums);
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
        // Eight sub-blocks, each a 0..=15 ramp times (j + 1) / 4, starting at 0: the search
        // finds min 0 and scale (j+1)/4 exactly, max_scale = 2, so ls_j = round(63 (j+1)/8).
        let x: Vec<f32> = (0..256).map(|i| (i % 16) as f32 * ((i / 32 + 1) as f32 / 4.0)).collect();
        let q = quant::<Q4_K>(&x);
        assert_eq!(q[0].d.to_bits(), crate::fp32_to_fp16(2.0 / 63.0).to_bits());
        assert_eq!(q[0].dmin.to_bits(), 0);
        for j in 0..8 {
            let (sc, m) = get_scale_min_k4(j, &q[0].scales);
            assert_eq!((sc, m), (((63 * (j + 1)) as f32 / 8.0).round_ties_even() as u8, 0), "sub-block {j}");
        }
        // Element 1 of sub-block 0 (code 1) is the low nibble of qs[1]; element 33 (sub-block 1,
        // code 1) its high nibble.
        assert_eq!(q[0].qs[1], 0x11);
        let y = dequant::<Q4_K>(&q);
        let bound = kquant_error_bound(&x, 15);
        for (a, b) in x.iter().zip(&y) {
            assert!((a - b).abs() <= bound, "{a} {b}");
        }
    }

    #[test]
    fn zero_block_is_all_zero_bytes() {
        let q = quant::<Q4_K>(&[0.0; 256]);
        assert_eq!(bytemuck::bytes_of(&q[0]), &[0u8; 144]);
    }

    #[test]
    fn tricky_blocks_stay_within_bound() {
        for xb in tricky_superblocks() {
            let y = dequant::<Q4_K>(&quant::<Q4_K>(&xb));
            let bound = kquant_error_bound(&xb, 15);
            for (a, b) in xb.iter().zip(&y) {
                assert!((a - b).abs() <= bound, "{a} -> {b} (bound {bound})");
            }
        }
    }

    #[test]
    fn vec_dot_matches_dequantized_dot() {
        let w: Vec<f32> = (0..512).map(|i| ((i * 29 % 83) as f32 - 40.0) / 11.0).collect();
        let x: Vec<f32> = (0..512).map(|i| (i as f32 * 0.17).sin()).collect();
        let (wq, xq) = (quant::<Q4_K>(&w), quant::<Q8_K>(&x));
        let exact: f64 =
            dequant::<Q4_K>(&wq).iter().zip(dequant::<Q8_K>(&xq)).map(|(a, b)| f64::from(*a) * f64::from(b)).sum();
        let got = Q4_K::vec_dot_ref(&wq, &xq);
        assert!((f64::from(got) - exact).abs() < 1e-4 * exact.abs().max(1.0), "{got} vs {exact}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// See `kquant_error_bound` for the derivation (R/15 per element, R the widest
        /// sub-block range including 0).
        #[test]
        fn round_trip_error(x in proptest::collection::vec(-50.0f32..50.0, 256), shift in -30.0f32..30.0) {
            let x: Vec<f32> = x.iter().map(|v| v + shift).collect();
            let y = dequant::<Q4_K>(&quant::<Q4_K>(&x));
            let bound = kquant_error_bound(&x, 15);
            for (a, b) in x.iter().zip(&y) {
                prop_assert!((a - b).abs() <= bound, "{} -> {} (bound {})", a, b, bound);
            }
        }
    }
}
