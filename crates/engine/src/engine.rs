//! The engine: a KV slot pool, the scheduler (one decode token for every running sequence,
//! then fixed-position chunks of waiting prompts, in one forward pass), and per-sequence
//! sampling.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use quill_gpt2::{Batch, BatchOptions, BatchSession, Gpt2Model, KvType, ModelError, SpanLogits};
use quill_sampler::Sampler;
use rayon::prelude::*;

use crate::logprobs;
use crate::queue::{Group, Inbox, Limits};
use crate::stream::{Event, Finish, Shared, TokenOut};

/// Settings of an [`Engine`].
#[derive(Clone, Copy, Debug)]
pub struct EngineConfig {
    /// Sequences run at once: KV slots (`--parallel`).
    pub n_parallel: usize,
    /// Positions per slot (`--ctx`); 0 means the model's context.
    pub n_ctx: usize,
    /// Prefill chunk: prompts are evaluated in pieces `[k * chunk, (k + 1) * chunk)`, cut at
    /// the same positions whatever else runs, so that a prompt's numbers never depend on load,
    /// and a long prompt delays the others by one chunk per step at most.
    pub chunk: usize,
    /// Prompts that may wait for a slot (`--queue`).
    pub max_queue: usize,
    pub kv_type: KvType,
    /// Row-invariant weight products: a sequence's numbers do not depend on the others in a
    /// step (batch invariance). Off only where one sequence runs alone (`quill generate`),
    /// which may then take the fastest one-row kernels.
    pub row_invariant: bool,
    /// Automatic prefix cache (with `row_invariant` only): a finished sequence leaves its
    /// prompt's KV in its slot, and a new prompt that begins with the same whole chunks starts
    /// after them in that slot (free slots are reused least recently used first).
    pub prefix_cache: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            n_parallel: 4,
            n_ctx: 0,
            chunk: 256,
            max_queue: 64,
            kv_type: KvType::F16,
            row_invariant: true,
            prefix_cache: true,
        }
    }
}

/// Why an engine could not be built.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("--parallel must be at least 1")]
    NoSlots,
    #[error("--chunk must be at least 1")]
    NoChunk,
    #[error("--queue must be at least 1")]
    NoQueue,
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// A running sequence, in its slot.
struct Seq {
    stream: Arc<Shared>,
    sampler: Sampler,
    /// Positions its slot will hold after the step being built.
    pos: usize,
    /// The token to evaluate next (a sequence whose prompt is still being evaluated has none).
    next: Option<u32>,
    /// Its prompt is still being evaluated (it cannot leave alone: the prompt is shared).
    prefilling: bool,
    generated: usize,
    max_tokens: usize,
    logprobs: Option<usize>,
    /// The tokens that end it (masked when the request ignores them).
    end_tokens: Vec<u32>,
    /// Row of this step's logits block to sample from.
    row: Option<usize>,
    /// Sampled in this step.
    sampled: bool,
    finish: Option<Finish>,
    out: TokenOut,
}

/// A prompt being evaluated, in its first member's slot; the others get a copy at the end.
struct Prefill {
    prompt: Vec<u32>,
    done: usize,
    /// Slots of its completions; the first evaluates the prompt.
    members: Vec<usize>,
    /// `[prompt.len()]` scored prompt tokens, when asked for.
    scores: Option<Vec<TokenOut>>,
    /// Set when this step evaluates the end of the prompt.
    ends: bool,
}

/// Who a row of logits in a step belongs to.
#[derive(Clone, Copy, Debug)]
enum Row {
    Decode(usize),
    /// Logits at prompt position `pos` of prefill `pf` (in step order).
    Prompt {
        pf: usize,
        pos: usize,
    },
}

/// Many sequences on one model. [`Engine::run`] serves a queue until it closes; tests may
/// drive [`Engine::step`] themselves.
pub struct Engine<'m, 'a> {
    model: &'m Gpt2Model<'a>,
    session: BatchSession<'m, 'a>,
    cfg: EngineConfig,
    slots: Vec<Option<Seq>>,
    free: Vec<usize>,
    prefills: VecDeque<Prefill>,
    batch: Batch,
    rows: Vec<Row>,
    /// Per slot, the prompt tokens whose KV it holds from position 0 (prefix cache).
    cached: Vec<Vec<u32>>,
    /// Per slot, when it was last released (the least recently used free slot goes first).
    last_used: Vec<u64>,
    clock: u64,
}

impl<'m, 'a> Engine<'m, 'a> {
    /// An engine on `model`, serving requests from `inbox`'s queue (which learns the limits).
    pub fn new(model: &'m Gpt2Model<'a>, cfg: EngineConfig, inbox: &Inbox) -> Result<Self, EngineError> {
        if cfg.n_parallel == 0 {
            return Err(EngineError::NoSlots);
        }
        if cfg.chunk == 0 {
            return Err(EngineError::NoChunk);
        }
        if cfg.max_queue == 0 {
            return Err(EngineError::NoQueue);
        }
        let n_ctx = if cfg.n_ctx == 0 { model.config.n_ctx } else { cfg.n_ctx };
        let chunk = cfg.chunk.min(n_ctx);
        // A chunk always fits beside the decode rows of every other slot: no prompt starves.
        let n_batch = chunk + cfg.n_parallel;
        let session = model.batch_session(BatchOptions {
            n_seq: cfg.n_parallel,
            n_ctx,
            n_batch,
            logit_rows: cfg.n_parallel.max(16),
            kv_type: cfg.kv_type,
            row_invariant: cfg.row_invariant,
        })?;
        inbox.set_limits(Limits {
            n_parallel: cfg.n_parallel,
            n_ctx,
            n_vocab: model.config.n_vocab,
            max_queue: cfg.max_queue,
            kv_bytes_per_slot: session.kv_bytes_per_seq(),
            kv_type: cfg.kv_type,
        });
        Ok(Engine {
            model,
            session,
            cfg: EngineConfig { n_ctx, chunk, ..cfg },
            slots: (0..cfg.n_parallel).map(|_| None).collect(),
            free: (0..cfg.n_parallel).rev().collect(),
            prefills: VecDeque::with_capacity(cfg.n_parallel),
            batch: Batch::with_capacity(n_batch, cfg.n_parallel),
            rows: Vec::with_capacity(n_batch),
            cached: vec![Vec::new(); cfg.n_parallel],
            last_used: vec![0; cfg.n_parallel],
            clock: 0,
        })
    }

    /// The settings in force (context and chunk resolved).
    pub fn config(&self) -> EngineConfig {
        self.cfg
    }

    /// Bytes of KV cache per slot.
    pub fn kv_bytes_per_slot(&self) -> usize {
        self.session.kv_bytes_per_seq()
    }

    /// Sequences holding a slot.
    pub fn running(&self) -> usize {
        self.cfg.n_parallel - self.free.len()
    }

    /// Serves `inbox` until it is closed and everything has finished, or until it is aborted.
    pub fn run(&mut self, inbox: &Inbox) {
        loop {
            if inbox.aborted() {
                self.abort_all("the server is shutting down", inbox);
                inbox.abort_waiting("the server is shutting down");
                return;
            }
            let worked = match catch_unwind(AssertUnwindSafe(|| self.step(inbox))) {
                Ok(worked) => worked,
                Err(_) => {
                    // A bug, not a request's fault: end what ran, keep serving.
                    self.abort_all("internal error in the engine (see the server log)", inbox);
                    true
                }
            };
            if !worked {
                if self.running() == 0 && inbox.is_closed_and_empty() {
                    return;
                }
                inbox.wait(Duration::from_millis(50));
            }
        }
    }

    /// One scheduling step: drops cancelled sequences, admits waiting requests while slots
    /// are free, evaluates one token of every running sequence and the next chunk of waiting
    /// prompts in one forward pass, samples, and frees the slots of finished sequences.
    /// Returns false when there was nothing to do.
    pub fn step(&mut self, inbox: &Inbox) -> bool {
        let stats = inbox.stats();
        self.drop_cancelled(inbox);
        while let Some(g) = inbox.pop_if(self.free.len()) {
            self.admit(g, inbox);
        }
        stats.running.store(self.running(), Ordering::SeqCst);
        let prompt_tokens = self.build_batch(inbox);
        if self.batch.is_empty() {
            stats.running.store(self.running(), Ordering::SeqCst);
            return false;
        }
        stats.prompt_tokens.fetch_add(prompt_tokens as u64, Ordering::Relaxed);
        let n_tokens = self.batch.n_tokens();
        let v = self.model.config.n_vocab;
        let k = Consts { n_ctx: self.cfg.n_ctx, n_vocab: v };
        let (rows, prefills, slots) = (&self.rows, &mut self.prefills, &mut self.slots);
        let result = self.session.forward(&self.batch, &mut |first, block| {
            on_logits(rows, prefills, slots, k, first, block);
        });
        if let Err(e) = result {
            // Only an engine bug builds a bad batch: end its sequences rather than panic.
            self.abort_all(&format!("internal error: {e}"), inbox);
            return true;
        }
        stats.steps.fetch_add(1, Ordering::Relaxed);
        stats.batch_tokens.fetch_add(n_tokens as u64, Ordering::Relaxed);
        stats.last_batch.store(n_tokens, Ordering::Relaxed);
        self.after_forward(inbox);
        stats.running.store(self.running(), Ordering::SeqCst);
        true
    }

    fn admit(&mut self, g: Group, inbox: &Inbox) {
        let Group { req, streams } = g;
        let n = streams.len();
        let (members, reuse) = self.take_slots(&req.prompt, n, req.prompt_logprobs, inbox);
        let end_tokens = match &req.end_tokens {
            Some(ids) => ids.clone(),
            None => self.model.tokenizer.eos().into_iter().collect(),
        };
        for ((&slot, stream), mut cfg) in members.iter().zip(streams).zip(req.samplers) {
            if req.ignore_eos {
                cfg.logit_bias.extend(end_tokens.iter().map(|&id| (id, f32::NEG_INFINITY)));
            }
            let mut sampler = match Sampler::new(cfg, self.model.config.n_vocab) {
                Ok(s) => s,
                Err(e) => {
                    // Checked on submit; kept for safety.
                    stream.send(Event::Done(Finish::Aborted(e.to_string())));
                    self.release(slot);
                    continue;
                }
            };
            for &id in &req.prompt {
                sampler.accept(id);
            }
            if slot == members[0] && reuse > 0 {
                // take_slots bounded `reuse` by what the slot holds.
                self.session.truncate_seq(slot, reuse).expect("the slot holds the cached prefix");
                self.cached[slot].truncate(reuse);
            } else {
                self.session.clear_seq(slot);
                self.cached[slot].clear();
            }
            self.slots[slot] = Some(Seq {
                stream,
                sampler,
                pos: 0,
                next: None,
                prefilling: true,
                generated: 0,
                max_tokens: req.max_tokens,
                logprobs: req.logprobs,
                end_tokens: end_tokens.clone(),
                row: None,
                sampled: false,
                finish: None,
                out: TokenOut::new(0),
            });
        }
        let first = members[0];
        let members: Vec<usize> = members.into_iter().filter(|&s| self.slots[s].is_some()).collect();
        if members.is_empty() {
            return;
        }
        // Only the slot that held the prefix starts after it.
        let reuse = if members[0] == first { reuse } else { 0 };
        if req.max_tokens == 0 && !req.prompt_logprobs {
            for &s in &members {
                self.finish(s, Finish::Length, inbox);
            }
            return;
        }
        let scores = req.prompt_logprobs.then(|| {
            let mut v = Vec::with_capacity(req.prompt.len());
            v.push(TokenOut { logprob: f32::NAN, ..TokenOut::new(req.prompt[0]) });
            v
        });
        self.prefills.push_back(Prefill { prompt: req.prompt, done: reuse, members, scores, ends: false });
    }

    /// Whether finished sequences leave their prompt for the next ones.
    fn cache_on(&self) -> bool {
        self.cfg.prefix_cache && self.cfg.row_invariant
    }

    /// Takes `n` free slots for a prompt: first the one holding the longest reusable prefix of
    /// it (whole chunks, at least one token left to evaluate, none when the prompt is to be
    /// scored), else the least recently used; returns them and the positions reused.
    fn take_slots(&mut self, prompt: &[u32], n: usize, scored: bool, inbox: &Inbox) -> (Vec<usize>, usize) {
        let (mut reuse, mut best) = (0, None);
        if self.cache_on() && !scored {
            let stats = inbox.stats();
            stats.prefix_lookups.fetch_add(1, Ordering::Relaxed);
            for (i, &slot) in self.free.iter().enumerate() {
                let usable = self.reusable(slot, prompt);
                if usable > reuse {
                    (reuse, best) = (usable, Some(i));
                }
            }
            if reuse > 0 {
                stats.prefix_hits.fetch_add(1, Ordering::Relaxed);
                stats.prefix_tokens_reused.fetch_add(reuse as u64, Ordering::Relaxed);
            }
        }
        let mut members = Vec::with_capacity(n);
        if let Some(i) = best {
            members.push(self.free.swap_remove(i));
        }
        while members.len() < n {
            let lru = (0..self.free.len())
                .min_by_key(|&i| self.last_used[self.free[i]])
                .expect("pop_if checked the free slots");
            members.push(self.free.swap_remove(lru));
        }
        (members, reuse)
    }

    /// Positions of `prompt` that `slot` holds and another sequence may take: the common
    /// prefix with its cached prompt, in whole chunks, leaving the last token to evaluate.
    fn reusable(&self, slot: usize, prompt: &[u32]) -> usize {
        let chunk = self.cfg.chunk;
        let common = self.cached[slot].iter().zip(prompt).take_while(|(a, b)| a == b).count();
        common.min(prompt.len() - 1).min(self.session.seq_len(slot)) / chunk * chunk
    }

    /// Before prefill `pf_i` evaluates its next chunk: if another slot (running or free) holds
    /// more of its prompt in whole chunks, copies those positions instead.
    fn reuse_cached(&mut self, pf_i: usize, inbox: &Inbox) {
        let pf = &self.prefills[pf_i];
        if !self.cache_on() || pf.scores.is_some() {
            return;
        }
        let (chunk, me) = (self.cfg.chunk, pf.members[0]);
        let most = (pf.prompt.len() - 1) / chunk * chunk;
        if pf.done + chunk > most {
            return;
        }
        let mut best = (pf.done, None);
        for (slot, cached) in self.cached.iter().enumerate() {
            if slot == me || cached.len() < best.0 + chunk {
                continue;
            }
            let usable = self.reusable(slot, &pf.prompt);
            if usable > best.0 {
                best = (usable, Some(slot));
            }
        }
        let (usable, Some(src)) = best else { return };
        if self.session.copy_seq(src, me, usable).is_err() {
            return; // never: a slot's cached tokens are positions it holds
        }
        let stats = inbox.stats();
        let pf = &mut self.prefills[pf_i];
        if pf.done == 0 {
            stats.prefix_hits.fetch_add(1, Ordering::Relaxed);
        }
        stats.prefix_tokens_reused.fetch_add((usable - pf.done) as u64, Ordering::Relaxed);
        pf.done = usable;
        let cached = &mut self.cached[me];
        cached.clear();
        cached.extend_from_slice(&pf.prompt[..usable]);
    }

    /// Frees `slot`; with the prefix cache its KV stays for a later prompt.
    fn release(&mut self, slot: usize) {
        self.clock += 1;
        self.last_used[slot] = self.clock;
        if !self.cache_on() {
            self.session.clear_seq(slot);
            self.cached[slot].clear();
        }
        self.free.push(slot);
    }

    /// Decode rows of every running sequence, then prompt chunks while they fit; returns the
    /// number of prompt tokens.
    fn build_batch(&mut self, inbox: &Inbox) -> usize {
        self.batch.clear();
        self.rows.clear();
        for (slot, seq) in self.slots.iter_mut().enumerate() {
            let Some(seq) = seq else { continue };
            if let Some(id) = seq.next.take() {
                self.batch.push(slot, seq.pos, &[id], SpanLogits::Last);
                self.rows.push(Row::Decode(slot));
                seq.pos += 1;
            }
        }
        let budget = self.session.n_batch();
        let chunk = self.cfg.chunk;
        let mut prompt_tokens = 0;
        for pf_i in 0..self.prefills.len() {
            self.reuse_cached(pf_i, inbox);
            let pf = &mut self.prefills[pf_i];
            let len = pf.prompt.len();
            let end = ((pf.done / chunk + 1) * chunk).min(len);
            if self.batch.n_tokens() + (end - pf.done) > budget {
                break; // delayed, never re-cut
            }
            pf.ends = end == len;
            let logits = match (pf.scores.is_some(), pf.ends) {
                (true, _) => SpanLogits::From(0),
                (false, true) => SpanLogits::Last,
                (false, false) => SpanLogits::None,
            };
            self.batch.push(pf.members[0], pf.done, &pf.prompt[pf.done..end], logits);
            let first_row = match logits {
                SpanLogits::From(_) => pf.done,
                SpanLogits::Last => end - 1,
                SpanLogits::None => end,
            };
            for pos in first_row..end {
                self.rows.push(Row::Prompt { pf: pf_i, pos });
            }
            prompt_tokens += end - pf.done;
            pf.done = end;
        }
        prompt_tokens
    }

    /// Prompts that ended this step: their cache goes to every member; finished sequences
    /// end and free their slots.
    fn after_forward(&mut self, inbox: &Inbox) {
        let stats = inbox.stats();
        if self.cache_on() {
            // What each prompt has evaluated so far may serve the others from now on.
            for pf in &self.prefills {
                let cached = &mut self.cached[pf.members[0]];
                if cached.len() < pf.done {
                    cached.clear();
                    cached.extend_from_slice(&pf.prompt[..pf.done]);
                }
            }
        }
        let mut i = 0;
        while i < self.prefills.len() {
            if !self.prefills[i].ends {
                i += 1;
                continue;
            }
            let pf = self.prefills.remove(i).expect("in range");
            let len = pf.prompt.len();
            if self.cache_on() {
                for &m in &pf.members {
                    self.cached[m].clone_from(&pf.prompt);
                }
            }
            for &m in &pf.members[1..] {
                if let Err(e) = self.session.copy_seq(pf.members[0], m, len) {
                    if let Some(seq) = self.slots[m].as_mut() {
                        seq.finish = Some(Finish::Aborted(format!("internal error: {e}")));
                    }
                }
            }
        }
        let mut sampled = 0;
        for slot in 0..self.slots.len() {
            let Some(seq) = self.slots[slot].as_mut() else { continue };
            seq.row = None;
            if std::mem::take(&mut seq.sampled) {
                sampled += 1;
            }
            if let Some(f) = seq.finish.take() {
                stats.finished.fetch_add(1, Ordering::Relaxed);
                self.finish(slot, f, inbox);
            }
        }
        stats.generated_tokens.fetch_add(sampled, Ordering::Relaxed);
    }

    /// Ends the sequence in `slot` and frees the slot. The `running` counter is updated before
    /// the client hears of the end, so that a client that has seen its request finish reads
    /// counters that include it.
    fn finish(&mut self, slot: usize, why: Finish, inbox: &Inbox) {
        if let Some(seq) = self.slots[slot].take() {
            self.release(slot);
            inbox.stats().running.store(self.running(), Ordering::SeqCst);
            seq.stream.send(Event::Done(why));
        }
    }

    /// Frees the slots of sequences whose client is gone (a prompt being evaluated stops when
    /// all its completions are gone).
    fn drop_cancelled(&mut self, inbox: &Inbox) {
        let stats = inbox.stats();
        let mut i = 0;
        while i < self.prefills.len() {
            let pf = &self.prefills[i];
            let gone = pf.members.iter().all(|&m| self.slots[m].as_ref().is_none_or(|s| s.stream.is_cancelled()));
            if gone {
                let pf = self.prefills.remove(i).expect("in range");
                for m in pf.members {
                    if self.slots[m].take().is_some() {
                        stats.cancelled.fetch_add(1, Ordering::Relaxed);
                        self.release(m);
                    }
                }
            } else {
                i += 1;
            }
        }
        for slot in 0..self.slots.len() {
            if self.slots[slot].as_ref().is_some_and(|s| s.stream.is_cancelled() && !s.prefilling) {
                stats.cancelled.fetch_add(1, Ordering::Relaxed);
                self.slots[slot] = None;
                self.release(slot);
            }
        }
    }

    /// Ends every sequence with [`Finish::Aborted`].
    fn abort_all(&mut self, why: &str, inbox: &Inbox) {
        self.prefills.clear();
        for slot in 0..self.slots.len() {
            self.finish(slot, Finish::Aborted(why.to_owned()), inbox);
        }
    }
}

/// What sampling needs to know of the model and the slots.
#[derive(Clone, Copy)]
struct Consts {
    n_ctx: usize,
    n_vocab: usize,
}

/// Handles a block of logits rows `first..first + m`: scores prompt tokens, then samples every
/// sequence whose row is in the block, in parallel (each with its own sampler and generator,
/// so the order does not matter).
fn on_logits(
    rows: &[Row],
    prefills: &mut VecDeque<Prefill>,
    slots: &mut [Option<Seq>],
    k: Consts,
    first: usize,
    block: &[f32],
) {
    let Consts { n_ctx, n_vocab: v } = k;
    let m = block.len() / v;
    for (r, row) in rows[first..first + m].iter().enumerate() {
        match *row {
            Row::Decode(slot) => {
                if let Some(s) = slots[slot].as_mut() {
                    s.row = Some(r);
                }
            }
            Row::Prompt { pf, pos } => {
                let p = &mut prefills[pf];
                let logits = &block[r * v..(r + 1) * v];
                if let Some(scores) = p.scores.as_mut() {
                    if let Some(&next) = p.prompt.get(pos + 1) {
                        let mut t = TokenOut::new(next);
                        logprobs::fill(logits, 0, &mut t);
                        scores.push(t);
                    }
                }
                if pos + 1 == p.prompt.len() {
                    let len = p.prompt.len();
                    for &mslot in &p.members {
                        let Some(s) = slots[mslot].as_mut() else { continue };
                        if let Some(scores) = &p.scores {
                            for t in scores {
                                s.stream.send(Event::Prompt(*t));
                            }
                        }
                        s.pos = len;
                        s.prefilling = false;
                        s.row = Some(r);
                        if s.max_tokens == 0 {
                            s.finish = Some(Finish::Length);
                            s.row = None;
                        }
                    }
                }
            }
        }
    }
    // Only the rows of this block: a row index set in an earlier block of the same step is
    // taken there (a step whose logits come in several blocks samples each sequence once).
    slots.par_iter_mut().flatten().filter(|s| s.row.is_some() && s.finish.is_none()).for_each(|s| {
        let r = s.row.take().expect("filtered");
        s.sampled = true;
        sample(s, &block[r * v..(r + 1) * v], n_ctx);
    });
}

/// Samples a sequence's next token from its logits row and queues it, or ends the sequence.
fn sample(s: &mut Seq, logits: &[f32], n_ctx: usize) {
    let id = match s.sampler.sample(logits) {
        Ok(id) => id,
        Err(e) => {
            s.finish = Some(Finish::Aborted(format!("sampling failed: {e}")));
            return;
        }
    };
    s.sampler.accept(id);
    if s.end_tokens.contains(&id) {
        s.finish = Some(Finish::Eos(id));
        return;
    }
    s.out = TokenOut::new(id);
    if let Some(k) = s.logprobs {
        logprobs::fill(logits, k, &mut s.out);
    }
    s.stream.send(Event::Token(s.out));
    s.generated += 1;
    s.finish = Finish::after_token(s.generated, s.max_tokens, s.pos, n_ctx);
    if s.finish.is_none() {
        s.next = Some(id);
    }
}
