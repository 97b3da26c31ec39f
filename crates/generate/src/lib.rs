//! One sequence's text generation, as `quill generate` runs it and the Python package's
//! `Model.generate` repeats it: the prompt is evaluated, then each step samples a token from
//! the last logits, turns it into text (whole UTF-8 characters only, stop strings held back
//! until they can no longer match) and evaluates it. The same model, prompt, settings and seed
//! give the same tokens whoever drives the loop.
//!
//! ```no_run
//! use gguf_file::GgufFile;
//! use quill_generate::{GenerateOptions, Generator};
//! use quill_gpt2::{Gpt2Model, SessionOptions};
//! use quill_sampler::SamplerConfig;
//!
//! let file = GgufFile::open("model.gguf")?;
//! let model = Gpt2Model::load(&file)?;
//! let prompt = model.tokenizer.encode("Once upon a time")?;
//! let session = model.session(SessionOptions::default())?;
//! let opts = GenerateOptions { max_tokens: Some(32), ..Default::default() };
//! let mut g = Generator::new(&model, session, SamplerConfig::default(), prompt, &opts)?;
//! let mut text = String::new();
//! while g.step(&mut text)? {}
//! println!("{text} ({:?})", g.stop());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]

use std::time::Instant;

use quill_gpt2::{Gpt2Model, ModelError, Session, StreamDecoder};
use quill_sampler::{Sampler, SamplerConfig, SamplerError};

pub use quill_gpt2::StopFilter;

/// Errors of setting up or running a generation.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Sampler(#[from] SamplerError),
    #[error("the prompt is empty: it has no tokens")]
    EmptyPrompt,
    #[error("the prompt has {n_prompt} tokens, more than the context of {n_ctx}")]
    PromptTooLong { n_prompt: usize, n_ctx: usize },
    #[error("a stop string must not be empty")]
    EmptyStop,
}

/// Why a generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The model produced an end token, by default end-of-text (not part of the output).
    Eos,
    /// The text reached a stop string (cut before it).
    Matched,
    /// `max_tokens` tokens were generated.
    Length,
    /// The session's context is full.
    Context,
    /// The caller ended it ([`Generator::interrupt`]).
    Interrupted,
}

impl Stop {
    /// The name `quill generate --json` reports (OpenAI's `finish_reason` where one exists).
    pub fn name(self) -> &'static str {
        match self {
            Stop::Eos => "eos",
            Stop::Matched => "stop",
            Stop::Length => "length",
            Stop::Context => "context",
            Stop::Interrupted => "interrupted",
        }
    }
}

/// What a generation does besides sampling.
#[derive(Clone, Debug, Default)]
pub struct GenerateOptions {
    /// Tokens to generate at most (`None`: until end of text or the context is full).
    pub max_tokens: Option<usize>,
    /// End when the text contains one of these (the text is cut before it).
    pub stop: Vec<String>,
    /// Never end at an end token: their logits are set to `-inf`.
    pub ignore_eos: bool,
    /// The tokens that end the generation (`None`: the model's end-of-text token).
    pub end_tokens: Option<Vec<u32>>,
}

/// What the next step evaluates.
enum Pending {
    Prompt,
    Token(u32),
}

/// A generation in progress: the session it runs in, its sampler, and the text so far.
pub struct Generator<'m, 'a> {
    model: &'m Gpt2Model<'a>,
    session: Session<'m, 'a>,
    sampler: Sampler,
    prompt: Vec<u32>,
    pending: Pending,
    limit: usize,
    decoder: StreamDecoder,
    filter: StopFilter,
    ids: Vec<u32>,
    piece: String,
    end_tokens: Vec<u32>,
    end_token: Option<u32>,
    stop: Option<Stop>,
    prompt_secs: f64,
    started: Option<Instant>,
    gen_secs: f64,
}

impl<'m, 'a> Generator<'m, 'a> {
    /// Checks the prompt and the settings and builds the sampler; evaluates nothing yet.
    /// `session` continues from its position (a fresh one starts at 0).
    pub fn new(
        model: &'m Gpt2Model<'a>,
        session: Session<'m, 'a>,
        mut sampling: SamplerConfig,
        prompt: Vec<u32>,
        opts: &GenerateOptions,
    ) -> Result<Self, GenerateError> {
        if prompt.is_empty() {
            return Err(GenerateError::EmptyPrompt);
        }
        if session.pos() + prompt.len() > session.n_ctx() {
            return Err(GenerateError::PromptTooLong { n_prompt: prompt.len(), n_ctx: session.n_ctx() });
        }
        if opts.stop.iter().any(String::is_empty) {
            return Err(GenerateError::EmptyStop);
        }
        let end_tokens = match &opts.end_tokens {
            Some(ids) => ids.clone(),
            None => model.tokenizer.eos().into_iter().collect(),
        };
        if opts.ignore_eos {
            sampling.logit_bias.extend(end_tokens.iter().map(|&id| (id, f32::NEG_INFINITY)));
        }
        let sampler = Sampler::new(sampling, model.config.n_vocab)?;
        Ok(Generator {
            model,
            session,
            sampler,
            prompt,
            pending: Pending::Prompt,
            limit: opts.max_tokens.unwrap_or(usize::MAX),
            decoder: StreamDecoder::new(),
            filter: StopFilter::new(&opts.stop),
            ids: Vec::new(),
            piece: String::new(),
            end_tokens,
            end_token: None,
            stop: None,
            prompt_secs: 0.0,
            started: None,
            gen_secs: 0.0,
        })
    }

    /// One step: evaluates what is pending (the prompt first, then the last token), samples
    /// the next token and appends to `out` the text that is now final (often nothing, while a
    /// character or a possible stop string is incomplete). Returns `false` once the generation
    /// has ended (the call that ends it appends the rest of the text).
    pub fn step(&mut self, out: &mut String) -> Result<bool, GenerateError> {
        if self.stop.is_some() {
            return Ok(false);
        }
        let logits = match self.pending {
            Pending::Prompt => {
                let t0 = Instant::now();
                let logits = self.session.prefill(&self.prompt)?;
                self.prompt_secs = t0.elapsed().as_secs_f64();
                self.started = Some(Instant::now());
                for &id in &self.prompt {
                    self.sampler.accept(id);
                }
                logits
            }
            Pending::Token(id) => self.session.decode(id)?,
        };
        if self.ids.len() >= self.limit {
            self.finish(Stop::Length, out);
            return Ok(false);
        }
        let id = self.sampler.sample(logits)?;
        self.sampler.accept(id);
        if self.end_tokens.contains(&id) {
            self.end_token = Some(id);
            self.finish(Stop::Eos, out);
            return Ok(false);
        }
        self.ids.push(id);
        self.piece.clear();
        self.decoder.push(self.model.tokenizer.token_bytes(id), &mut self.piece);
        if self.filter.push(&self.piece, out) {
            // The text ends before the stop string: what follows it is dropped.
            self.end(Stop::Matched);
            return Ok(false);
        }
        // As `quill generate` always did: a full context ends it before the length limit.
        if self.session.pos() >= self.session.n_ctx() {
            self.finish(Stop::Context, out);
            return Ok(false);
        }
        if self.ids.len() >= self.limit {
            self.finish(Stop::Length, out);
            return Ok(false);
        }
        self.pending = Pending::Token(id);
        Ok(true)
    }

    /// Ends the generation now (Ctrl-C), appending the text held back.
    pub fn interrupt(&mut self, out: &mut String) {
        if self.stop.is_none() {
            self.finish(Stop::Interrupted, out);
        }
    }

    fn finish(&mut self, stop: Stop, out: &mut String) {
        self.filter.push(&self.decoder.finish(), out);
        self.filter.finish(out);
        self.end(stop);
    }

    fn end(&mut self, stop: Stop) {
        self.stop = Some(stop);
        self.gen_secs = self.started.map_or(0.0, |t| t.elapsed().as_secs_f64());
    }

    /// Why it ended, once it has.
    pub fn stop(&self) -> Option<Stop> {
        self.stop
    }

    /// The generated tokens (without the prompt or the end-of-text token).
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// The end token that ended it ([`Stop::Eos`]).
    pub fn end_token(&self) -> Option<u32> {
        self.end_token
    }

    /// The prompt's tokens.
    pub fn prompt(&self) -> &[u32] {
        &self.prompt
    }

    pub fn session(&self) -> &Session<'m, 'a> {
        &self.session
    }

    pub fn sampler(&self) -> &Sampler {
        &self.sampler
    }

    /// Seconds the prompt took to evaluate.
    pub fn prompt_secs(&self) -> f64 {
        self.prompt_secs
    }

    /// Seconds from the end of the prompt to the end of the generation.
    pub fn gen_secs(&self) -> f64 {
        self.gen_secs
    }

    /// Decode steps, as `quill generate` reports them: one per generated token but the last
    /// (at least one when any was generated).
    pub fn decode_steps(&self) -> usize {
        let n = self.ids.len();
        n.saturating_sub(1).max(usize::from(n > 0))
    }
}

#[cfg(test)]
mod tests;
