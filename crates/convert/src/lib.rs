//! Model conversion, kept apart from the runtime (`quill-gpt2` runs models and never reads
//! safetensors): a Hugging Face GPT-2 checkpoint or a GGUF in, a (quantized) GGUF with
//! llama.cpp's names, metadata and per-tensor types out; and seeded synthetic checkpoints for
//! tests and benchmarks.
//!
//! ```no_run
//! use quill_convert::{convert, ConvertOptions};
//! use quill_quant::FileType;
//!
//! let opts = ConvertOptions { file_type: FileType::from_name("q4_0")?, overrides: Vec::new() };
//! convert("gpt2".as_ref(), "gpt2-q4_0.gguf".as_ref(), &opts, &|_, _, _| {})?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod convert;
pub mod hf;
pub mod inspect;
pub mod synth;

pub use convert::{
    convert, file_type_of, tokenizer_from_hf, ConvertError, ConvertOptions, ConvertReport, TensorReport,
};
