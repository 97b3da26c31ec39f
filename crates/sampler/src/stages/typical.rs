//! Locally typical sampling (Meister et al., 2022): ranks candidates by how close their
//! surprise `-ln p` is to the distribution's entropy and keeps the closest ones until their
//! probabilities sum past `p`. llama.cpp: `llama_sampler_typical_apply` in
//! `src/llama-sampler.cpp` (`cum_sum > p`, and at least `min_keep`; `p >= 1` disables it).
//! Unlike there, `ln p` is computed as `(logit - max) - ln(sum)`, so a probability that
//! underflows to 0 does not turn the entropy into NaN.

use super::mass::{self, SORT_ALL_BELOW};
use crate::candidates::{Candidates, Order, Scored};
use crate::detmath;

/// Typical filtering. The kept candidates come out in typicality order (over a long list:
/// those well inside the typical set in their incoming order, then the rest in typicality
/// order; see `mass.rs`), with `p` set to their probability among all candidates that came
/// in. Ties in typicality go to the lower id. Note that it can drop the most likely token.
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
    let by_score = |s: &Scored| (s.score.to_bits(), s.c.id);
    let (kept, n_edge, edge) = if n <= SORT_ALL_BELOW {
        (0, n, mass::Edge { bucket: 0, mass_before: 0.0, count_before: 0 })
    } else {
        let items = c.scratch[..n].iter().map(|s| (mass::bucket(s.score), s.c.p));
        let Some(edge) = mass::find_edge(items, p, min_keep, true) else {
            return;
        };
        // Candidates of earlier buckets go straight back; the edge bucket stays in scratch.
        // Branch-free, as in top-p: `kept <= i` and `n_edge <= i`.
        let (mut kept, mut n_edge) = (0, 0);
        for i in 0..n {
            let s = c.scratch[i];
            let b = mass::bucket(s.score);
            c.data[kept] = s.c;
            kept += usize::from(b < edge.bucket);
            c.scratch[n_edge] = s;
            n_edge += usize::from(b == edge.bucket);
        }
        (kept, n_edge, edge)
    };
    let edge_items = &mut c.scratch[..n_edge];
    edge_items.sort_unstable_by_key(by_score);
    let probs = edge_items.iter().map(|s| s.c.p);
    let take = mass::walk(probs, edge.mass_before, kept, p, min_keep, true).unwrap_or(n_edge);
    for j in 0..take {
        c.data[kept + j] = c.scratch[j].c;
    }
    c.len = kept + take;
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

    #[test]
    fn long_lists_match_the_full_sort() {
        let mut rng = crate::Xoshiro256StarStar::seed_from_u64(5);
        for scale in [0.5, 2.0, 6.0] {
            let logits: Vec<f32> = (0..20_000).map(|_| ((rng.next_f64() - 0.5) * scale) as f32).collect();
            for p in [0.05, 0.5, 0.95] {
                // The definition, on the same scores: sort all by typicality, walk.
                let mut want = Candidates::from_logits(&logits);
                let (max, sum) = want.softmax();
                let ln_sum = detmath::ln(sum as f32);
                let entropy: f32 = want.as_slice().iter().fold(0.0, |h, c| h - c.p * ((c.logit - max) - ln_sum));
                let mut scored: Vec<(u32, u32, f32)> = want
                    .as_slice()
                    .iter()
                    .map(|c| ((-((c.logit - max) - ln_sum) - entropy).abs().to_bits(), c.id, c.p))
                    .collect();
                scored.sort_unstable_by_key(|&(s, id, _)| (s, id));
                let keep = mass::walk(scored.iter().map(|s| s.2), 0.0, 0, p, 0, true).unwrap();
                let mut want_ids: Vec<u32> = scored[..keep].iter().map(|s| s.1).collect();
                want_ids.sort_unstable();

                let mut got = Candidates::from_logits(&logits);
                typical(&mut got, p, 0);
                let mut got_ids = ids(&got);
                got_ids.sort_unstable();
                assert_eq!(got_ids, want_ids, "scale {scale}, p {p}");
            }
        }
    }
}
