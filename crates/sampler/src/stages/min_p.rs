//! Min-p: keeps candidates whose probability is at least `p` times the best one's, and at least
//! `min_keep` of them. llama.cpp: `llama_sampler_min_p_apply` in `src/llama-sampler.cpp`,
//! which compares logits with `max_logit + ln(p)` rather than computing probabilities.

use crate::candidates::{Candidates, Order};
use crate::detmath;

/// Min-p filtering. `p <= 0` changes nothing; `p == 1` keeps only the candidates tied with the
/// best. When fewer than `min_keep` pass, keeps the `min_keep` best (sorted). Otherwise keeps
/// the order the candidates came in.
pub fn min_p(c: &mut Candidates, p: f32, min_keep: usize) {
    if p <= 0.0 || c.is_empty() {
        return;
    }
    let threshold = c.max_logit() + detmath::ln(p);
    let passing = c.as_slice().iter().filter(|cand| cand.logit >= threshold).count();
    if passing >= min_keep {
        if passing == c.len() {
            return;
        }
        let mut kept = 0;
        for i in 0..c.len() {
            let cand = c.data[i];
            if cand.logit >= threshold {
                c.data[kept] = cand;
                kept += 1;
            }
        }
        if c.order == Order::Identity {
            c.order = Order::Unordered;
        }
        c.len = kept;
    } else {
        c.keep_top(min_keep.min(c.len()));
    }
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

    #[test]
    fn keeps_tokens_above_a_fraction_of_the_best() {
        let mut c = from_probs(&[0.05, 0.5, 0.3, 0.15]);
        min_p(&mut c, 0.3, 0);
        // 0.3 * 0.5 = 0.15: 0.15 is on the boundary (kept, up to rounding of ln).
        assert_eq!(ids(&c)[..2], [1, 2]);
        assert!(!ids(&c).contains(&0));
    }

    #[test]
    fn keeps_original_order() {
        let mut c = Candidates::from_logits(&[3.0, -5.0, 2.5, 0.0, 2.9]);
        min_p(&mut c, 0.5, 0);
        assert_eq!(ids(&c), [0, 2, 4]);
    }

    #[test]
    fn p_zero_changes_nothing() {
        let mut c = from_probs(&[0.05, 0.5, 0.3, 0.15]);
        min_p(&mut c, 0.0, 0);
        assert_eq!(ids(&c), [0, 1, 2, 3]);
    }

    #[test]
    fn p_one_keeps_only_the_ties_with_the_best() {
        let mut c = Candidates::from_logits(&[1.0, 2.0, 2.0, 1.999]);
        min_p(&mut c, 1.0, 0);
        assert_eq!(ids(&c), [1, 2]);
        let mut c = Candidates::from_logits(&[1.0, 2.0, 0.0]);
        min_p(&mut c, 1.0, 0);
        assert_eq!(ids(&c), [1]);
    }

    #[test]
    fn min_keep_keeps_the_best_few() {
        let mut c = Candidates::from_logits(&[1.0, 9.0, 3.0, 2.0]);
        min_p(&mut c, 1.0, 3);
        assert_eq!(ids(&c), [1, 2, 3]);
        assert!(c.is_sorted());
        let mut c = Candidates::from_logits(&[1.0, 9.0]);
        min_p(&mut c, 1.0, 5);
        assert_eq!(ids(&c), [1, 0]);
    }

    #[test]
    fn all_equal_keeps_all() {
        let mut c = Candidates::from_logits(&[0.5; 7]);
        min_p(&mut c, 1.0, 0);
        assert_eq!(c.len(), 7);
    }
}
