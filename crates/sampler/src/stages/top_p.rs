//! Top-p (nucleus): keeps the smallest set of best candidates whose probabilities sum to at
//! least `p`, and at least `min_keep` of them. llama.cpp: `llama_sampler_top_p_apply` in
//! `src/llama-sampler.cpp` (`cum_sum >= p && i + 1 >= min_keep`; `p >= 1` disables it).

use super::mass::{self, SORT_ALL_BELOW};
use crate::candidates::{desc_key, Candidates, Order, Scored};

/// Nucleus filtering, with `p` set to each candidate's probability among all that came in.
/// `p >= 1` changes nothing. A list that is sorted or short is sorted and walked; over a long
/// unsorted list only the candidates around the cut are sorted (see `mass.rs`) and the kept
/// ones come out as: those well inside the nucleus in their incoming order, then the rest
/// sorted.
pub fn top_p(c: &mut Candidates, p: f32, min_keep: usize) {
    if p >= 1.0 || c.is_empty() {
        return;
    }
    let (max, _) = c.softmax();
    if c.order == Order::Sorted || c.len() <= SORT_ALL_BELOW {
        c.sort();
        let probs = c.as_slice().iter().map(|cand| cand.p);
        if let Some(keep) = mass::walk(probs, 0.0, 0, p, min_keep, false) {
            c.len = keep;
        }
        return;
    }
    let bucket = |l: f32| mass::bucket(max - l);
    let items = c.as_slice().iter().map(|cand| (bucket(cand.logit), cand.p));
    let Some(edge) = mass::find_edge(items, p, min_keep, false) else {
        return;
    };
    // Keep earlier buckets in place, in order; move the edge bucket to scratch. Branch-free
    // (both slots are written, the counters decide what stays): which way a candidate goes is
    // a coin flip that a branch predictor loses. `kept <= i` and `n_edge <= i`, so every write
    // lands on a slot already read.
    let (mut kept, mut n_edge) = (0, 0);
    for i in 0..c.len {
        let cand = c.data[i];
        let b = bucket(cand.logit);
        c.data[kept] = cand;
        kept += usize::from(b < edge.bucket);
        c.scratch[n_edge] = Scored { score: 0.0, c: cand };
        n_edge += usize::from(b == edge.bucket);
    }
    let edge_items = &mut c.scratch[..n_edge];
    edge_items.sort_unstable_by_key(|s| desc_key(&s.c));
    let probs = edge_items.iter().map(|s| s.c.p);
    let take = mass::walk(probs, edge.mass_before, kept, p, min_keep, false).unwrap_or(n_edge);
    for j in 0..take {
        c.data[kept + j] = c.scratch[j].c;
    }
    c.order = if kept == 0 { Order::Sorted } else { Order::Unordered };
    c.len = kept + take;
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

    /// The definition: sort everything, walk. Returns the sorted ids and the kept count.
    fn reference(logits: &[f32], p: f32, min_keep: usize) -> (Vec<u32>, usize) {
        let mut c = Candidates::from_logits(logits);
        c.softmax();
        c.sort();
        let sorted: Vec<u32> = ids(&c);
        let keep = mass::walk(c.as_slice().iter().map(|c| c.p), 0.0, 0, p, min_keep, false).unwrap_or(sorted.len());
        (sorted, keep)
    }

    fn pseudo_normal(n: usize, seed: u64, scale: f64) -> Vec<f32> {
        let mut rng = crate::Xoshiro256StarStar::seed_from_u64(seed);
        (0..n).map(|_| (((0..4).map(|_| rng.next_f64()).sum::<f64>() - 2.0) * scale) as f32).collect()
    }

    #[test]
    fn long_lists_keep_exactly_a_sorted_prefix() {
        let mut cases: Vec<(Vec<f32>, f32, usize)> = Vec::new();
        for (seed, scale) in [(1, 0.3), (2, 1.0), (3, 3.0), (4, 8.0), (5, 30.0)] {
            for p in [1e-6, 0.1, 0.5, 0.9, 0.95, 0.999] {
                cases.push((pseudo_normal(20_000, seed, scale), p, 0));
            }
        }
        cases.push((pseudo_normal(5000, 6, 2.0), 0.2, 3000));
        cases.push((vec![0.0; 5000], 0.5, 0));
        let mut tail = vec![-40.0f32; 5000];
        tail[17] = 0.0;
        cases.push((tail, 0.999_999, 0));
        for (logits, p, min_keep) in cases {
            let (sorted, want) = reference(&logits, p, min_keep);
            let mut c = Candidates::from_logits(&logits);
            top_p(&mut c, p, min_keep);
            let mut got = ids(&c);
            // Same size, up to one candidate where bucket sums and the sorted walk round apart.
            assert!(got.len().abs_diff(want) <= 1, "p {p}: kept {} want {want}", got.len());
            let mut rank = vec![0; logits.len()];
            sorted.iter().enumerate().for_each(|(r, &id)| rank[id as usize] = r);
            got.sort_unstable_by_key(|&id| rank[id as usize]);
            assert_eq!(got, sorted[..got.len()], "p {p}: not a prefix of the sorted order");
            assert!(got.len() >= min_keep.min(logits.len()));
        }
    }
}
