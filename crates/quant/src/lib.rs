//! ggml-compatible block formats, their scalar reference quantize / dequantize / dot product,
//! and the per-tensor quantization policy of llama.cpp's `llama-quantize` for GPT-2.
//!
//! One trait, [`BlockFormat`], is the whole contract of a format: its ggml type, elements per
//! block, the `#[repr(C)]` block struct (bit-exact with `ggml-common.h`), the activation format
//! its dot product takes, and the three reference routines. Matmul is written once, generic over
//! it; the SIMD kernels in `quill-kernels` read the same block structs and are tested against
//! [`BlockFormat::vec_dot_ref`].
//!
//! ```
//! use quill_quant::{BlockFormat, Q4_0, Q8_0};
//! let w: Vec<f32> = (0..64).map(|i| (i as f32 - 32.0) / 8.0).collect();
//! let x: Vec<f32> = (0..64).map(|i| (i as f32).sin()).collect();
//! let mut wq = vec![bytemuck::Zeroable::zeroed(); 2];
//! let mut xq = vec![bytemuck::Zeroable::zeroed(); 2];
//! Q4_0::quantize_row(&w, &mut wq);
//! Q8_0::quantize_row(&x, &mut xq);
//! let dot = Q4_0::vec_dot_ref(&wq, &xq);
//! let exact: f32 = w.iter().zip(&x).map(|(a, b)| a * b).sum();
//! assert!((dot - exact).abs() < 0.5);
//! ```
//!
//! Whole tensors by [`GgmlType`] at run time: [`quantize`], [`dequantize`], [`row_bytes`],
//! [`vec_dot_ref`], [`SUPPORTED_TYPES`]; zero-copy views of GGUF bytes: [`cast_blocks`].
//!
//! Every routine is a pure function of its inputs (no global state, no allocation in the
//! per-format routines), so callers may quantize rows in parallel.

mod cast;
mod dispatch;
mod error;
pub mod float;
pub mod interleave;
pub mod kquants;
pub mod legacy;
pub mod policy;

pub use cast::{blocks_as_bytes, cast_blocks, cast_blocks_mut};
pub use dispatch::{
    dequantize, dequantize_rows, dot_type, quantize, row_bytes, vec_dot_ref, visit_format, FormatVisitor,
    SUPPORTED_TYPES,
};
pub use error::{PolicyError, QuantError};
pub use float::{bf16_to_fp32, fp16_to_fp32, fp32_to_bf16, fp32_to_fp16, BF16, F16, F32};
pub use gguf_file::GgmlType;
pub use kquants::{BlockQ4_K, BlockQ5_K, BlockQ6_K, BlockQ8_K, Q4_K, Q5_K, Q6_K, Q8_K, QK_K};
pub use legacy::{
    BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1,
};
pub use policy::{FileType, QuantPolicy, TensorOverride};

/// The whole contract of a ggml block format.
///
/// Implemented by zero-sized marker types ([`Q4_0`], [`Q4_K`], [`F16`], ...), one per ggml type.
/// Plain element types are formats with one element per "block" (`Block = f32`, `half::f16`,
/// `half::bf16`).
///
/// The reference routines panic when lengths disagree (a programming error, like ggml's
/// asserts); the by-type functions ([`quantize`], [`dequantize`], [`vec_dot_ref`]) check first
/// and return [`QuantError`] instead.
pub trait BlockFormat: Sized + 'static {
    /// The ggml type; its row in `gguf_file::TYPE_TABLE` holds the same block size and bytes
    /// (checked by a test for every format).
    const TYPE: GgmlType;
    /// Elements per block.
    const BLOCK_SIZE: usize;
    /// The `#[repr(C)]` block, bit-exact with ggml's struct.
    type Block: bytemuck::Pod + std::fmt::Debug;
    /// The activation format this format's dot product takes (ggml-cpu `type_traits_cpu`
    /// `vec_dot_type`).
    type Dot: BlockFormat;

    /// Quantizes `x` into `out` exactly as ggml's `quantize_row_*_ref` does (same bytes for the
    /// same input). Panics unless `x.len() == out.len() * BLOCK_SIZE`.
    fn quantize_row(x: &[f32], out: &mut [Self::Block]);

    /// Dequantizes `blocks` into `out` exactly as ggml's `dequantize_row_*` does (same f32 bits).
    /// Panics unless `out.len() == blocks.len() * BLOCK_SIZE`.
    fn dequantize_row(blocks: &[Self::Block], out: &mut [f32]);

    /// Dot product of a weight row with an activation row quantized to [`Self::Dot`], following
    /// ggml-cpu's scalar `ggml_vec_dot_*_generic` (integer sums, then the scales, in the same
    /// float operation order, never fused). Panics unless both rows hold the same number of
    /// elements.
    fn vec_dot_ref(w: &[Self::Block], x: &[<Self::Dot as BlockFormat>::Block]) -> f32;
}

/// Panics with a clear message unless `n_elements == n_blocks * block_size`.
#[inline]
#[track_caller]
pub(crate) fn check_row<F: BlockFormat>(n_elements: usize, n_blocks: usize) {
    assert_eq!(
        n_elements,
        n_blocks * F::BLOCK_SIZE,
        "{}: {} elements do not fill {} blocks of {}",
        F::TYPE,
        n_elements,
        n_blocks,
        F::BLOCK_SIZE
    );
}

/// Panics unless a weight row and an activation row hold the same number of elements.
#[inline]
#[track_caller]
pub(crate) fn check_dot<F: BlockFormat>(w_blocks: usize, x_blocks: usize) {
    assert_eq!(
        w_blocks * F::BLOCK_SIZE,
        x_blocks * <F::Dot as BlockFormat>::BLOCK_SIZE,
        "vec_dot {} x {}: {} weight blocks against {} activation blocks",
        F::TYPE,
        <F::Dot as BlockFormat>::TYPE,
        w_blocks,
        x_blocks
    );
}
