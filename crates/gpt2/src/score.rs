//! Scoring texts: the log-probability of every token given the ones before it, for perplexity
//! filters, detectors and compressors. A text longer than the context is scored in windows
//! that overlap by half a context, each token once, with at least half a context before it
//! (the strided evaluation of Hugging Face's perplexity guide).
//!
//! A [`Scorer`] runs a list of texts one forward pass at a time ([`Scorer::step`]), so that its
//! caller can stop between passes (Ctrl-C). Each pass packs the windows of several texts into
//! one batch (one KV slot each, [`crate::BatchSession`]): short texts share the weight
//! matmuls, as the prompts of many sequences do in a serving step. The matmuls are
//! row-invariant and a window is cut into chunks at fixed positions (multiples of the batch
//! size, as `quill perplexity` cuts it), so a text's numbers do not depend on the texts packed
//! beside it.

use rayon::prelude::*;

use crate::perplexity::Window;
use crate::{Batch, BatchOptions, BatchSession, Gpt2Model, KvType, ModelError, SpanLogits};

/// `log p(next)` under `logits`, in f64: the same arithmetic as
/// [`crate::perplexity::log_softmax`] (so the same bits as `quill perplexity`), without
/// writing the whole row.
pub fn log_prob(logits: &[f32], next: u32) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    let lse = max + sum.ln();
    logits[next as usize] as f64 - lse
}

/// The windows that score tokens `1..n_tokens` of a text once each with a context of `n_ctx`
/// (at least 2): the whole text when it fits, else a first window of `n_ctx` tokens, then
/// windows moved on by `n_ctx / 2`, each scoring only the tokens after the previous one.
pub fn score_windows(n_tokens: usize, n_ctx: usize) -> Vec<Window> {
    assert!(n_ctx >= 2, "scoring needs a context of 2 tokens or more");
    if n_tokens < 2 {
        return Vec::new();
    }
    if n_tokens <= n_ctx {
        return vec![Window { start: 0, len: n_tokens, first: 0 }];
    }
    let stride = n_ctx / 2;
    let mut out = vec![Window { start: 0, len: n_ctx, first: 0 }];
    let mut end = n_ctx; // tokens below `end` are scored
    while end < n_tokens {
        let w_end = (end + stride).min(n_tokens);
        let start = w_end - n_ctx;
        out.push(Window { start, len: n_ctx, first: end - start - 1 });
        end = w_end;
    }
    out
}

/// One text's result.
#[derive(Clone, Debug, PartialEq)]
pub struct TextScore {
    /// The text's tokens.
    pub ids: Vec<u32>,
    /// `logprobs[i]` = log p(`ids[i + 1]` | `ids[..=i]`), natural log (empty below 2 tokens).
    pub logprobs: Vec<f64>,
}

impl TextScore {
    /// Sum of the log-probabilities.
    pub fn log_likelihood(&self) -> f64 {
        self.logprobs.iter().sum()
    }

    /// exp(mean negative log-likelihood); NaN when no token was scored.
    pub fn perplexity(&self) -> f64 {
        (-self.log_likelihood() / self.logprobs.len() as f64).exp()
    }
}

/// Most tokens in one forward pass of a [`Scorer`] (`quill perplexity`'s batch).
pub const SCORE_BATCH: usize = 512;

/// KV positions a [`Scorer`] keeps, over all its slots: slots of the longest window, as many
/// as fit (at least one, at most [`MAX_SCORE_SLOTS`]).
const SCORE_KV_POSITIONS: usize = 1024;

/// Most windows in one forward pass of a [`Scorer`].
pub const MAX_SCORE_SLOTS: usize = 64;

/// Texts being scored, and the session that scores them.
pub struct Scorer<'m, 'a> {
    session: BatchSession<'m, 'a>,
    texts: Vec<Vec<u32>>,
    /// `(text, window)` in the order they start.
    jobs: Vec<(usize, Window)>,
    /// The next job to start.
    next: usize,
    /// By slot: the job it runs and the positions of its window done.
    running: Vec<Option<(usize, usize)>>,
    /// Slots in the order they are served this step (oldest job first).
    order: Vec<usize>,
    batch: Batch,
    /// This step's spans that ask for logits: (first logit row, job, window position of it).
    rows: Vec<(usize, usize, usize)>,
    /// By text: `logprobs[i]` for token `i + 1` (NaN until scored).
    logprobs: Vec<Vec<f64>>,
    /// One step's block of log-probabilities, before they go to their texts.
    lp: Vec<f64>,
}

impl<'m, 'a> Scorer<'m, 'a> {
    /// Plans the windows of `texts` with a context of `n_ctx` (0: the model's) and makes a
    /// session with slots just large enough for the longest (F32 KV cache, as `quill
    /// perplexity`) and batches of [`SCORE_BATCH`] tokens.
    pub fn new(model: &'m Gpt2Model<'a>, texts: Vec<Vec<u32>>, n_ctx: usize) -> Result<Self, ModelError> {
        Self::with_batch(model, texts, n_ctx, SCORE_BATCH, MAX_SCORE_SLOTS)
    }

    /// [`Self::new`] with batches of `n_batch` tokens and at most `max_slots` windows per batch.
    pub fn with_batch(
        model: &'m Gpt2Model<'a>,
        texts: Vec<Vec<u32>>,
        n_ctx: usize,
        n_batch: usize,
        max_slots: usize,
    ) -> Result<Self, ModelError> {
        let n_ctx = if n_ctx == 0 { model.config.n_ctx } else { n_ctx };
        if n_ctx > model.config.n_ctx {
            return Err(ModelError::ContextTooLarge { requested: n_ctx, max: model.config.n_ctx });
        }
        let n_vocab = model.config.n_vocab;
        if let Some(&id) = texts.iter().flatten().find(|&&id| id as usize >= n_vocab) {
            return Err(ModelError::BadToken { id, n_vocab });
        }
        let mut jobs = Vec::new();
        for (t, ids) in texts.iter().enumerate() {
            jobs.extend(score_windows(ids.len(), n_ctx.max(2)).into_iter().map(|w| (t, w)));
        }
        let longest = jobs.iter().map(|(_, w)| w.len).max().unwrap_or(2);
        let n_seq = (SCORE_KV_POSITIONS / longest).clamp(1, max_slots.max(1)).min(jobs.len().max(1));
        let n_batch = n_batch.max(1);
        let opts =
            BatchOptions { n_seq, n_ctx: longest, n_batch, logit_rows: 32, kv_type: KvType::F32, row_invariant: true };
        let session = model.batch_session(opts)?;
        let logprobs = texts.iter().map(|t| vec![f64::NAN; t.len().saturating_sub(1)]).collect();
        Ok(Scorer {
            session,
            texts,
            jobs,
            next: 0,
            running: vec![None; n_seq],
            order: Vec::with_capacity(n_seq),
            batch: Batch::with_capacity(n_batch, n_seq),
            rows: Vec::with_capacity(n_seq),
            logprobs,
            lp: vec![0.0; 32],
        })
    }

    /// Windows (of all texts) still to score, in part or whole.
    pub fn remaining(&self) -> usize {
        self.jobs.len() - self.next + self.running.iter().flatten().count()
    }

    /// Runs the next forward pass: the next chunk of every window under way and new windows
    /// in free slots, while the batch has room; `false` when every text is scored.
    pub fn step(&mut self) -> Result<bool, ModelError> {
        let n_batch = self.session.n_batch();
        for slot in 0..self.running.len() {
            if self.running[slot].is_none() && self.next < self.jobs.len() {
                self.running[slot] = Some((self.next, 0));
                self.session.clear_seq(slot);
                self.next += 1;
            }
        }
        self.order.clear();
        self.order.extend((0..self.running.len()).filter(|&s| self.running[s].is_some()));
        if self.order.is_empty() {
            return Ok(false);
        }
        let running = &self.running;
        self.order.sort_unstable_by_key(|&s| running[s].map(|(j, _)| j));
        self.batch.clear();
        self.rows.clear();
        let (mut budget, mut n_rows) = (n_batch, 0);
        for &slot in &self.order {
            let Some((j, done)) = self.running[slot] else { continue };
            let (t, w) = self.jobs[j];
            // Chunks end at multiples of the batch size, whatever else is in the batch.
            let end = ((done / n_batch + 1) * n_batch).min(w.len);
            let n = end - done;
            if n > budget {
                continue;
            }
            budget -= n;
            let from = w.first.saturating_sub(done).min(n);
            self.rows.push((n_rows, j, done + from));
            n_rows += n - from;
            let ids = &self.texts[t][w.start + done..w.start + end];
            self.batch.push(slot, done, ids, SpanLogits::From(from));
            self.running[slot] = Some((j, end));
        }
        let Scorer { session, texts, jobs, rows, logprobs, lp, .. } = self;
        let v = session.model().config.n_vocab;
        session.forward(&self.batch, &mut |first, block| {
            // Logits row `k` of this block scores token `i` of text `t`, which is `next`.
            let target = |k: usize| -> Option<(usize, usize, u32)> {
                let r = first + k;
                let (r0, j, q0) = rows[rows.partition_point(|x| x.0 <= r) - 1];
                let (t, w) = jobs[j];
                let q = q0 + r - r0;
                (q + 1 < w.len).then(|| (t, w.start + q, texts[t][w.start + q + 1]))
            };
            let m = block.len() / v;
            if lp.len() < m {
                lp.resize(m, 0.0);
            }
            // Each row's log-softmax on its own thread: the same arithmetic whatever the split.
            lp[..m].par_iter_mut().zip(block.par_chunks_exact(v)).enumerate().for_each(|(k, (out, row))| {
                *out = target(k).map_or(f64::NAN, |(_, _, next)| log_prob(row, next));
            });
            for (k, &l) in lp[..m].iter().enumerate() {
                if let Some((t, i, _)) = target(k) {
                    logprobs[t][i] = l;
                }
            }
        })?;
        for r in &mut self.running {
            if matches!(*r, Some((j, done)) if done == self.jobs[j].1.len) {
                *r = None;
            }
        }
        Ok(self.remaining() > 0)
    }

    /// The results, in the order of the texts (call after [`Self::step`] returned `false`).
    pub fn finish(self) -> Vec<TextScore> {
        debug_assert!(self.logprobs.iter().flatten().all(|l| !l.is_nan()), "finish before the last step");
        self.texts.into_iter().zip(self.logprobs).map(|(ids, logprobs)| TextScore { ids, logprobs }).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_score_each_token_once_with_half_a_context_before_it() {
        assert!(score_windows(1, 8).is_empty());
        assert_eq!(score_windows(5, 8), [Window { start: 0, len: 5, first: 0 }]);
        for (n, c) in [(9, 8), (20, 8), (21, 8), (100, 7), (1024, 1024), (3000, 1024)] {
            let ws = score_windows(n, c);
            let mut scored = Vec::new();
            for (k, w) in ws.iter().enumerate() {
                assert!(w.len <= c && w.start + w.len <= n);
                for i in w.first..w.len - 1 {
                    scored.push(w.start + i + 1);
                    if k > 0 {
                        assert!(i + 1 >= c / 2, "token {} has only {} before it", w.start + i + 1, i + 1);
                    }
                }
            }
            assert_eq!(scored, (1..n).collect::<Vec<_>>(), "n {n}, ctx {c}");
        }
    }

    #[test]
    fn log_prob_is_log_softmax() {
        let logits = [0.5f32, -1.0, 2.0, 2.0];
        let mut lp = vec![0.0; 4];
        crate::perplexity::log_softmax(&logits, &mut lp);
        for (i, &l) in lp.iter().enumerate() {
            assert_eq!(log_prob(&logits, i as u32).to_bits(), l.to_bits());
        }
    }
}
