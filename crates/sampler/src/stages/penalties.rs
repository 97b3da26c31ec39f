//! Repetition, frequency and presence penalties over the last N accepted tokens.
//! llama.cpp: `llama_sampler_penalties_accept` / `_apply` in `src/llama-sampler.cpp`: for a
//! token seen `count > 0` times in the window, a logit `<= 0` is multiplied by the repetition
//! penalty and a positive one divided by it, then `count * frequency + presence` is subtracted.

use crate::candidates::{Candidates, Order};

/// The three penalty strengths. Neutral values: repeat 1, frequency 0, presence 0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Penalties {
    /// Divides positive logits and multiplies non-positive ones (> 0; 1 = off).
    pub repeat: f32,
    /// Subtracted once per occurrence in the window (0 = off; negative encourages repeats).
    pub frequency: f32,
    /// Subtracted once if the token occurs in the window at all (0 = off).
    pub presence: f32,
}

impl Penalties {
    /// Whether applying these changes nothing.
    pub fn is_neutral(&self) -> bool {
        self.repeat == 1.0 && self.frequency == 0.0 && self.presence == 0.0
    }

    /// The penalised value of `logit` for a token seen `count` times in the window.
    #[inline]
    pub fn penalize(&self, logit: f32, count: u32) -> f32 {
        if count == 0 {
            return logit;
        }
        let scaled = if logit <= 0.0 { logit * self.repeat } else { logit / self.repeat };
        scaled - (count as f32 * self.frequency + self.presence)
    }
}

/// The last `last_n` accepted tokens (a ring) and how often each occurs in it. Allocated once:
/// the ring, plus two `u32` per vocabulary entry so that accepting and penalising cost O(1)
/// per token in the window, whatever the vocabulary size.
#[derive(Debug, Clone)]
pub struct PenaltyHistory {
    /// `[last_n]` accepted tokens; once full, `ring[head]` is the oldest.
    ring: Vec<u32>,
    head: usize,
    filled: usize,
    /// `[n_vocab]` occurrences of each token in the ring.
    counts: Vec<u32>,
    /// Distinct tokens with a non-zero count, in no particular order.
    present: Vec<u32>,
    /// `[n_vocab]` index of each present token in `present`.
    slot: Vec<u32>,
}

impl PenaltyHistory {
    /// An empty window of `last_n` tokens (0 = remember nothing) over `n_vocab` tokens.
    pub fn new(n_vocab: usize, last_n: usize) -> Self {
        let tracked = if last_n == 0 { 0 } else { n_vocab };
        Self {
            ring: vec![0; last_n],
            head: 0,
            filled: 0,
            counts: vec![0; tracked],
            present: Vec::with_capacity(last_n.min(tracked)),
            slot: vec![0; tracked],
        }
    }

    /// The window length.
    pub fn last_n(&self) -> usize {
        self.ring.len()
    }

    /// Tokens currently remembered (at most [`Self::last_n`]).
    pub fn len(&self) -> usize {
        self.filled
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.filled == 0
    }

    /// How often `token` occurs in the window.
    pub fn count(&self, token: u32) -> u32 {
        self.counts.get(token as usize).copied().unwrap_or(0)
    }

    /// Remembers `token`, forgetting the oldest one if the window is full. Ids outside the
    /// vocabulary are ignored: they have no logit to penalise.
    pub fn accept(&mut self, token: u32) {
        let t = token as usize;
        if self.ring.is_empty() || t >= self.counts.len() {
            return;
        }
        if self.filled == self.ring.len() {
            let old = self.ring[self.head];
            self.decrement(old);
        } else {
            self.filled += 1;
        }
        self.ring[self.head] = token;
        self.head = (self.head + 1) % self.ring.len();
        if self.counts[t] == 0 {
            self.slot[t] = self.present.len() as u32;
            self.present.push(token);
        }
        self.counts[t] += 1;
    }

    fn decrement(&mut self, token: u32) {
        let t = token as usize;
        self.counts[t] -= 1;
        if self.counts[t] == 0 {
            let at = self.slot[t] as usize;
            self.present.swap_remove(at);
            if let Some(&moved) = self.present.get(at) {
                self.slot[moved as usize] = at as u32;
            }
        }
    }

    /// Forgets every token.
    pub fn clear(&mut self) {
        for &t in &self.present {
            self.counts[t as usize] = 0;
        }
        self.present.clear();
        self.head = 0;
        self.filled = 0;
    }
}

/// Applies `p` to every candidate that occurs in `history`. Costs one step per distinct token
/// in the window while the candidates are in vocabulary order (right after
/// [`Candidates::load`]), and one step per candidate otherwise.
pub fn penalties(c: &mut Candidates, history: &PenaltyHistory, p: &Penalties) {
    if p.is_neutral() || history.is_empty() {
        return;
    }
    let identity = c.order == Order::Identity;
    if c.order == Order::Sorted {
        c.order = Order::Unordered;
    }
    let live = c.live_mut();
    if identity {
        for &t in &history.present {
            if let Some(cand) = live.get_mut(t as usize) {
                cand.logit = p.penalize(cand.logit, history.counts[t as usize]);
            }
        }
    } else {
        for cand in live.iter_mut() {
            cand.logit = p.penalize(cand.logit, history.count(cand.id));
        }
    }
}

/// [`penalties`] on a raw row of logits (index = token id), before any candidate list is
/// built: one step per distinct token in the window.
pub fn apply_penalties(logits: &mut [f32], history: &PenaltyHistory, p: &Penalties) {
    if p.is_neutral() {
        return;
    }
    for &t in &history.present {
        if let Some(l) = logits.get_mut(t as usize) {
            *l = p.penalize(*l, history.counts[t as usize]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits(c: &Candidates) -> Vec<f32> {
        c.as_slice().iter().map(|c| c.logit).collect()
    }

    fn history(n_vocab: usize, last_n: usize, tokens: &[u32]) -> PenaltyHistory {
        let mut h = PenaltyHistory::new(n_vocab, last_n);
        tokens.iter().for_each(|&t| h.accept(t));
        h
    }

    const REPEAT_2: Penalties = Penalties { repeat: 2.0, frequency: 0.0, presence: 0.0 };

    #[test]
    fn repeat_divides_positive_and_multiplies_negative() {
        let h = history(4, 64, &[0, 1, 2]);
        let mut c = Candidates::from_logits(&[4.0, -4.0, 0.0, 4.0]);
        penalties(&mut c, &h, &REPEAT_2);
        assert_eq!(logits(&c), [2.0, -8.0, 0.0, 4.0]);
    }

    #[test]
    fn frequency_and_presence_count_repeats() {
        let h = history(3, 64, &[0, 0, 0, 1]);
        let p = Penalties { repeat: 1.0, frequency: 0.5, presence: 0.25 };
        let mut c = Candidates::from_logits(&[1.0, 1.0, 1.0]);
        penalties(&mut c, &h, &p);
        assert_eq!(logits(&c), [1.0 - 1.5 - 0.25, 1.0 - 0.5 - 0.25, 1.0]);
    }

    #[test]
    fn repeated_token_gets_repeat_penalty_once() {
        let h = history(2, 64, &[1, 1, 1, 1]);
        let mut c = Candidates::from_logits(&[3.0, 3.0]);
        penalties(&mut c, &h, &REPEAT_2);
        assert_eq!(logits(&c), [3.0, 1.5]);
    }

    #[test]
    fn window_forgets_old_tokens() {
        let mut h = history(5, 3, &[0, 1, 2, 3, 3]);
        assert_eq!((h.count(0), h.count(1), h.count(2), h.count(3)), (0, 0, 1, 2));
        assert_eq!(h.len(), 3);
        h.accept(4);
        assert_eq!((h.count(2), h.count(3), h.count(4)), (0, 2, 1));
        let mut c = Candidates::from_logits(&[1.0; 5]);
        penalties(&mut c, &h, &Penalties { repeat: 1.0, frequency: 1.0, presence: 0.0 });
        assert_eq!(logits(&c), [1.0, 1.0, 1.0, -1.0, 0.0]);
    }

    #[test]
    fn counts_stay_consistent_over_a_long_run() {
        let (n_vocab, last_n) = (17, 10);
        let mut h = PenaltyHistory::new(n_vocab, last_n);
        let mut all = Vec::new();
        let mut x = 12345u32;
        for _ in 0..2000 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let t = (x >> 16) % n_vocab as u32 % 5 * 3;
            h.accept(t);
            all.push(t);
            let window = &all[all.len().saturating_sub(last_n)..];
            for tok in 0..n_vocab as u32 {
                assert_eq!(h.count(tok), window.iter().filter(|&&w| w == tok).count() as u32);
            }
            assert_eq!(h.present.len(), (0..n_vocab as u32).filter(|&tok| h.count(tok) > 0).count());
        }
    }

    #[test]
    fn last_n_zero_and_out_of_vocab_are_ignored() {
        let mut h = history(4, 0, &[1, 2]);
        assert!(h.is_empty());
        h = history(4, 8, &[9, 1]);
        assert_eq!(h.len(), 1);
        h.clear();
        assert!(h.is_empty() && h.count(1) == 0);
    }

    #[test]
    fn same_result_in_any_candidate_order() {
        let h = history(6, 64, &[5, 0, 5, 3]);
        let p = Penalties { repeat: 1.3, frequency: 0.2, presence: 0.1 };
        let raw = [2.0, -1.0, 0.5, -3.0, 0.0, 7.0];
        let mut a = Candidates::from_logits(&raw);
        penalties(&mut a, &h, &p);
        let mut b = Candidates::from_logits(&raw);
        b.sort();
        penalties(&mut b, &h, &p);
        assert!(!b.is_sorted());
        let mut got: Vec<(u32, f32)> = b.as_slice().iter().map(|c| (c.id, c.logit)).collect();
        got.sort_by_key(|&(id, _)| id);
        let want: Vec<(u32, f32)> = a.as_slice().iter().map(|c| (c.id, c.logit)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn neutral_penalties_change_nothing() {
        let h = history(3, 64, &[0, 1, 2]);
        let mut c = Candidates::from_logits(&[1.0, -1.0, 0.0]);
        penalties(&mut c, &h, &Penalties { repeat: 1.0, frequency: 0.0, presence: 0.0 });
        assert_eq!(logits(&c), [1.0, -1.0, 0.0]);
    }

    #[test]
    fn raw_row_version_agrees() {
        let h = history(6, 64, &[5, 0, 5, 3]);
        let p = Penalties { repeat: 1.3, frequency: 0.2, presence: 0.1 };
        let mut row = [2.0, -1.0, 0.5, -3.0, 0.0, 7.0];
        let mut c = Candidates::from_logits(&row);
        penalties(&mut c, &h, &p);
        apply_penalties(&mut row, &h, &p);
        assert_eq!(row.to_vec(), logits(&c));
    }
}
