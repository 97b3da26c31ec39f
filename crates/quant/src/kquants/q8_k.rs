//! Q8_K: the activation format of the K-quants. 256 values as int8 with an f32 scale,
//! `x = d * q`, plus the sums of each 16 quants (`bsums`), which let the Q4_K / Q5_K dot
//! products apply their sub-block minimums without touching the quants again.

use bytemuck::{Pod, Zeroable};

use super::{nearest_int, QK_K};
use crate::{check_dot, check_row, BlockFormat, GgmlType};

/// ggml-common.h `block_q8_K`: 292 bytes, 4-aligned.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ8_K {
    /// Scale (f32, unlike the other formats' f16).
    pub d: f32,
    /// Quants, element `i` at `qs[i]`; the quantizer produces -127..=127.
    pub qs: [i8; QK_K],
    /// `bsums[j]` = sum of `qs[16j..16j + 16]`.
    pub bsums: [i16; QK_K / 16],
}
const _: () = assert!(size_of::<BlockQ8_K>() == 292);

/// ggml's `GGML_TYPE_Q8_K`, an activation format. ggml has no Q8_K x Q8_K kernel; the
/// [`BlockFormat::vec_dot_ref`] here is Quill's plain integer dot product, for completeness.
#[allow(non_camel_case_types)]
pub struct Q8_K;

impl BlockFormat for Q8_K {
    const TYPE: GgmlType = GgmlType::Q8_K;
    const BLOCK_SIZE: usize = QK_K;
    type Block = BlockQ8_K;
    type Dot = Q8_K;

    fn quantize_row(x: &[f32], out: &mut [BlockQ8_K]) {
        // ggml-quants.c quantize_row_q8_K_ref
        check_row::<Self>(x.len(), out.len());
        for (xb, y) in x.chunks_exact(QK_K).zip(out.iter_mut()) {
            let mut max = 0.0f32;
            let mut amax = 0.0f32;
            for &v in xb {
                let ax = v.abs();
                if ax > amax {
                    amax = ax;
                    max = v;
                }
            }
            if amax == 0.0 {
                // ggml zeroes d and qs and leaves bsums as they were; here they are zeroed too,
                // which is what they would hold.
                *y = BlockQ8_K::zeroed();
                continue;
            }
            // -127, not -128: ggml keeps the quants symmetric for the IQ kernels.
            let iscale = -127.0 / max;
            for (q, &v) in y.qs.iter_mut().zip(xb) {
                *q = nearest_int(iscale * v).min(127) as i8;
            }
            for (j, s) in y.bsums.iter_mut().enumerate() {
                *s = y.qs[16 * j..16 * j + 16].iter().map(|&q| i16::from(q)).sum();
            }
            y.d = 1.0 / iscale;
        }
    }

    fn dequantize_row(blocks: &[BlockQ8_K], out: &mut [f32]) {
        // ggml-quants.c dequantize_row_q8_K
        check_row::<Self>(out.len(), blocks.len());
        for (b, y) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
            for (o, &q) in y.iter_mut().zip(&b.qs) {
                *o = b.d * f32::from(q);
            }
        }
    }

    fn vec_dot_ref(w: &[BlockQ8_K], x: &[BlockQ8_K]) -> f32 {
        // Not a ggml kernel: per block, the integer dot times both scales.
        check_dot::<Self>(w.len(), x.len());
        let mut sumf = 0.0f32;
        for (a, b) in w.iter().zip(x) {
            let sumi: i32 = a.qs.iter().zip(&b.qs).map(|(&p, &q)| i32::from(p) * i32::from(q)).sum();
            sumf += (a.d * b.d) * sumi as f32;
        }
        sumf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kquants::test_util::{dequant, quant, tricky_superblocks};
    use proptest::prelude::*;

    #[test]
    fn known_block_and_bsums() {
        let x: Vec<f32> = (0..256).map(|i| i as f32 - 127.0).collect();
        let q = quant::<Q8_K>(&x);
        // The largest magnitude is 128 (element 255), mapped to -127: d = -128/127.
        assert_eq!(q[0].d, 1.0 / (-127.0f32 / 128.0));
        assert_eq!(q[0].qs[255], -127);
        for j in 0..16 {
            let s: i32 = q[0].qs[16 * j..16 * j + 16].iter().map(|&v| i32::from(v)).sum();
            assert_eq!(i32::from(q[0].bsums[j]), s);
        }
        assert_eq!(bytemuck::bytes_of(&quant::<Q8_K>(&[0.0; 256])[0]), &[0u8; 292]);
    }

    #[test]
    fn tricky_blocks_keep_quants_symmetric() {
        for xb in tricky_superblocks() {
            let q = quant::<Q8_K>(&xb);
            assert!(q[0].qs.iter().all(|&v| v != i8::MIN));
        }
    }

    #[test]
    fn vec_dot_is_the_scaled_integer_dot() {
        let a: Vec<f32> = (0..512).map(|i| (i as f32 * 0.05).sin()).collect();
        let (qa, qb) = (quant::<Q8_K>(&a), quant::<Q8_K>(&a));
        let exact: f64 =
            dequant::<Q8_K>(&qa).iter().zip(dequant::<Q8_K>(&qb)).map(|(x, y)| f64::from(*x) * f64::from(y)).sum();
        let got = Q8_K::vec_dot_ref(&qa, &qb);
        assert!((f64::from(got) - exact).abs() < 1e-5 * exact.abs());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(100))]

        /// d = max/-127 is kept in f32 and every x/d lies in [-127, 127]: at most half a step,
        /// |d|/2. The code is rounded from `iscale * x` and dequantized with `d = 1/iscale`,
        /// each a few f32 roundings (relative 2^-23) on values up to 127 steps: 2^-12 |d| slack.
        #[test]
        fn round_trip_error(x in proptest::collection::vec(-1e6f32..1e6, 256)) {
            let y = dequant::<Q8_K>(&quant::<Q8_K>(&x));
            let d = x.iter().fold(0.0f32, |m, v| m.max(v.abs())) / 127.0;
            for (a, b) in x.iter().zip(&y) {
                prop_assert!((a - b).abs() <= d * (0.5 + 2f32.powi(-12)), "{} -> {}", a, b);
            }
        }
    }
}
