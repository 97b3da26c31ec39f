//! The scalar backend: portable Rust, always compiled, and the reference of every test. Its
//! quantized dot products are `quill_quant`'s `vec_dot_ref` (ggml's scalar kernels, same float
//! operation order); float dot products accumulate in f64 like ggml's scalar `ggml_vec_dot_f32`,
//! but take f32 activations (no rounding of `x` to f16).

use gguf_file::GgmlType;
use half::{bf16, f16};
use quill_quant::{
    cast_blocks, BlockFormat, BlockQ8_0, BlockQ8_1, BlockQ8_K, Q4_0, Q4_1, Q4_K, Q5_0, Q5_1, Q5_K, Q6_K,
};
use quill_quant::{Q8_0, Q8_1, Q8_K};

use crate::act::GemvAct;
use crate::attention::AttnKernels;
use crate::dispatch::{Backend, Kernels};
use crate::table::{formats, gemv_table, ActLayout, GemvFn, OpsKernels, QuantKernels};

fn q8_0(x: &[f32], out: &mut [BlockQ8_0]) {
    Q8_0::quantize_row(x, out)
}

fn q8_1(x: &[f32], out: &mut [BlockQ8_1]) {
    Q8_1::quantize_row(x, out)
}

fn q8_k(x: &[f32], out: &mut [BlockQ8_K]) {
    Q8_K::quantize_row(x, out)
}

/// `vec_dot_ref` of every row against ggml activation blocks.
fn gemv_ref<F: BlockFormat>(w: &[u8], row_bytes: usize, _k: usize, act: &GemvAct<'_>, out: &mut [f32]) {
    let x = cast_blocks::<F::Dot>(act.q).expect("the driver aligns activation blocks");
    for (o, row) in out.iter_mut().zip(w.chunks_exact(row_bytes)) {
        *o = match cast_blocks::<F>(row) {
            Ok(blocks) => F::vec_dot_ref(blocks, x),
            // Rows of a misaligned buffer (never a GGUF mapping): copy them.
            Err(_) => quill_quant::vec_dot_ref(F::TYPE, row, act.q).expect("checked shapes"),
        };
    }
}

/// Float rows against f32 activations, products in f32 summed in f64.
fn gemv_float<const TY: u8>(w: &[u8], row_bytes: usize, _k: usize, act: &GemvAct<'_>, out: &mut [f32]) {
    for (o, row) in out.iter_mut().zip(w.chunks_exact(row_bytes)) {
        let mut sum = 0.0f64;
        match TY {
            0 => {
                for (b, &x) in row.chunks_exact(4).zip(act.x) {
                    sum += f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]]) * x);
                }
            }
            1 => {
                for (b, &x) in row.chunks_exact(2).zip(act.x) {
                    sum += f64::from(f16::from_le_bytes([b[0], b[1]]).to_f32() * x);
                }
            }
            _ => {
                for (b, &x) in row.chunks_exact(2).zip(act.x) {
                    sum += f64::from(bf16::from_le_bytes([b[0], b[1]]).to_f32() * x);
                }
            }
        }
        *o = sum as f32;
    }
}

/// `out = (x - mean) / sqrt(var + eps) * w + b` over one row (mean and variance summed in f64,
/// so that rows far from zero keep their precision).
pub(crate) fn layer_norm(x: &[f32], w: &[f32], b: &[f32], eps: f32, out: &mut [f32]) {
    let n = x.len();
    let mean = x.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
    let var = x.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n as f64;
    let inv = (1.0 / (var + f64::from(eps)).sqrt()) as f32;
    let mean = mean as f32;
    for i in 0..n {
        out[i] = (x[i] - mean) * inv * w[i] + b[i];
    }
}

/// GPT-2's GELU, `0.5 u (1 + tanh(sqrt(2/pi) (u + 0.044715 u^3)))`, written as the equal
/// `u / (1 + exp(-2 sqrt(2/pi) (u + 0.044715 u^3)))`, which has no cancellation for negative `u`.
pub(crate) fn gelu(x: &mut [f32]) {
    for v in x {
        *v = gelu1(*v);
    }
}

#[inline]
pub(crate) fn gelu1(u: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    u / (1.0 + (-2.0 * SQRT_2_OVER_PI * (u + 0.044_715 * u * u * u)).exp())
}

/// Numerically stable softmax in place.
pub(crate) fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

pub(crate) fn add_assign(dst: &mut [f32], src: &[f32]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d += s;
    }
}

/// The scalar GEMV of every format, named as the table list wants them (function names, so
/// lower case).
#[allow(non_upper_case_globals)]
mod gemv {
    use super::*;

    pub(super) const gemv_f32: GemvFn = gemv_float::<0>;
    pub(super) const gemv_f16: GemvFn = gemv_float::<1>;
    pub(super) const gemv_bf16: GemvFn = gemv_float::<2>;
    pub(super) const gemv_q4_0: GemvFn = gemv_ref::<Q4_0>;
    pub(super) const gemv_q4_1: GemvFn = gemv_ref::<Q4_1>;
    pub(super) const gemv_q5_0: GemvFn = gemv_ref::<Q5_0>;
    pub(super) const gemv_q5_1: GemvFn = gemv_ref::<Q5_1>;
    pub(super) const gemv_q8_0: GemvFn = gemv_ref::<Q8_0>;
    pub(super) const gemv_q4_k: GemvFn = gemv_ref::<Q4_K>;
    pub(super) const gemv_q5_k: GemvFn = gemv_ref::<Q5_K>;
    pub(super) const gemv_q6_k: GemvFn = gemv_ref::<Q6_K>;
    pub(super) const gemv_q4_0_8_8: GemvFn = gemv_interleaved;
}

/// Q4_0 interleaved by 8 rows: each group de-interleaved, then the Q4_0 reference.
fn gemv_interleaved(w: &[u8], row_bytes: usize, k: usize, act: &GemvAct<'_>, out: &mut [f32]) {
    // SAFETY: the reference runs on any CPU and reads the ggml activation blocks of `act`.
    unsafe { crate::interleaved::gemv_groups(gemv_ref::<Q4_0>, w, row_bytes, k, act, out) }
}

pub(crate) static KERNELS: Kernels = Kernels {
    backend: Backend::Scalar,
    quant: QuantKernels {
        q8_0,
        q8_1,
        q8_k,
        layout: ActLayout::Ggml,
        pair_order: false,
        gemv: formats!(gemv_table!(gemv)),
        step: None,
    },
    gemm: None,
    ops: OpsKernels { layer_norm, gelu, softmax, add_assign, attn: AttnKernels::SCALAR },
};

/// The scalar GEMV of any supported type (also the path of Q8_1 / Q8_K weights on every
/// backend, which only the reference handles).
pub(crate) fn gemv_any(ty: GgmlType, w: &[u8], row_bytes: usize, act_q: &[u8], out: &mut [f32]) {
    for (o, row) in out.iter_mut().zip(w.chunks_exact(row_bytes)) {
        *o = quill_quant::vec_dot_ref(ty, row, act_q).expect("checked shapes");
    }
}
