//! The AVX-512 function table.

use super::x86_avx512 as k;
use super::x86_avx512_gemm as g;
use crate::dispatch::{Backend, Kernels};
use crate::panel::PanelKind;
use crate::table::{formats, gemv_table, min_tokens, unpack_table, ActLayout, GemmKernels, QuantKernels};

/// The GEMV of this table: AVX-512 for float weights; for quantized weights the x86 GEMV on
/// AVX-512 VNNI's `vpdpbusd` (ymm registers), which sums in the one order of `crate::order`
/// that the AVX-512 GEMM follows too, so that a decode token gets the same bits alone as in a
/// batch.
mod gemv {
    pub(crate) use super::super::x86_avx512::{gemv_bf16, gemv_f16, gemv_f32};
    pub(crate) use super::super::x86_gemv::vnni512::{
        gemv_q4_0, gemv_q4_0_8_8, gemv_q4_1, gemv_q4_k, gemv_q5_0, gemv_q5_1, gemv_q5_k, gemv_q6_k, gemv_q8_0,
    };
}

pub(crate) static KERNELS: Kernels = Kernels {
    backend: Backend::Avx512,
    quant: QuantKernels {
        q8_0: k::quantize_q8_0,
        q8_1: k::quantize_q8_1,
        q8_k: k::quantize_q8_k,
        layout: ActLayout::Blocks,
        pair_order: true,
        gemv: formats!(gemv_table!(gemv)),
        step: Some(super::x86_gemv::vnni512::step_quant),
    },
    gemm: Some(GemmKernels {
        nr: g::NR,
        // Measured on a Zen 4 class EPYC (124M decode step, cold and hot weights, one run): the
        // step kernel beats the GEMM at 4 tokens for the legacy formats (1.2-1.3x for Q4_0 and
        // Q8_0), about ties at 5, and loses from 6; for the K-quants the GEMM wins from 4.
        // Q4_0_8_8 switches where Q4_0 does (its step kernel not yet measured on AVX-512).
        min_tokens: min_tokens(5, 4, 5),
        int_kind: PanelKind::U8,
        unpack: formats!(unpack_table!(g)),
        micro_i8: g::gemm_i8,
        micro_f32: k::gemm_f32,
        step_f32: k::step_float,
    }),
    ops: k::FLOAT_OPS,
};
