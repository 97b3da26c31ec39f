//! The NEON function table (no GEMM kernels: prefill runs one GEMV per token).

use super::aarch64_neon as k;
use crate::dispatch::{Backend, Kernels};
use crate::table::{formats, gemv_table, ActLayout, QuantKernels};

pub(crate) static KERNELS: Kernels = Kernels {
    backend: Backend::Neon,
    quant: QuantKernels {
        q8_0: k::quantize_q8_0,
        q8_1: k::quantize_q8_1,
        q8_k: k::quantize_q8_k,
        layout: ActLayout::Lanes,
        gemv_in_gemm_order: false,
        gemv: formats!(gemv_table!(k)),
    },
    gemm: None,
    ops: k::FLOAT_OPS,
};
