#![deny(unsafe_op_in_unsafe_fn)]
//! Compute kernels for the GPT-2 graph: matrix products over any weight format, layer norm,
//! GELU, softmax and the attention core.
//!
//! Every function writes into caller-provided buffers; after the first call with a given shape
//! nothing allocates, so a decode step allocates nothing per token.
//!
//! The instruction set is chosen once at run time ([`Kernels::active`]: AVX-512, AVX2 or NEON
//! when the CPU has them, else portable scalar code; `QUILL_KERNEL` forces one). The free
//! functions use that table; [`Kernels::get`] gives any other supported one, so tests and
//! benches can run every path in one process.

mod act;
mod arch;
mod attention;
pub mod bandwidth;
pub mod ceiling;
mod decode;
mod dispatch;
mod error;
mod formats;
mod gemm;
mod gemv;
mod interleaved;
mod matrix;
mod ops;
mod order;
mod panel;
mod pool;
mod scalar;
mod simd;
mod table;

pub use attention::{attention, AttnScratch, KvSlice, MAX_HEAD_DIM};
pub use dispatch::{backend_from_env, Backend, Kernels};
pub use error::KernelError;
pub use matrix::{matmul, MatmulScratch, Matrix, GEMM_MIN_TOKENS};
pub use ops::{add_assign, add_bias, gelu, layer_norm, softmax};
pub(crate) use order::CHAINS;
pub use pool::in_pool;

#[cfg(test)]
mod tests;
