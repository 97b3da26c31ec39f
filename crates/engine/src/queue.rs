//! Requests in, streams out: the bounded waiting queue between clients (any thread) and the
//! engine loop (its own thread), and the engine's counters.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use quill_sampler::SamplerConfig;

use crate::stream::{SeqStream, Shared, MAX_TOP_LOGPROBS};

/// One prompt and how to continue it: `samplers.len()` completions (OpenAI's `n`), which share
/// the prompt's evaluation.
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// Token ids, at least one.
    pub prompt: Vec<u32>,
    /// Tokens to generate at most per completion (fewer if the context fills up first).
    pub max_tokens: usize,
    /// One sampler per completion; give each its own seed.
    pub samplers: Vec<SamplerConfig>,
    /// Log-probability of each generated token and this many alternatives
    /// (at most [`MAX_TOP_LOGPROBS`]); `None` computes none.
    pub logprobs: Option<usize>,
    /// Score the prompt too: its tokens come back as [`crate::Event::Prompt`] first.
    pub prompt_logprobs: bool,
    /// Never end at an end token: their logits are set to `-inf`, so they are never sampled
    /// (llama.cpp's `ignore_eos`).
    pub ignore_eos: bool,
    /// The tokens that end a completion ([`crate::Finish::Eos`]; not sent as tokens).
    /// `None`: the model's end-of-text token.
    pub end_tokens: Option<Vec<u32>>,
}

/// What the engine accepts, known once it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Sequences run at once (KV slots).
    pub n_parallel: usize,
    /// Positions per sequence.
    pub n_ctx: usize,
    pub n_vocab: usize,
    /// Prompts that may wait for a slot.
    pub max_queue: usize,
    /// Bytes of KV cache per slot.
    pub kv_bytes_per_slot: usize,
    /// The KV cache's storage.
    pub kv_type: quill_gpt2::KvType,
}

/// Why a request was not queued.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SubmitError {
    #[error("the server is still loading the model")]
    Loading,
    #[error("the server is shutting down")]
    Closed,
    #[error("the queue is full: {waiting} prompts are waiting (at most {max})")]
    QueueFull { waiting: usize, max: usize },
    #[error("{n} prompts in one request, more than can ever wait at once ({max}, --queue)")]
    TooManyPrompts { n: usize, max: usize },
    #[error("the prompt is empty: it has no tokens")]
    EmptyPrompt,
    #[error("the prompt has {n} tokens, more than the context of {n_ctx}")]
    PromptTooLong { n: usize, n_ctx: usize },
    #[error("token id {id} is outside the vocabulary ({n_vocab} tokens)")]
    BadToken { id: u32, n_vocab: usize },
    #[error("n = {n} completions need {n} sequences at once; the server runs {max} (--parallel)")]
    TooManyChoices { n: usize, max: usize },
    #[error("n must be at least 1")]
    NoChoices,
    #[error("logprobs must be at most {max}, got {n}")]
    TooManyLogprobs { n: usize, max: usize },
    #[error("{0}")]
    Sampler(#[from] quill_sampler::SamplerError),
}

/// A request waiting for slots, with the channels of its completions.
pub(crate) struct Group {
    pub req: Request,
    pub streams: Vec<Arc<Shared>>,
}

impl Group {
    /// Whether every completion's receiver is gone.
    pub fn cancelled(&self) -> bool {
        self.streams.iter().all(|s| s.is_cancelled())
    }
}

/// Counters of the engine, read by `/metrics`.
#[derive(Default, Debug)]
pub struct Stats {
    /// Forward passes run.
    pub steps: AtomicU64,
    /// Tokens evaluated (prompt chunks and decode rows).
    pub batch_tokens: AtomicU64,
    /// Tokens in the last forward pass.
    pub last_batch: AtomicUsize,
    /// Prompt tokens evaluated.
    pub prompt_tokens: AtomicU64,
    /// Tokens generated (sampled).
    pub generated_tokens: AtomicU64,
    /// Sequences holding a slot.
    pub running: AtomicUsize,
    /// Sequences finished (any reason), and those cancelled by their client.
    pub finished: AtomicU64,
    pub cancelled: AtomicU64,
    /// Prefix cache: prompts looked up, prompts that reused a cached prefix, and the prompt
    /// tokens those did not evaluate again.
    pub prefix_lookups: AtomicU64,
    pub prefix_hits: AtomicU64,
    pub prefix_tokens_reused: AtomicU64,
}

struct QState {
    groups: VecDeque<Group>,
    closed: bool,
}

pub(crate) struct Inner {
    q: Mutex<QState>,
    cv: Condvar,
    max_queue: usize,
    limits: OnceLock<Limits>,
    abort: AtomicBool,
    pub(crate) stats: Stats,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, QState> {
        self.q.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A new queue holding at most `max_queue` waiting prompts: the [`Client`] side submits, the
/// [`Inbox`] side goes to [`crate::Engine::run`].
pub fn queue(max_queue: usize) -> (Client, Inbox) {
    let inner = Arc::new(Inner {
        q: Mutex::new(QState { groups: VecDeque::with_capacity(max_queue), closed: false }),
        cv: Condvar::new(),
        max_queue,
        limits: OnceLock::new(),
        abort: AtomicBool::new(false),
        stats: Stats::default(),
    });
    (Client { inner: inner.clone() }, Inbox { inner })
}

/// Submits requests to the engine; cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl Client {
    /// Queues `reqs` (all or none) and returns, per request, the streams of its completions.
    pub fn submit(&self, reqs: Vec<Request>) -> Result<Vec<Vec<SeqStream>>, SubmitError> {
        let lim = *self.inner.limits.get().ok_or(SubmitError::Loading)?;
        if reqs.len() > self.inner.max_queue {
            return Err(SubmitError::TooManyPrompts { n: reqs.len(), max: self.inner.max_queue });
        }
        for r in &reqs {
            check(r, &lim)?;
        }
        let mut q = self.inner.lock();
        if q.closed {
            return Err(SubmitError::Closed);
        }
        let waiting = q.groups.len();
        if waiting + reqs.len() > self.inner.max_queue {
            return Err(SubmitError::QueueFull { waiting, max: self.inner.max_queue });
        }
        let mut out = Vec::with_capacity(reqs.len());
        for req in reqs {
            // Room for every event the sequence can send: the buffer never grows in a step.
            let room = req.max_tokens.min(lim.n_ctx) + 1 + if req.prompt_logprobs { req.prompt.len() } else { 0 };
            let streams: Vec<Arc<Shared>> = req.samplers.iter().map(|_| Shared::with_capacity(room)).collect();
            out.push(streams.iter().map(|s| SeqStream::new(s.clone())).collect());
            q.groups.push_back(Group { req, streams });
        }
        drop(q);
        self.inner.cv.notify_all();
        Ok(out)
    }

    /// What the engine accepts, once it runs.
    pub fn limits(&self) -> Option<Limits> {
        self.inner.limits.get().copied()
    }

    /// Prompts waiting for a slot.
    pub fn queue_depth(&self) -> usize {
        self.inner.lock().groups.len()
    }

    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// Refuses new requests from now on; the engine finishes what it has, then its loop ends.
    pub fn close(&self) {
        self.inner.lock().closed = true;
        self.inner.cv.notify_all();
    }

    /// Ends every sequence now ([`crate::Finish::Aborted`]) and stops the engine loop.
    pub fn abort(&self) {
        self.inner.abort.store(true, Ordering::SeqCst);
        self.close();
    }

    /// Whether nothing waits and nothing runs.
    pub fn is_idle(&self) -> bool {
        self.inner.lock().groups.is_empty() && self.inner.stats.running.load(Ordering::SeqCst) == 0
    }
}

fn check(r: &Request, lim: &Limits) -> Result<(), SubmitError> {
    if r.prompt.is_empty() {
        return Err(SubmitError::EmptyPrompt);
    }
    if r.prompt.len() > lim.n_ctx {
        return Err(SubmitError::PromptTooLong { n: r.prompt.len(), n_ctx: lim.n_ctx });
    }
    if let Some(&id) = r.prompt.iter().find(|&&id| id as usize >= lim.n_vocab) {
        return Err(SubmitError::BadToken { id, n_vocab: lim.n_vocab });
    }
    let n = r.samplers.len();
    if n == 0 {
        return Err(SubmitError::NoChoices);
    }
    if n > lim.n_parallel {
        return Err(SubmitError::TooManyChoices { n, max: lim.n_parallel });
    }
    if let Some(&id) = r.end_tokens.iter().flatten().find(|&&id| id as usize >= lim.n_vocab) {
        return Err(SubmitError::BadToken { id, n_vocab: lim.n_vocab });
    }
    if let Some(k) = r.logprobs.filter(|&k| k > MAX_TOP_LOGPROBS) {
        return Err(SubmitError::TooManyLogprobs { n: k, max: MAX_TOP_LOGPROBS });
    }
    for s in &r.samplers {
        s.validate()?;
        if let Some(&(token, _)) = s.logit_bias.iter().find(|(t, _)| *t as usize >= lim.n_vocab) {
            return Err(SubmitError::Sampler(quill_sampler::SamplerError::LogitBiasToken {
                token,
                n_vocab: lim.n_vocab,
            }));
        }
    }
    Ok(())
}

/// The engine's side of the queue.
pub struct Inbox {
    pub(crate) inner: Arc<Inner>,
}

impl Inbox {
    pub(crate) fn set_limits(&self, lim: Limits) {
        let _ = self.inner.limits.set(lim);
    }

    /// Takes the first waiting request if it needs at most `free` slots; drops cancelled ones.
    pub(crate) fn pop_if(&self, free: usize) -> Option<Group> {
        let mut q = self.inner.lock();
        while q.groups.front().is_some_and(Group::cancelled) {
            q.groups.pop_front();
            self.inner.stats.cancelled.fetch_add(1, Ordering::Relaxed);
        }
        if q.groups.front()?.streams.len() <= free {
            return q.groups.pop_front();
        }
        None
    }

    /// Waits up to `timeout` for a request (or for the queue to close).
    pub(crate) fn wait(&self, timeout: Duration) {
        let q = self.inner.lock();
        if q.groups.is_empty() && !q.closed {
            let _ = self.inner.cv.wait_timeout(q, timeout);
        }
    }

    /// Whether the queue is closed and empty (the loop may end once idle).
    pub(crate) fn is_closed_and_empty(&self) -> bool {
        let q = self.inner.lock();
        q.closed && q.groups.is_empty()
    }

    pub(crate) fn aborted(&self) -> bool {
        self.inner.abort.load(Ordering::SeqCst)
    }

    /// Ends every waiting request with `Aborted`.
    pub(crate) fn abort_waiting(&self, why: &str) {
        let groups: Vec<Group> = self.inner.lock().groups.drain(..).collect();
        for g in groups {
            for s in g.streams {
                s.send(crate::Event::Done(crate::Finish::Aborted(why.to_owned())));
            }
        }
    }

    pub(crate) fn stats(&self) -> &Stats {
        &self.inner.stats
    }
}
