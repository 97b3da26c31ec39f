//! The AVX2 function table, and the AVX-VNNI one: the same kernels with the integer GEMM
//! micro-kernel on `vpdpbusd` (the same integer sums, so the same bits; the AVX2 GEMV, which
//! sums in the GEMM's float order, serves one-token products on both). The AVX-VNNI table has
//! not run on the machine that wrote it, which lacks AVX-VNNI.

use super::x86_avx2 as k;
use super::x86_avx2_gemm as g;
use super::x86_avx2_gemv as v;
use crate::dispatch::{Backend, Kernels};
use crate::panel::PanelKind;
use crate::table::{formats, gemv_table, min_tokens, unpack_table, ActLayout, GemmKernels, MicroI8Fn, QuantKernels};

pub(crate) static KERNELS: Kernels = table(Backend::Avx2, g::gemm_u8);
pub(crate) static VNNI_KERNELS: Kernels = table(Backend::AvxVnni, g::gemm_u8_vnni);

const fn table(backend: Backend, micro_i8: MicroI8Fn) -> Kernels {
    Kernels {
        backend,
        quant: QuantKernels {
            q8_0: k::quantize_q8_0,
            q8_1: k::quantize_q8_1,
            q8_k: k::quantize_q8_k,
            layout: ActLayout::Blocks,
            gemv_in_gemm_order: true,
            gemv: formats!(gemv_table!(v)),
            step: Some(v::step_quant),
        },
        gemm: Some(GemmKernels {
            nr: g::NR,
            // Measured on a Zen 3 (124M decode step, cold weights, bench/avx2/DECODE_STEP.md):
            // the step kernel beats the GEMM by 1.2-1.5x at 2 and 3 tokens for every format,
            // by 1.1-1.2x at 4 for the legacy ones (even for the K-quants), and loses from 6.
            min_tokens: min_tokens(5, 4),
            int_kind: PanelKind::U8,
            unpack: formats!(unpack_table!(g)),
            micro_i8,
            micro_f32: k::gemm_f32,
            step_f32: k::step_float,
        }),
        ops: k::FLOAT_OPS,
    }
}
