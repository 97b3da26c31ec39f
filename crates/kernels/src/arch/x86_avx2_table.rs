//! The AVX2 function table, and the AVX-VNNI one: the same kernels with the integer sums of the
//! GEMM micro-kernel, the GEMV and the step kernel on `vpdpbusd` (the same integers, so the
//! same bits). The AVX-VNNI table has not run on a machine with AVX-VNNI yet; its GEMV and step
//! are the AVX-512 table's code with the VEX instruction, tested on an AVX-512 VNNI CPU.

use super::x86_avx2 as k;
use super::x86_avx2_gemm as g;
use super::x86_gemv as v;
use crate::dispatch::{Backend, Kernels};
use crate::panel::PanelKind;
use crate::table::{
    formats, gemv_table, min_tokens, unpack_table, ActLayout, GemmKernels, GemvKernels, MicroI8Fn, QuantKernels,
    StepQFn,
};

use super::x86_gemv::avxvnni as vv;

pub(crate) static KERNELS: Kernels = table(Backend::Avx2, g::gemm_u8, formats!(gemv_table!(v)), v::step_quant);
pub(crate) static VNNI_KERNELS: Kernels =
    table(Backend::AvxVnni, g::gemm_u8_vnni, formats!(gemv_table!(vv)), vv::step_quant);

/// The table of `backend`: its integer GEMM micro-kernel, quantized GEMVs and step kernel.
const fn table(backend: Backend, micro_i8: MicroI8Fn, gemv: GemvKernels, step: StepQFn) -> Kernels {
    Kernels {
        backend,
        quant: QuantKernels {
            q8_0: k::quantize_q8_0,
            q8_1: k::quantize_q8_1,
            q8_k: k::quantize_q8_k,
            layout: ActLayout::Blocks,
            pair_order: true,
            gemv,
            step: Some(step),
        },
        gemm: Some(GemmKernels {
            nr: g::NR,
            // Measured on a Zen 3 (124M decode step, cold weights, bench/avx2/DECODE_STEP.md):
            // the step kernel beats the GEMM by 1.2-1.5x at 2 and 3 tokens for every format,
            // by 1.1-1.2x at 4 for the legacy ones (even for the K-quants), and loses from 6.
            // Q4_0_8_8's step kernel (124M step, one run, Q4_0's GEMM beside it, cold): 8.1 vs
            // 11.7 ms at 4 tokens, 14.7 vs 17.4 at 8, 27.4 vs 29.0 at 16, 49.6 vs 46.6 at 32;
            // against its own GEMM (panels de-interleaved first), cold and hot: 18-23 vs 22-27
            // ms and 0.94 vs 1.1-1.3 ms at 12 tokens, 27-28 vs 27-32 and 1.1-1.3 vs 1.5 ms at
            // 16: it runs up to 16 tokens.
            min_tokens: min_tokens(5, 4, 17),
            int_kind: PanelKind::U8,
            unpack: formats!(unpack_table!(g)),
            micro_i8,
            micro_f32: k::gemm_f32,
            step_f32: k::step_float,
        }),
        ops: k::FLOAT_OPS,
    }
}
