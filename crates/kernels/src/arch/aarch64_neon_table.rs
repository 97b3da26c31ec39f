//! The NEON function table.

use super::aarch64_neon as k;
use super::aarch64_neon_gemm as g;
use super::aarch64_neon_gemv as v;
use crate::dispatch::{Backend, Kernels};
use crate::panel::PanelKind;
use crate::table::{formats, gemv_table, min_tokens, unpack_table, ActLayout, GemmKernels, QuantKernels};

pub(crate) static KERNELS: Kernels = Kernels {
    backend: Backend::Neon,
    quant: QuantKernels {
        q8_0: k::quantize_q8_0,
        q8_1: k::quantize_q8_1,
        q8_k: k::quantize_q8_k,
        layout: ActLayout::Blocks,
        pair_order: false,
        gemv: formats!(gemv_table!(v)),
        step: Some(v::step_quant),
    },
    gemm: Some(GemmKernels {
        nr: g::NR,
        // Not measured on NEON hardware yet (this backend has run under qemu only): the GEMM
        // takes over at 4 tokens, as before the step kernel (2 and 3 tokens) existed. Q4_0_8_8
        // runs as the Q4_0 it holds (de-interleaved), so it switches where Q4_0 does.
        min_tokens: min_tokens(4, 4, 4),
        int_kind: PanelKind::U8,
        unpack: formats!(unpack_table!(g)),
        micro_i8: g::gemm_sdot,
        micro_f32: k::gemm_f32,
        step_f32: k::step_float,
    }),
    ops: k::FLOAT_OPS,
};
