//! Top-p (nucleus): keeps the smallest set of best candidates whose probabilities sum to at
//! least `p`, and at least `min_keep` of them. llama.cpp: `llama_sampler_top_p_apply` in
//! `src/llama-sampler.cpp` (`cum_sum >= p && i + 1 >= min_keep`; `p >= 1` disables it).

use crate::candidates::{desc_key, Candidates, Order};

/// First block of candidates sorted when the list is not sorted yet; doubles each time the
/// nucleus turns out larger, so a peaked distribution over 50k tokens sorts only a few hundred.
const FIRST_BLOCK: usize = 256;

/// Nucleus filtering. Leaves the kept candidates sorted, with `p` set to their probability
/// among all candidates that came in. `p >= 1` changes nothing.
pub fn top_p(c: &mut Candidates, p: f32, min_keep: usize) {
    if p >= 1.0 || c.is_empty() {
        return;
    }
    c.softmax();
    let n = c.len();
    let was_sorted = c.order == Order::Sorted;
    // data[..sorted_end] is the sorted head of the list; extended in blocks as needed.
    let mut sorted_end = if was_sorted { n } else { 0 };
    let mut block = FIRST_BLOCK;
    let mut cum = 0.0f32;
    let mut keep = n;
    for i in 0..n {
        if i == sorted_end {
            let end = (sorted_end + block).min(n);
            let rest = &mut c.data[sorted_end..n];
            if end < n {
                rest.select_nth_unstable_by_key(end - sorted_end - 1, desc_key);
            }
            rest[..end - sorted_end].sort_unstable_by_key(desc_key);
            sorted_end = end;
            block *= 2;
        }
        cum += c.data[i].p;
        if cum >= p && i + 1 >= min_keep {
            keep = i + 1;
            break;
        }
    }
    c.order = Order::Sorted;
    c.len = keep;
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
    fn keeps_the_nucleus() {
        let mut c = from_probs(&[0.1, 0.4, 0.3, 0.2]);
        top_p(&mut c, 0.65, 0);
        assert_eq!(ids(&c), [1, 2]);
        let mut c = from_probs(&[0.1, 0.4, 0.3, 0.2]);
        top_p(&mut c, 0.75, 0);
        assert_eq!(ids(&c), [1, 2, 3]);
        assert!(c.is_sorted());
        assert!((c.as_slice()[0].p - 0.4).abs() < 1e-6);
    }

    #[test]
    fn p_one_changes_nothing() {
        let mut c = from_probs(&[0.1, 0.4, 0.3, 0.2]);
        top_p(&mut c, 1.0, 0);
        assert_eq!(ids(&c), [0, 1, 2, 3]);
    }

    #[test]
    fn tiny_p_keeps_only_the_best() {
        let mut c = from_probs(&[0.1, 0.4, 0.3, 0.2]);
        top_p(&mut c, 1e-9, 0);
        assert_eq!(ids(&c), [1]);
    }

    #[test]
    fn min_keep_wins_over_p() {
        let mut c = from_probs(&[0.1, 0.4, 0.3, 0.2]);
        top_p(&mut c, 1e-9, 3);
        assert_eq!(ids(&c), [1, 2, 3]);
        let mut c = from_probs(&[0.1, 0.4, 0.3, 0.2]);
        top_p(&mut c, 0.5, 10);
        assert_eq!(ids(&c), [1, 2, 3, 0]);
    }

    #[test]
    fn all_equal_keeps_ceil_p_n_by_id() {
        let mut c = Candidates::from_logits(&[0.0; 10]);
        top_p(&mut c, 0.35, 0);
        assert_eq!(ids(&c), [0, 1, 2, 3]);
    }

    #[test]
    fn wide_nucleus_over_large_vocab_grows_blocks() {
        // Near-flat logits: the nucleus holds thousands of tokens, more than the first block.
        let logits: Vec<f32> = (0..50_257u32).map(|i| (i % 101) as f32 * 1e-3).collect();
        let mut c = Candidates::from_logits(&logits);
        top_p(&mut c, 0.9, 0);
        let kept = c.as_slice();
        assert!(kept.len() > 40_000 && kept.len() < 50_257, "{}", kept.len());
        assert!(kept.windows(2).all(|w| desc_key(&w[0]) < desc_key(&w[1])));
        let cut = kept[kept.len() - 1].logit;
        // Everything better than the cut-off candidate was kept.
        assert_eq!(logits.iter().filter(|&&l| l > cut).count(), kept.iter().filter(|k| k.logit > cut).count());
    }
}
