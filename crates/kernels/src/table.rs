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

/// Passes the one list of weight formats that have kernels to `$m!`, after the caller's own
/// arguments and a `;`: `Type gemv_name unpack_name` per format, in table order. Every backend
/// names its kernels after this list, so adding a format is one edit here (plus its kernels).
macro_rules! formats {
    ($m:ident!($($args:tt)*)) => {
        $m! {$($args)*;
            F32 gemv_f32 unpack_f32,
            F16 gemv_f16 unpack_f16,
            BF16 gemv_bf16 unpack_bf16,
            Q4_0 gemv_q4_0 unpack_q4_0,
            Q4_1 gemv_q4_1 unpack_q4_1,
            Q5_0 gemv_q5_0 unpack_q5_0,
            Q5_1 gemv_q5_1 unpack_q5_1,
            Q8_0 gemv_q8_0 unpack_q8_0,
            Q4_K gemv_q4_k unpack_q4_k,
            Q5_K gemv_q5_k unpack_q5_k,
            Q6_K gemv_q6_k unpack_q6_k,
            Q4_0_8_8 gemv_q4_0_8_8 unpack_q4_0_8_8
        }
    };
}
pub(crate) use formats;

macro_rules! format_types {
    (; $($ty:ident $gemv:ident $unpack:ident),*) => {
        [$(GgmlType::$ty),*]
    };
}

/// Every weight format with kernels, in table order.
pub(crate) const FORMATS: [GgmlType; 12] = formats!(format_types!());

/// The GEMV kernels of a backend: `formats!(gemv_table!(m))` lists `m::gemv_<format>` for every
/// format of [`formats!`] (`m` a module name in scope).
macro_rules! gemv_table {
    ($m:ident; $($ty:ident $gemv:ident $unpack:ident),*) => {
        $crate::table::ByFormat([$($m::$gemv),*])
    };
}
pub(crate) use gemv_table;

/// The GEMM panel unpackers of a backend (`module::unpack_<format>`).
macro_rules! unpack_table {
    ($m:ident; $($ty:ident $gemv:ident $unpack:ident),*) => {
        $crate::table::ByFormat([$($m::$unpack),*])
    };
}
pub(crate) use unpack_table;

/// One kernel per format of [`FORMATS`], in its order.
#[derive(Clone, Copy)]
pub(crate) struct ByFormat<F>(pub [F; FORMATS.len()]);

impl<F: Copy> ByFormat<F> {
    /// The kernel for `ty`, if it has one.
    pub fn get(&self, ty: GgmlType) -> Option<F> {
        FORMATS.iter().position(|&t| t == ty).map(|i| self.0[i])
    }
}

/// A backend's GEMM crossovers ([`GemmKernels::min_tokens`]): `legacy` tokens for the
/// 32-element formats, `k_quant` for the K-quants, `interleaved` for Q4_0_8_8 (float formats
/// switch at [`crate::GEMM_MIN_TOKENS`]).
pub(crate) const fn min_tokens(legacy: usize, k_quant: usize, interleaved: usize) -> ByFormat<usize> {
    let most = crate::matrix::STEP_MAX_TOKENS + 1;
    assert!(legacy <= most && k_quant <= most && interleaved <= most);
    let mut out = [crate::GEMM_MIN_TOKENS; FORMATS.len()];
    let mut i = 0;
    while i < FORMATS.len() {
        out[i] = match FORMATS[i] {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => crate::GEMM_MIN_TOKENS,
            GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K => k_quant,
            GgmlType::Q4_0_8_8 => interleaved,
            _ => legacy,
        };
        i += 1;
    }
    ByFormat(out)
}

/// GEMV kernels, one per weight format.
pub(crate) type GemvKernels = ByFormat<GemvFn>;

/// How a backend's quantized GEMV kernels read the activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ActLayout {
    /// ggml's activation blocks as they are (the scalar reference).
    Ggml,
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
    /// Whether the GEMV and step kernels of the formats with 32-element scale blocks (but
    /// interleaved Q4_0) also read the activation codes in block-pair order
    /// ([`crate::act::pack_p32`]).
    pub pair_order: bool,
    pub gemv: GemvKernels,
    /// The decode step of a few tokens per weight read, where the backend has one: every
    /// quantized format of `crate::formats::quant_spec`, each (row, token) in the GEMV's order
    /// (so only on tables whose GEMV is in the GEMM's order). Runs products of 2 tokens up to
    /// the GEMM's `min_tokens`.
    pub step: Option<StepQFn>,
}

/// Quantized rows `w` (whole rows of `row_bytes`, `k` elements of `ty`) times every token of
/// `act`, into `out[t * stride + r]` (raw for the reason of [`MicroI8Fn`]); `p32` holds the
/// tokens' codes in block-pair order (`crate::act::pack_p32`, `k` rounded up to 64 apart) for
/// the 32-element formats.
pub(crate) type StepQFn = unsafe fn(
    ty: GgmlType,
    w: &[u8],
    row_bytes: usize,
    k: usize,
    act: &ActBlocks<'_>,
    p32: &[i8],
    out: *mut f32,
    stride: usize,
);

/// Decodes up to `panel.nr` rows of one weight format into a GEMM panel (missing rows are
/// zero): `w` holds whole rows of `row_bytes` bytes, `k` elements each.
pub(crate) type UnpackFn = unsafe fn(w: &[u8], row_bytes: usize, k: usize, panel: &mut Panel);

/// Panel unpackers, one per weight format.
pub(crate) type UnpackKernels = ByFormat<UnpackFn>;

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
    /// Per format, the token count from which a quantized product runs as GEMM rather than
    /// the step kernel (`QuantKernels::step`) or one GEMV per token (measured: `cargo bench
    /// --bench decode_step`; see [`min_tokens`]).
    pub min_tokens: ByFormat<usize>,
    /// The layout of integer panels (`U8`).
    pub int_kind: crate::panel::PanelKind,
    pub unpack: UnpackKernels,
    pub micro_i8: MicroI8Fn,
    pub micro_f32: MicroF32Fn,
    /// Float weights against any number of tokens without a panel, each (row, token) in the
    /// float GEMV's order: every row-invariant float product (the server's and batched
    /// generation's steps and prompt chunks) runs it, so that one token's product is the
    /// GEMV's, bit for bit and at its speed, whatever else is in the step.
    pub step_f32: StepF32Fn,
}

/// Float rows `w` (whole rows of `row_bytes`, `k` elements of `ty`) times `n_tokens` rows of `x`
/// (`[n_tokens][k]`), into `out[t * stride + r]`. `out` is raw for the reason of [`MicroI8Fn`].
pub(crate) type StepF32Fn = unsafe fn(
    ty: GgmlType,
    w: &[u8],
    row_bytes: usize,
    k: usize,
    x: &[f32],
    n_tokens: usize,
    out: *mut f32,
    stride: usize,
);

/// `out = (x - mean(x)) / sqrt(var(x) + eps) * w + b` over one row.
pub(crate) type LayerNormFn = unsafe fn(x: &[f32], w: &[f32], b: &[f32], eps: f32, out: &mut [f32]);

/// The float kernels of the rest of the graph.
pub(crate) struct OpsKernels {
    pub layer_norm: LayerNormFn,
    pub gelu: unsafe fn(&mut [f32]),
    pub softmax: unsafe fn(&mut [f32]),
    pub add_assign: unsafe fn(&mut [f32], &[f32]),
    pub attn: crate::attention::AttnKernels,
}
