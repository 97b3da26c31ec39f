//! The GPT-2 model: config from GGUF metadata, weights as zero-copy views into the mapping, a
//! session holding the KV cache and every activation buffer, batched prefill and one-token
//! decode, and GPT-2's byte-level BPE tokenizer.
//!
//! ```no_run
//! use gguf_file::GgufFile;
//! use quill_gpt2::{Gpt2Model, SessionOptions};
//!
//! let file = GgufFile::open("model.gguf")?;
//! let model = Gpt2Model::load(&file)?;
//! let ids = model.tokenizer.encode("Hello")?;
//! let mut session = model.session(SessionOptions::default())?;
//! let logits = session.prefill(&ids)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod batch;
mod config;
pub mod default_model;
mod error;
mod forward;
mod model;
pub mod perplexity;
pub mod score;
mod tokenizer;
mod weights;

pub use batch::{Batch, BatchOptions, BatchSession, SpanLogits};
pub use config::Gpt2Config;
pub use error::{ModelError, TokenizerError};
pub use model::{Gpt2Model, KvType, Session, SessionOptions};
pub use tokenizer::{
    byte_to_char, StopFilter, StreamDecoder, Tokenizer, TOKEN_TYPE_CONTROL, TOKEN_TYPE_NORMAL, TOKEN_TYPE_USER_DEFINED,
};
pub use weights::{Gpt2Weights, Layer};
