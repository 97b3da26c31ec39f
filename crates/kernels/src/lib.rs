//! Compute kernels for the GPT-2 graph: matrix products over any weight format, layer norm,
//! GELU, softmax and the attention core.
//!
//! Every function writes into caller-provided buffers and allocates nothing, so a decode step
//! allocates nothing per token.

mod attention;
mod error;
mod matrix;
mod ops;

pub use attention::{attention, AttnScratch, KvSlice};
pub use error::KernelError;
pub use matrix::{matmul, MatmulScratch, Matrix};
pub use ops::{add_assign, add_bias, gelu, layer_norm, softmax};
