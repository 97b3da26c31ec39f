//! Quill: GPT-2 inference from memory-mapped, quantized GGUF weights.
//!
//! This umbrella package re-exports the workspace crates; its `tests/` hold cross-crate tests
//! and its `benches/` the criterion benchmarks.

pub use gguf_file as gguf;
pub use quill_convert as convert;
pub use quill_engine as engine;
pub use quill_gpt2 as gpt2;
pub use quill_kernels as kernels;
pub use quill_quant as quant;
pub use quill_sampler as sampler;
