//! The AVX2 function table.

use super::x86_avx2 as k;
use super::x86_avx2_gemm as g;
use super::x86_avx2_gemv as v;
use super::x86_avx2_ops as o;
use crate::attention::AttnKernels;
use crate::dispatch::{Backend, Kernels};
use crate::panel::PanelKind;
use crate::table::{ActLayout, GemmKernels, GemvKernels, OpsKernels, QuantKernels, UnpackKernels};

pub(crate) static KERNELS: Kernels = Kernels {
    backend: Backend::Avx2,
    quant: QuantKernels {
        q8_0: k::quantize_q8_0,
        q8_1: k::quantize_q8_1,
        q8_k: k::quantize_q8_k,
        layout: ActLayout::Blocks,
        gemv_in_gemm_order: true,
        gemv: GemvKernels {
            f32: v::vec_dot_f32_f32,
            f16: v::vec_dot_f16_f32,
            bf16: v::vec_dot_bf16_f32,
            q4_0: v::vec_dot_q4_0_q8_0,
            q4_1: v::vec_dot_q4_1_q8_1,
            q5_0: v::vec_dot_q5_0_q8_0,
            q5_1: v::vec_dot_q5_1_q8_1,
            q8_0: v::vec_dot_q8_0_q8_0,
            q4_k: v::vec_dot_q4_k_q8_k,
            q5_k: v::vec_dot_q5_k_q8_k,
            q6_k: v::vec_dot_q6_k_q8_k,
        },
    },
    gemm: Some(GemmKernels {
        nr: g::NR,
        int_kind: PanelKind::U8,
        unpack: UnpackKernels {
            f32: g::unpack_f32,
            f16: g::unpack_f16,
            bf16: g::unpack_bf16,
            q4_0: g::unpack_q4_0,
            q4_1: g::unpack_q4_1,
            q5_0: g::unpack_q5_0,
            q5_1: g::unpack_q5_1,
            q8_0: g::unpack_q8_0,
            q4_k: g::unpack_q4_k,
            q5_k: g::unpack_q5_k,
            q6_k: g::unpack_q6_k,
        },
        micro_i8: g::gemm_u8,
        micro_f32: g::gemm_f32,
    }),
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
