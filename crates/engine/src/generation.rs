//! Requests run to their end on the calling thread: `quill generate` (one prompt, or a file
//! of them) and the Python package's `generate` drive the same engine as the server, one step
//! at a time, and read every sequence through [`SeqText`].

use std::time::Instant;

use quill_gpt2::{Gpt2Model, ModelError};
use quill_sampler::SamplerError;

use crate::engine::{Engine, EngineConfig, EngineError};
use crate::queue::{queue, Client, Inbox, Request, SubmitError};
use crate::stream::{Event, Finish};
use crate::text::{SeqReader, SeqText};

/// Why a generation could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Sampler(#[from] SamplerError),
    #[error(transparent)]
    Submit(#[from] SubmitError),
    #[error("{0}")]
    Engine(String),
    #[error("nothing to generate: no prompt was given")]
    NoPrompts,
    #[error("a stop string must not be empty")]
    EmptyStop,
}

impl From<EngineError> for GenerateError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Model(m) => GenerateError::Model(m),
            e => GenerateError::Engine(e.to_string()),
        }
    }
}

/// One prompt to continue, and the strings that end its text.
#[derive(Clone, Debug, Default)]
pub struct Job {
    pub request: Request,
    /// The text of each completion ends before the first of these.
    pub stop: Vec<String>,
}

/// One completion of one job.
struct Out {
    reader: SeqReader,
    job: usize,
    seed: u64,
}

/// Jobs running on an engine of their own, driven by [`Generation::step`].
pub struct Generation<'m, 'a> {
    engine: Engine<'m, 'a>,
    inbox: Inbox,
    client: Client,
    outs: Vec<Out>,
    events: Vec<Event>,
    tokenizer: &'m quill_gpt2::Tokenizer,
    /// When the first step began, the first token came, the last completion ended.
    first_step: Option<Instant>,
    first_token: Option<Instant>,
    end: Option<Instant>,
    prompt_tokens: Vec<usize>,
}

impl<'m, 'a> Generation<'m, 'a> {
    /// Checks and queues `jobs` (their completions run `cfg.n_parallel` at a time, in order);
    /// evaluates nothing yet. A sampler without a seed gets a fresh one here, so that
    /// [`Generation::seed`] can report it.
    pub fn new(model: &'m Gpt2Model<'a>, cfg: EngineConfig, mut jobs: Vec<Job>) -> Result<Self, GenerateError> {
        if jobs.is_empty() {
            return Err(GenerateError::NoPrompts);
        }
        if jobs.iter().any(|j| j.stop.iter().any(String::is_empty)) {
            return Err(GenerateError::EmptyStop);
        }
        // (job, seed) of each completion, in order.
        let mut meta = Vec::new();
        for (i, j) in jobs.iter_mut().enumerate() {
            for s in &mut j.request.samplers {
                s.validate()?;
                meta.push((i, *s.seed.get_or_insert_with(quill_sampler::fresh_seed)));
            }
        }
        let (client, inbox) = queue(jobs.len());
        let engine = Engine::new(model, EngineConfig { max_queue: jobs.len(), ..cfg }, &inbox)?;
        let prompt_tokens = jobs.iter().map(|j| j.request.prompt.len()).collect();
        let stops: Vec<Vec<String>> = jobs.iter().map(|j| j.stop.clone()).collect();
        let streams = client.submit(jobs.into_iter().map(|j| j.request).collect())?;
        let outs = (streams.into_iter().flatten().zip(meta))
            .map(|(stream, (job, seed))| Out { reader: SeqReader::new(stream, &stops[job]), job, seed })
            .collect();
        Ok(Generation {
            engine,
            inbox,
            client,
            outs,
            events: Vec::new(),
            tokenizer: &model.tokenizer,
            first_step: None,
            first_token: None,
            end: None,
            prompt_tokens,
        })
    }

    /// One engine step (the next token of every running completion, the next chunk of waiting
    /// prompts); hands `on_text(completion, piece)` the text that became final. Returns false
    /// once every completion has ended.
    pub fn step(&mut self, on_text: &mut dyn FnMut(usize, &str)) -> Result<bool, GenerateError> {
        if !self.outs.iter().any(|o| o.reader.is_running()) {
            return Ok(false);
        }
        self.first_step.get_or_insert_with(Instant::now);
        let worked = self.engine.step(&self.inbox);
        let mut piece = String::new();
        let mut running = false;
        for (i, o) in self.outs.iter_mut().enumerate() {
            if !o.reader.is_running() {
                continue;
            }
            piece.clear();
            running |= o.reader.pump(self.tokenizer, &mut self.events, &mut piece);
            if !piece.is_empty() {
                on_text(i, &piece);
            }
            if self.first_token.is_none() && !o.reader.text().ids().is_empty() {
                self.first_token = Some(Instant::now());
            }
        }
        if !running {
            self.end = Some(Instant::now());
        } else if !worked && self.inbox_idle() {
            return Err(GenerateError::Engine("internal error: the engine stopped with sequences unfinished".into()));
        }
        Ok(running)
    }

    fn inbox_idle(&self) -> bool {
        self.engine.running() == 0 && self.client.queue_depth() == 0
    }

    /// Runs every job to its end; returns the text of each completion (in job order, each
    /// job's completions together).
    pub fn run(&mut self) -> Result<Vec<String>, GenerateError> {
        let mut texts = vec![String::new(); self.outs.len()];
        while self.step(&mut |i, piece| texts[i].push_str(piece))? {}
        Ok(texts)
    }

    /// Ends every completion now ([`Finish::Interrupted`]), handing over the text held back.
    pub fn interrupt(&mut self, on_text: &mut dyn FnMut(usize, &str)) {
        for (i, o) in self.outs.iter_mut().enumerate() {
            let mut piece = String::new();
            o.reader.interrupt(&mut piece);
            if !piece.is_empty() {
                on_text(i, &piece);
            }
        }
        self.end.get_or_insert_with(Instant::now);
    }

    /// Completions in all (each job's `samplers.len()`).
    pub fn len(&self) -> usize {
        self.outs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.outs.is_empty()
    }

    /// The job completion `i` belongs to.
    pub fn job_of(&self, i: usize) -> usize {
        self.outs[i].job
    }

    /// The text state of completion `i`: its tokens, why it ended.
    pub fn text(&self, i: usize) -> &SeqText {
        self.outs[i].reader.text()
    }

    /// Why completion `i` ended, once it has.
    pub fn finish(&self, i: usize) -> Option<&Finish> {
        self.text(i).finish()
    }

    /// Why the engine could not run a completion, if it could not run one.
    pub fn aborted(&self) -> Option<&str> {
        self.outs.iter().find_map(|o| o.reader.text().aborted())
    }

    /// The seed of completion `i`'s sampler.
    pub fn seed(&self, i: usize) -> u64 {
        self.outs[i].seed
    }

    /// Prompt tokens of job `j`.
    pub fn prompt_tokens(&self, j: usize) -> usize {
        self.prompt_tokens[j]
    }

    /// Seconds until the first token came (the prompts' evaluation and a first sampling).
    pub fn prompt_secs(&self) -> f64 {
        match (self.first_step, self.first_token) {
            (Some(a), Some(b)) => (b - a).as_secs_f64(),
            _ => 0.0,
        }
    }

    /// Seconds from the first token to the end (or to now, while it runs).
    pub fn gen_secs(&self) -> f64 {
        let end = self.end.unwrap_or_else(Instant::now);
        self.first_token.map_or(0.0, |t| end.saturating_duration_since(t).as_secs_f64())
    }

    /// Bytes of the KV cache (every slot).
    pub fn kv_bytes(&self) -> usize {
        self.engine.kv_bytes_per_slot() * self.engine.config().n_parallel
    }

    /// The engine's settings in force.
    pub fn config(&self) -> EngineConfig {
        self.engine.config()
    }
}
