//! Tests of every SIMD path against the scalar reference, run for every backend this CPU has
//! in one process (through [`Kernels::get`], not the environment).

mod attention;
mod exact;
mod matmul;
mod ops;
mod quantize;

use gguf_file::GgmlType;

use crate::decode::decode_row;
use crate::formats::{is_float, quant_spec};
use crate::{Backend, Kernels};

/// The SIMD tables this CPU runs.
pub(crate) fn simd_tables() -> Vec<&'static Kernels> {
    Backend::supported().filter(|&b| b != Backend::Scalar).filter_map(Kernels::get).collect()
}

pub(crate) fn scalar() -> &'static Kernels {
    Kernels::get(Backend::Scalar).unwrap()
}

/// A small deterministic generator (xorshift64*).
pub(crate) struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [-1, 1).
    pub fn f(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Activation-like values: mostly small, a few outliers (GPT-2's residual stream has them).
    pub fn activations(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| if self.below(64) == 0 { self.f() * 40.0 } else { self.f() * 2.0 }).collect()
    }
}

/// Rows of `ty` quantized from random weights.
pub(crate) fn random_matrix(ty: GgmlType, rows: usize, cols: usize, rng: &mut Rng) -> Vec<u8> {
    let x: Vec<f32> = (0..rows * cols).map(|_| rng.f() * 0.5 + rng.f() * rng.f() * 0.1).collect();
    let mut w = vec![0u8; quill_quant::row_bytes(ty, cols).unwrap() * rows];
    quill_quant::quantize(ty, &x, cols, &mut w).unwrap();
    w
}

/// `sum_i |w_i| * |x_i|` per (token, row), with `w_i` split into its scaled code and its minimum
/// (both bound the float rounding of the kernels), and `x` as the kernels see it (quantized to
/// the activation format for quantized weights).
pub(crate) fn magnitudes(ty: GgmlType, w: &[u8], rows: usize, cols: usize, x: &[f32], n_tokens: usize) -> Vec<f64> {
    let rb = quill_quant::row_bytes(ty, cols).unwrap();
    let mut xs = x.to_vec();
    if !is_float(ty) {
        let dt = quill_quant::dot_type(ty).unwrap();
        let qb = quill_quant::row_bytes(dt, cols).unwrap();
        let mut q = vec![0u8; qb * n_tokens];
        quill_quant::quantize(dt, x, cols, &mut q).unwrap();
        quill_quant::dequantize(dt, &q, &mut xs).unwrap();
    }
    let mut wabs = vec![0f64; rows * cols];
    for r in 0..rows {
        let row = &w[r * rb..(r + 1) * rb];
        let out = &mut wabs[r * cols..(r + 1) * cols];
        match quant_spec(ty) {
            Some(spec) => {
                let mut codes = vec![0u8; cols];
                let (mut dw, mut mw) = (vec![0f32; cols / 16], vec![0f32; cols / 16]);
                decode_row(ty, row, cols, &mut codes, &mut dw, &mut mw);
                for i in 0..cols {
                    let s = i / spec.sblock;
                    let m = if spec.has_min { mw[s].abs() } else { 0.0 };
                    out[i] = f64::from((dw[s] * (i32::from(codes[i]) - spec.offset) as f32).abs() + m);
                }
            }
            None => {
                let mut f = vec![0f32; cols];
                crate::Matrix::new(ty, 1, cols, row).unwrap().dequantize_row(0, &mut f);
                for (o, v) in out.iter_mut().zip(f) {
                    *o = f64::from(v.abs());
                }
            }
        }
    }
    let mut mags = vec![0f64; n_tokens * rows];
    for t in 0..n_tokens {
        for r in 0..rows {
            mags[t * rows + r] = (0..cols).map(|i| wabs[r * cols + i] * f64::from(xs[t * cols + i].abs())).sum::<f64>();
        }
    }
    mags
}
