//! Scoring texts: the log-probability of every token given the ones before it, for perplexity
//! filters, detectors and compressors. A text longer than the context is scored in windows
//! that overlap by half a context, each token once, with at least half a context before it
//! (the strided evaluation of Hugging Face's perplexity guide).
//!
//! A [`Scorer`] runs a list of texts one forward pass at a time ([`Scorer::step`]), so that its
//! caller can stop between passes (Ctrl-C) and, when several sequences share a pass, only this
//! module changes.

use crate::perplexity::Window;
use crate::{Gpt2Model, KvType, ModelError, Session, SessionOptions};

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

/// Texts being scored, and the session that scores them.
pub struct Scorer<'m, 'a> {
    session: Session<'m, 'a>,
    texts: Vec<Vec<u32>>,
    /// `(text, window)` in the order they run.
    jobs: Vec<(usize, Window)>,
    next: usize,
    logprobs: Vec<Vec<f64>>,
}

impl<'m, 'a> Scorer<'m, 'a> {
    /// Plans the windows of `texts` with a context of `n_ctx` (0: the model's) and makes a
    /// session just large enough for the longest (F32 KV cache, as `quill perplexity`).
    pub fn new(model: &'m Gpt2Model<'a>, texts: Vec<Vec<u32>>, n_ctx: usize) -> Result<Self, ModelError> {
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
        let opts = SessionOptions { n_ctx: longest, n_batch: longest.min(512), kv_type: KvType::F32 };
        let session = model.session(opts)?;
        let logprobs = texts.iter().map(|t| Vec::with_capacity(t.len().saturating_sub(1))).collect();
        Ok(Scorer { session, texts, jobs, next: 0, logprobs })
    }

    /// Forward passes in all.
    pub fn n_steps(&self) -> usize {
        self.jobs.len()
    }

    /// Runs the next forward pass; `false` when every text is scored.
    pub fn step(&mut self) -> Result<bool, ModelError> {
        let Some(&(t, w)) = self.jobs.get(self.next) else {
            return Ok(false);
        };
        let ids = &self.texts[t][w.start..w.start + w.len];
        let out = &mut self.logprobs[t];
        self.session.reset();
        self.session.eval_rows(ids, w.first, &mut |i, row| {
            if i + 1 < ids.len() {
                out.push(log_prob(row, ids[i + 1]));
            }
        })?;
        self.next += 1;
        Ok(self.next < self.jobs.len())
    }

    /// The results, in the order of the texts (call after [`Self::step`] returned `false`).
    pub fn finish(self) -> Vec<TextScore> {
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
