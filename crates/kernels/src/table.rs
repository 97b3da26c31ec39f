//! The shapes of the function table every backend fills (see [`crate::Kernels`]).
//!
//! Every entry is an `unsafe fn` because SIMD kernels are `#[target_feature]` functions: calling
//! one is sound only on a CPU with those features, which [`crate::Kernels::get`] guarantees by
//! handing out a backend's table only after detecting them. Slice lengths are checked by the
//! drivers before the call and again with `debug_assert!` inside.

use gguf_file::GgmlType;
use quill_quant::{BlockQ8_0, BlockQ8_1, BlockQ8_K};

use crate::act::{ActBlocks, GemvAct};
use crate::panel::Panel;

/// Rows of one GEMV call: `out[r] = dot(w row r, activation)` for every row `r` of `w`
/// (`out.len()` rows of `row_bytes` bytes, `k` elements each). `act` is the activation in the
/// layout the backend asked for ([`QuantKernels::layout`]).
pub(crate) type GemvFn = unsafe fn(w: &[u8], row_bytes: usize, k: usize, act: &GemvAct<'_>, out: &mut [f32]);

/// GEMV kernels, one per weight format (named after ggml's `vec_dot_<w>_<act>`).
#[derive(Clone, Copy)]
pub(crate) struct GemvKernels {
    pub f32: GemvFn,
    pub f16: GemvFn,
    pub bf16: GemvFn,
    pub q4_0: GemvFn,
    pub q4_1: GemvFn,
    pub q5_0: GemvFn,
    pub q5_1: GemvFn,
    pub q8_0: GemvFn,
    pub q4_k: GemvFn,
    pub q5_k: GemvFn,
    pub q6_k: GemvFn,
}

impl GemvKernels {
    pub fn get(&self, ty: GgmlType) -> Option<GemvFn> {
        Some(match ty {
            GgmlType::F32 => self.f32,
            GgmlType::F16 => self.f16,
            GgmlType::BF16 => self.bf16,
            GgmlType::Q4_0 => self.q4_0,
            GgmlType::Q4_1 => self.q4_1,
            GgmlType::Q5_0 => self.q5_0,
            GgmlType::Q5_1 => self.q5_1,
            GgmlType::Q8_0 => self.q8_0,
            GgmlType::Q4_K => self.q4_k,
            GgmlType::Q5_K => self.q5_k,
            GgmlType::Q6_K => self.q6_k,
            _ => return None,
        })
    }
}

/// How a backend's quantized GEMV kernels read the activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ActLayout {
    /// ggml's activation blocks as they are (the scalar reference).
    Ggml,
    /// The lane layout ([`crate::act::pack_lanes`]).
    Lanes,
    /// The GEMM block layout of one token ([`crate::act::pack_blocks`]).
    Blocks,
}

/// Activation quantizers (ggml's block layouts, bit-exact with `quill_quant`'s reference for
/// finite inputs) and the GEMV kernels.
pub(crate) struct QuantKernels {
    pub q8_0: unsafe fn(&[f32], &mut [BlockQ8_0]),
    pub q8_1: unsafe fn(&[f32], &mut [BlockQ8_1]),
    pub q8_k: unsafe fn(&[f32], &mut [BlockQ8_K]),
    /// The activation layout the GEMV kernels read.
    pub layout: ActLayout,
    /// Whether the quantized GEMV kernels follow the GEMM micro-kernel's order of float
    /// operations, so that a token gets the same bits from both (see
    /// [`crate::Kernels::gemv_matches_gemm`]).
    pub gemv_in_gemm_order: bool,
    pub gemv: GemvKernels,
}

/// Decodes up to `panel.nr` rows of one weight format into a GEMM panel (missing rows are
/// zero): `w` holds whole rows of `row_bytes` bytes, `k` elements each.
pub(crate) type UnpackFn = unsafe fn(w: &[u8], row_bytes: usize, k: usize, panel: &mut Panel);

/// Panel unpackers, one per weight format.
#[derive(Clone, Copy)]
pub(crate) struct UnpackKernels {
    pub f32: UnpackFn,
    pub f16: UnpackFn,
    pub bf16: UnpackFn,
    pub q4_0: UnpackFn,
    pub q4_1: UnpackFn,
    pub q5_0: UnpackFn,
    pub q5_1: UnpackFn,
    pub q8_0: UnpackFn,
    pub q4_k: UnpackFn,
    pub q5_k: UnpackFn,
    pub q6_k: UnpackFn,
}

impl UnpackKernels {
    pub fn get(&self, ty: GgmlType) -> Option<UnpackFn> {
        Some(match ty {
            GgmlType::F32 => self.f32,
            GgmlType::F16 => self.f16,
            GgmlType::BF16 => self.bf16,
            GgmlType::Q4_0 => self.q4_0,
            GgmlType::Q4_1 => self.q4_1,
            GgmlType::Q5_0 => self.q5_0,
            GgmlType::Q5_1 => self.q5_1,
            GgmlType::Q8_0 => self.q8_0,
            GgmlType::Q4_K => self.q4_k,
            GgmlType::Q5_K => self.q5_k,
            GgmlType::Q6_K => self.q6_k,
            _ => return None,
        })
    }
}

/// GEMM over one panel of `panel.nr` weight rows and every token of `act` (integer panels) or
/// of `x` (float panels, `[n_tokens][k]`): writes `out[t * out_stride + r]` for the panel's
/// first `n_rows` rows. `out` is a raw pointer because the panels of other threads write the
/// other columns of the same rows; the caller guarantees those elements are valid and written
/// by no one else meanwhile.
pub(crate) type MicroI8Fn =
    unsafe fn(panel: &Panel, act: &ActBlocks<'_>, out: *mut f32, out_stride: usize, n_rows: usize);
pub(crate) type MicroF32Fn =
    unsafe fn(panel: &Panel, x: &[f32], n_tokens: usize, out: *mut f32, out_stride: usize, n_rows: usize);

/// GEMM kernels of a SIMD backend.
pub(crate) struct GemmKernels {
    /// Weight rows per panel (the micro-kernel's register tile width).
    pub nr: usize,
    /// The layout of integer panels (`U8`).
    pub int_kind: crate::panel::PanelKind,
    pub unpack: UnpackKernels,
    pub micro_i8: MicroI8Fn,
    pub micro_f32: MicroF32Fn,
}

/// `out = (x - mean(x)) / sqrt(var(x) + eps) * w + b` over one row.
pub(crate) type LayerNormFn = unsafe fn(x: &[f32], w: &[f32], b: &[f32], eps: f32, out: &mut [f32]);

/// The float kernels of the rest of the graph.
pub(crate) struct OpsKernels {
    pub dot_f32: unsafe fn(&[f32], &[f32]) -> f32,
    pub layer_norm: LayerNormFn,
    pub gelu: unsafe fn(&mut [f32]),
    pub softmax: unsafe fn(&mut [f32]),
    pub add_assign: unsafe fn(&mut [f32], &[f32]),
    pub attn: crate::attention::AttnKernels,
}
