//! The NEON function table (no GEMM kernels: prefill runs one GEMV per token).

use super::aarch64_neon as k;
use super::aarch64_neon_ops as o;
use crate::attention::AttnKernels;
use crate::dispatch::{Backend, Kernels};
use crate::table::{ActLayout, GemvKernels, OpsKernels, QuantKernels};

pub(crate) static KERNELS: Kernels = Kernels {
    backend: Backend::Neon,
    quant: QuantKernels {
        q8_0: k::quantize_q8_0,
        q8_1: k::quantize_q8_1,
        q8_k: k::quantize_q8_k,
        layout: ActLayout::Lanes,
        gemv_in_gemm_order: false,
        gemv: GemvKernels {
            f32: k::vec_dot_f32_f32,
            f16: k::vec_dot_f16_f32,
            bf16: k::vec_dot_bf16_f32,
            q4_0: k::vec_dot_q4_0_q8_0,
            q4_1: k::vec_dot_q4_1_q8_1,
            q5_0: k::vec_dot_q5_0_q8_0,
            q5_1: k::vec_dot_q5_1_q8_1,
            q8_0: k::vec_dot_q8_0_q8_0,
            q4_k: k::vec_dot_q4_k_q8_k,
            q5_k: k::vec_dot_q5_k_q8_k,
            q6_k: k::vec_dot_q6_k_q8_k,
        },
    },
    gemm: None,
    ops: OpsKernels {
        dot_f32: o::dot_f32,
        layer_norm: o::layer_norm,
        gelu: o::gelu,
        softmax: o::softmax,
        add_assign: o::add_assign,
        attn: AttnKernels {
            scores_f32: o::scores_f32,
            scores_f16: o::scores_f16,
            accum_f32: o::accum_f32,
            accum_f16: o::accum_f16,
            flash_f32: o::flash_f32,
            flash_f16: o::flash_f16,
        },
    },
};
