//! Many sequences on one GPT-2 (continuous batching): a pool of KV slots (`--parallel N`
//! slots of `--ctx` positions), a scheduler that runs one step at a time (the next token of
//! every running sequence, plus fixed-position chunks of waiting prompts, in one forward pass),
//! per-sequence samplers, and a channel per sequence back to its client.
//!
//! A sequence's tokens do not depend on what else runs: the weight matmuls are row-invariant,
//! every other operation is applied per row or per sequence, prompts are cut into chunks at
//! the same positions whatever the load, and each sequence has its own sampler and generator.
//!
//! ```no_run
//! use quill_engine::{queue, Engine, EngineConfig, Event, Request};
//! # fn run(model: &quill_gpt2::Gpt2Model<'_>) -> Result<(), Box<dyn std::error::Error>> {
//! let (client, inbox) = queue(64);
//! let mut engine = Engine::new(model, EngineConfig::default(), &inbox)?;
//! let prompt = model.tokenizer.encode("Hello")?;
//! let req = Request {
//!     prompt,
//!     max_tokens: 16,
//!     samplers: vec![quill_sampler::SamplerConfig::greedy()],
//!     ..Request::default()
//! };
//! let mut streams = client.submit(vec![req])?;
//! while engine.step(&inbox) {}
//! while let Some(ev) = streams[0][0].recv_blocking() {
//!     if let Event::Token(t) = ev {
//!         print!("{}", String::from_utf8_lossy(model.tokenizer.token_bytes(t.id)));
//!     }
//! }
//! # Ok(()) }
//! ```

mod engine;
mod generation;
mod logprobs;
mod queue;
mod stream;
mod text;

pub use engine::{Engine, EngineConfig, EngineError};
pub use generation::{GenerateError, Generation, Job};
pub use queue::{queue, Client, Inbox, Limits, Request, Stats, SubmitError};
pub use stream::{Event, Finish, RecvMany, SeqStream, TokenOut, MAX_TOP_LOGPROBS};
pub use text::{SeqReader, SeqText};
