//! Plain float element types as one-element "block" formats (F32, F16, BF16), and ggml's exact
//! f32 <-> f16 / bf16 conversions, which every block format uses for its scales.
//!
//! ggml converts in software in `ggml-base` (the code that quantizes model files):
//! f32 -> f16 rounds to nearest even, overflows to infinity, keeps subnormals, and turns every
//! NaN into the quiet NaN `0x7e00` with the input's sign; f32 -> bf16 rounds to nearest even and
//! makes NaNs quiet by setting bit 6. The ports below reproduce those bit-for-bit (for finite
//! inputs they agree with `half`, which a test checks).

use half::{bf16, f16};

use crate::{check_dot, check_row, BlockFormat, GgmlType};

/// f32 -> f16, bit-exact with ggml (ggml-impl.h `ggml_compute_fp32_to_fp16`).
#[inline]
pub fn fp32_to_fp16(f: f32) -> f16 {
    // ggml-impl.h ggml_compute_fp32_to_fp16: scale so that the addition below rounds the
    // mantissa to 10 bits (nearest even) in the float unit, then pick exponent and mantissa.
    let scale_to_inf = f32::from_bits(0x7780_0000); // 2^112
    let scale_to_zero = f32::from_bits(0x0880_0000); // 2^-110
    let mut base = (f.abs() * scale_to_inf) * scale_to_zero;

    let w = f.to_bits();
    let shl1_w = w.wrapping_add(w);
    let sign = w & 0x8000_0000;
    let mut bias = shl1_w & 0xff00_0000;
    if bias < 0x7100_0000 {
        bias = 0x7100_0000;
    }
    base += f32::from_bits((bias >> 1) + 0x0780_0000); // IEEE addition commutes: same bits as C
    let bits = base.to_bits();
    let exp_bits = (bits >> 13) & 0x0000_7c00;
    let mantissa_bits = bits & 0x0000_0fff;
    let nonsign = exp_bits + mantissa_bits;
    let out = (sign >> 16) | if shl1_w > 0xff00_0000 { 0x7e00 } else { nonsign };
    f16::from_bits(out as u16)
}

/// f16 -> f32, bit-exact with ggml (ggml-impl.h `ggml_compute_fp16_to_fp32`); exact for every
/// finite value.
#[inline]
pub fn fp16_to_fp32(h: f16) -> f32 {
    // ggml-impl.h ggml_compute_fp16_to_fp32
    let w = u32::from(h.to_bits()) << 16;
    let sign = w & 0x8000_0000;
    let two_w = w.wrapping_add(w);

    let exp_offset = 0xe0u32 << 23;
    let exp_scale = f32::from_bits(0x0780_0000); // 2^-112
    let normalized_value = f32::from_bits((two_w >> 4) + exp_offset) * exp_scale;

    let magic_mask = 126u32 << 23;
    let magic_bias = 0.5f32;
    let denormalized_value = f32::from_bits((two_w >> 17) | magic_mask) - magic_bias;

    let denormalized_cutoff = 1u32 << 27;
    let result =
        sign | if two_w < denormalized_cutoff { denormalized_value.to_bits() } else { normalized_value.to_bits() };
    f32::from_bits(result)
}

/// f32 -> bf16, bit-exact with ggml (ggml-impl.h `ggml_compute_fp32_to_bf16`).
#[inline]
pub fn fp32_to_bf16(s: f32) -> bf16 {
    // ggml-impl.h ggml_compute_fp32_to_bf16: NaN forced quiet, otherwise round to nearest even.
    let u = s.to_bits();
    if (u & 0x7fff_ffff) > 0x7f80_0000 {
        return bf16::from_bits(((u >> 16) | 64) as u16);
    }
    bf16::from_bits((u.wrapping_add(0x7fff + ((u >> 16) & 1)) >> 16) as u16)
}

/// bf16 -> f32 (ggml-impl.h `ggml_compute_bf16_to_fp32`: the top half of the f32).
#[inline]
pub fn bf16_to_fp32(h: bf16) -> f32 {
    f32::from_bits(u32::from(h.to_bits()) << 16)
}

/// ggml's `GGML_TYPE_F32`: one f32 per element.
pub struct F32;

/// ggml's `GGML_TYPE_F16`: one IEEE half per element.
pub struct F16;

/// ggml's `GGML_TYPE_BF16`: one bfloat16 per element.
#[allow(clippy::upper_case_acronyms)]
pub struct BF16;

/// Sums `a[i] * b[i]` the way ggml-cpu's scalar `ggml_vec_dot_f32/f16/bf16` do: each product
/// in f32, accumulated in f64 (`ggml_float`), the total rounded to f32 (vec.cpp).
#[inline]
fn dot_f64_acc(products: impl Iterator<Item = f32>) -> f32 {
    let mut sumf = 0.0f64;
    for p in products {
        sumf += f64::from(p);
    }
    sumf as f32
}

impl BlockFormat for F32 {
    const TYPE: GgmlType = GgmlType::F32;
    const BLOCK_SIZE: usize = 1;
    type Block = f32;
    type Dot = F32;

    fn quantize_row(x: &[f32], out: &mut [f32]) {
        check_row::<Self>(x.len(), out.len());
        out.copy_from_slice(x);
    }

    fn dequantize_row(blocks: &[f32], out: &mut [f32]) {
        check_row::<Self>(out.len(), blocks.len());
        out.copy_from_slice(blocks);
    }

    fn vec_dot_ref(w: &[f32], x: &[f32]) -> f32 {
        // ggml-cpu/vec.cpp ggml_vec_dot_f32 (scalar path)
        check_dot::<Self>(w.len(), x.len());
        dot_f64_acc(w.iter().zip(x).map(|(a, b)| a * b))
    }
}

impl BlockFormat for F16 {
    const TYPE: GgmlType = GgmlType::F16;
    const BLOCK_SIZE: usize = 1;
    type Block = f16;
    type Dot = F16;

    fn quantize_row(x: &[f32], out: &mut [f16]) {
        // ggml.c ggml_fp32_to_fp16_row
        check_row::<Self>(x.len(), out.len());
        for (o, &v) in out.iter_mut().zip(x) {
            *o = fp32_to_fp16(v);
        }
    }

    fn dequantize_row(blocks: &[f16], out: &mut [f32]) {
        // ggml.c ggml_fp16_to_fp32_row
        check_row::<Self>(out.len(), blocks.len());
        for (o, &h) in out.iter_mut().zip(blocks) {
            *o = fp16_to_fp32(h);
        }
    }

    fn vec_dot_ref(w: &[f16], x: &[f16]) -> f32 {
        // ggml-cpu/vec.cpp ggml_vec_dot_f16 (scalar path)
        check_dot::<Self>(w.len(), x.len());
        dot_f64_acc(w.iter().zip(x).map(|(&a, &b)| fp16_to_fp32(a) * fp16_to_fp32(b)))
    }
}

impl BlockFormat for BF16 {
    const TYPE: GgmlType = GgmlType::BF16;
    const BLOCK_SIZE: usize = 1;
    type Block = bf16;
    type Dot = BF16;

    fn quantize_row(x: &[f32], out: &mut [bf16]) {
        // ggml.c ggml_fp32_to_bf16_row_ref
        check_row::<Self>(x.len(), out.len());
        for (o, &v) in out.iter_mut().zip(x) {
            *o = fp32_to_bf16(v);
        }
    }

    fn dequantize_row(blocks: &[bf16], out: &mut [f32]) {
        // ggml.c ggml_bf16_to_fp32_row
        check_row::<Self>(out.len(), blocks.len());
        for (o, &h) in out.iter_mut().zip(blocks) {
            *o = bf16_to_fp32(h);
        }
    }

    fn vec_dot_ref(w: &[bf16], x: &[bf16]) -> f32 {
        // ggml-cpu/vec.cpp ggml_vec_dot_bf16 (scalar path)
        check_dot::<Self>(w.len(), x.len());
        dot_f64_acc(w.iter().zip(x).map(|(&a, &b)| bf16_to_fp32(a) * bf16_to_fp32(b)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fp16_to_fp32_matches_half_for_every_value() {
        for bits in 0..=u16::MAX {
            let h = f16::from_bits(bits);
            let ours = fp16_to_fp32(h);
            let theirs = h.to_f32();
            if h.is_nan() {
                assert!(ours.is_nan(), "{bits:#06x}");
                // ggml keeps sign and payload (the f16 mantissa lands in the top f32 mantissa
                // bits); its multiply by 2^-112 makes a signalling NaN quiet.
                let want = (u32::from(bits & 0x8000) << 16) | 0x7fc0_0000 | (u32::from(bits & 0x3ff) << 13);
                assert_eq!(ours.to_bits(), want, "{bits:#06x}");
            } else {
                assert_eq!(ours.to_bits(), theirs.to_bits(), "{bits:#06x}");
            }
        }
    }

    #[test]
    fn fp32_to_fp16_edge_cases() {
        let cases: &[(f32, u16)] = &[
            (0.0, 0x0000),
            (-0.0, 0x8000),
            (1.0, 0x3c00),
            (65504.0, 0x7bff),
            (65519.99, 0x7bff),
            (65520.0, 0x7c00), // halfway to the next binade rounds to even: infinity
            (1e30, 0x7c00),
            (-1e30, 0xfc00),
            (f32::INFINITY, 0x7c00),
            (f32::NEG_INFINITY, 0xfc00),
            (f32::NAN, 0x7e00),
            (-f32::NAN, 0xfe00),
            (f32::from_bits(0x7f80_0001), 0x7e00), // signalling NaN: quiet 0x7e00, payload dropped
            (f32::from_bits(0x3380_0000), 0x0001), // 2^-24, the smallest subnormal
            (f32::from_bits(0x3300_0000), 0x0000), // 2^-25, half of it: tie rounds to even (zero)
            (f32::from_bits(0x3300_0001), 0x0001), // just above the tie
            (1e-30, 0x0000),
            (1.000_976_6, 0x3c01), // 1 + 2^-10
            (1.000_488_3, 0x3c00), // 1 + 2^-11: tie to even
            (1.001_464_8, 0x3c02), // 1 + 3*2^-11: tie to even (up)
        ];
        for &(f, want) in cases {
            assert_eq!(fp32_to_fp16(f).to_bits(), want, "{f:e}");
        }
    }

    #[test]
    fn fp32_to_bf16_edge_cases() {
        let cases: &[(u32, u16)] = &[
            (0x3f80_0000, 0x3f80),
            (0x3f80_8000, 0x3f80), // tie, even stays
            (0x3f81_8000, 0x3f82), // tie, odd rounds up
            (0x3f80_8001, 0x3f81),
            (0x7f7f_ffff, 0x7f80), // max finite rounds to infinity
            (0x7f80_0000, 0x7f80),
            (0x7f80_0001, 0x7fc0), // signalling NaN made quiet
            (0xffc1_2345, 0xffc1),
            (0x0000_0001, 0x0000), // subnormals are kept, not flushed
            (0x0001_8000, 0x0002),
        ];
        for &(f, want) in cases {
            assert_eq!(fp32_to_bf16(f32::from_bits(f)).to_bits(), want, "{f:#010x}");
        }
    }

    #[test]
    fn plain_formats_round_trip_and_dot() {
        let x: Vec<f32> = (0..40).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
        let mut h = vec![f16::ZERO; 40];
        let mut b = vec![bf16::ZERO; 40];
        let mut f = vec![0.0f32; 40];
        F16::quantize_row(&x, &mut h);
        BF16::quantize_row(&x, &mut b);
        F32::quantize_row(&x, &mut f);
        let mut back = vec![0.0f32; 40];
        F32::dequantize_row(&f, &mut back);
        assert_eq!(back, x);
        F16::dequantize_row(&h, &mut back);
        for (a, e) in back.iter().zip(&x) {
            assert!((a - e).abs() <= e.abs() * 2f32.powi(-11), "{a} {e}");
        }
        F16::dequantize_row(&h, &mut back);
        let want: f64 = back.iter().map(|&v| f64::from(v * v)).sum();
        assert_eq!(F16::vec_dot_ref(&h, &h), want as f32);
        BF16::dequantize_row(&b, &mut back);
        for (a, e) in back.iter().zip(&x) {
            assert!((a - e).abs() <= e.abs() * 2f32.powi(-8), "{a} {e}");
        }
        let want: f64 = back.iter().map(|&v| f64::from(v * 0.5)).sum();
        let halves = vec![bf16::from_f32(0.5); 40];
        assert_eq!(BF16::vec_dot_ref(&b, &halves), want as f32);
        let want: f64 = x.iter().map(|&v| f64::from(v * v)).sum();
        assert_eq!(F32::vec_dot_ref(&f, &f), want as f32);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// For every non-NaN f32, ggml's conversion equals IEEE round-to-nearest-even (`half`).
        #[test]
        fn fp32_to_fp16_is_round_to_nearest_even(bits in any::<u32>()) {
            let f = f32::from_bits(bits);
            prop_assume!(!f.is_nan());
            prop_assert_eq!(fp32_to_fp16(f).to_bits(), f16::from_f32(f).to_bits());
        }

        #[test]
        fn fp32_to_bf16_is_round_to_nearest_even(bits in any::<u32>()) {
            let f = f32::from_bits(bits);
            prop_assume!(!f.is_nan());
            prop_assert_eq!(fp32_to_bf16(f).to_bits(), bf16::from_f32(f).to_bits());
        }

        /// Round trip bound: f16 keeps 11 significant bits, so a normal value moves by at most
        /// half an ulp (|x| * 2^-11); below 2^-14 the absolute step is 2^-24, half of it 2^-25.
        #[test]
        fn f16_round_trip_error(x in -65504.0f32..65504.0) {
            let back = fp16_to_fp32(fp32_to_fp16(x));
            prop_assert!((back - x).abs() <= (x.abs() * 2f32.powi(-11)).max(2f32.powi(-25)), "{} -> {}", x, back);
        }

        /// bf16 keeps 8 significant bits: at most half an ulp, |x| * 2^-8 (f32 range).
        #[test]
        fn bf16_round_trip_error(x in -1e30f32..1e30) {
            let back = bf16_to_fp32(fp32_to_bf16(x));
            prop_assert!((back - x).abs() <= x.abs() * 2f32.powi(-8), "{} -> {}", x, back);
        }
    }
}
