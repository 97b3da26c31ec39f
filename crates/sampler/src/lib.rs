//! Token samplers with llama.cpp's semantics: greedy, temperature, top-k, top-p, min-p,
//! locally typical sampling, repetition/frequency/presence penalties over the last N tokens,
//! logit bias, and a seeded generator that reproduces a run on every platform.
//!
//! [`Sampler`] runs llama.cpp's default chain (`common/common.h`, without DRY and XTC):
//!
//! ```text
//! logits -> logit-bias -> penalties -> top-k -> typical -> top-p -> min-p -> temperature -> dist
//!                                                                           (temp 0: greedy)
//! ```
//!
//! Each stage is also a public function over [`Candidates`] (see [`stages`]) for callers that
//! want another chain. Buffers are sized to the vocabulary once; sampling allocates nothing.
//!
//! ```
//! use quill_sampler::{Sampler, SamplerConfig};
//! let mut sampler = Sampler::new(SamplerConfig::greedy(), 3)?;
//! assert_eq!(sampler.sample(&[0.5, 2.0, -1.0])?, 1);
//! # Ok::<(), quill_sampler::SamplerError>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod candidates;
mod config;
mod detmath;
mod error;
mod rng;
mod sampler;
pub mod stages;

pub use candidates::{Candidate, Candidates};
pub use config::{SamplerConfig, MAX_REPEAT_LAST_N};
pub use error::SamplerError;
pub use rng::{SplitMix64, Xoshiro256StarStar};
pub use sampler::{fresh_seed, Sampler};
pub use stages::{Penalties, PenaltyHistory};
