//! The stages, one per file, each a function over [`crate::Candidates`]. [`crate::Sampler`]
//! chains them in llama.cpp's default order; they are public so that a caller can compose a
//! different chain. Every stage after [`logit_bias`] and [`penalties`] expects
//! [`crate::Candidates::sanitize`] to have run.

mod dist;
mod logit_bias;
mod mass;
mod min_p;
mod penalties;
mod temperature;
mod top_k;
mod top_p;
mod typical;

pub use dist::{dist, greedy};
pub use logit_bias::{apply_logit_bias, logit_bias};
pub use min_p::min_p;
pub use penalties::{apply_penalties, penalties, Penalties, PenaltyHistory};
pub use temperature::temperature;
pub use top_k::top_k;
pub use top_p::top_p;
pub use typical::typical;
