//! Locally typical sampling (Meister et al., 2022): ranks candidates by how close their
//! surprise `-ln p` is to the distribution's entropy and keeps the closest ones until their
//! probabilities sum past `p`. llama.cpp: `llama_sampler_typical_apply` in
//! `src/llama-sampler.cpp` (`cum_sum > p`, and at least `min_keep`; `p >= 1` disables it).
//! Unlike there, `ln p` is computed as `(logit - max) - ln(sum)`, so a probability that
//! underflows to 0 does not turn the entropy into NaN.

use crate::candidates::{Candidates, Order, Scored};
use crate::detmath;

/// Typical filtering. The kept candidates come out in typicality order (not sorted by logit),
/// with `p` set to their probability among all candidates that came in. Ties in typicality go
/// to the lower id. Note that it can drop the most likely token.
pub fn typical(c: &mut Candidates, p: f32, min_keep: usize) {
    if p >= 1.0 || c.is_empty() {
        return;
    }
    let (max, sum) = c.softmax();
    let ln_sum = detmath::ln(sum as f32);
    let n = c.len();
    let mut entropy = 0.0f32;
    for cand in c.as_slice() {
        if cand.p > 0.0 {
            entropy -= cand.p * ((cand.logit - max) - ln_sum);
        }
    }
    for i in 0..n {
        let cand = c.data[i];
        let surprise = -((cand.logit - max) - ln_sum);
        c.scratch[i] = Scored { score: (surprise - entropy).abs(), c: cand };
    }
    // Scores are >= 0 (or +inf), so their bits order like the values.
    let scored = &mut c.scratch[..n];
    scored.sort_unstable_by_key(|s| (s.score.to_bits(), s.c.id));
    let mut cum = 0.0f32;
    let mut keep = n;
    for (i, s) in scored.iter().enumerate() {
        cum += s.c.p;
        if cum > p && (min_keep == 0 || i + 1 >= min_keep) {
            keep = i + 1;
            break;
        }
    }
    for i in 0..keep {
        c.data[i] = c.scratch[i].c;
    }
    c.len = keep;
    c.order = Order::Unordered;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_probs(p: &[f32]) -> Candidates {
        let logits: Vec<f32> = p.iter().map(|p| p.ln()).collect();
        Candidates::from_logits(&logits)
    }

    fn ids(c: &Candidates) -> Vec<u32> {
        c.as_slice().iter().map(|c| c.id).collect()
    }

    // Cases from llama.cpp's tests/test-sampling.cpp (test_typical), re-derived here.
    #[test]
    fn uniform_keeps_what_p_asks_for() {
        let mut c = from_probs(&[0.97, 0.01, 0.01, 0.01]);
        typical(&mut c, 0.5, 1);
        assert_eq!(ids(&c), [0]);
        let mut c = from_probs(&[0.4, 0.2, 0.2, 0.2]);
        typical(&mut c, 0.5, 1);
        assert_eq!(ids(&c), [1, 2, 3]);
    }

    #[test]
    fn can_drop_the_most_likely_token() {
        // Entropy of (0.7, 0.1 x 3) is ~0.94 nats; -ln 0.7 = 0.36, -ln 0.1 = 2.30.
        let mut c = from_probs(&[0.1, 0.7, 0.1, 0.1]);
        typical(&mut c, 0.25, 0);
        assert_eq!(ids(&c), [1]);
        let mut c = from_probs(&[0.05, 0.6, 0.05, 0.05, 0.25]);
        // -ln 0.25 = 1.39 is nearer the entropy (1.10) than -ln 0.6 = 0.51.
        typical(&mut c, 0.2, 0);
        assert_eq!(ids(&c), [4]);
    }

    #[test]
    fn p_one_changes_nothing() {
        let mut c = from_probs(&[0.4, 0.2, 0.2, 0.2]);
        typical(&mut c, 1.0, 0);
        assert_eq!(ids(&c), [0, 1, 2, 3]);
    }

    #[test]
    fn all_equal_ties_go_to_lower_ids() {
        let mut c = Candidates::from_logits(&[0.0; 8]);
        typical(&mut c, 0.3, 0);
        assert_eq!(ids(&c), [0, 1, 2]);
    }

    #[test]
    fn min_keep_is_honoured() {
        let mut c = from_probs(&[0.97, 0.01, 0.01, 0.01]);
        typical(&mut c, 0.5, 3);
        assert_eq!(c.len(), 3);
    }

    #[test]
    fn underflowing_probabilities_do_not_poison_entropy() {
        let mut c = Candidates::from_logits(&[0.0, -200.0, -0.5, -f32::MAX]);
        typical(&mut c, 0.9, 0);
        assert!(!c.is_empty());
        assert!(c.as_slice().iter().all(|c| c.id == 0 || c.id == 2));
    }
}
