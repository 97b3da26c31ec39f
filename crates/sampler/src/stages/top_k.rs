//! Top-k: keeps the `k` candidates with the highest logits. llama.cpp:
//! `llama_sampler_top_k_impl` in `src/llama-sampler.cpp` (`k <= 0` disables it there; here the
//! type is unsigned and 0 disables it). It ignores `min_keep`, as llama.cpp's does.

use crate::candidates::Candidates;

/// Keeps the `k` best candidates (ties at the boundary: lower ids first), sorted by logit.
/// `k == 0` or `k >= len` changes nothing. Costs O(n) to select plus O(k log k) to sort.
pub fn top_k(c: &mut Candidates, k: usize) {
    if k == 0 || k >= c.len() {
        return;
    }
    c.keep_top(k);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(c: &Candidates) -> Vec<u32> {
        c.as_slice().iter().map(|c| c.id).collect()
    }

    #[test]
    fn keeps_the_k_best_sorted() {
        let mut c = Candidates::from_logits(&[0.1, 0.9, 0.5, 0.7, -1.0]);
        top_k(&mut c, 3);
        assert_eq!(ids(&c), [1, 3, 2]);
        assert!(c.is_sorted());
    }

    #[test]
    fn k_one_is_the_argmax() {
        let mut c = Candidates::from_logits(&[0.1, 0.9, 0.5, 0.95, -1.0]);
        top_k(&mut c, 1);
        assert_eq!(ids(&c), [3]);
    }

    #[test]
    fn k_zero_and_k_beyond_vocab_change_nothing() {
        for k in [0, 5, 6, 1000] {
            let mut c = Candidates::from_logits(&[0.1, 0.9, 0.5, 0.7, -1.0]);
            top_k(&mut c, k);
            assert_eq!(ids(&c), [0, 1, 2, 3, 4], "k = {k}");
        }
    }

    #[test]
    fn ties_keep_lower_ids() {
        let mut c = Candidates::from_logits(&[1.0; 6]);
        top_k(&mut c, 2);
        assert_eq!(ids(&c), [0, 1]);
    }

    #[test]
    fn large_vocab_matches_full_sort() {
        let logits: Vec<f32> =
            (0..50_257u32).map(|i| ((i.wrapping_mul(2_654_435_761) >> 7) % 10_007) as f32 * 0.01).collect();
        let mut c = Candidates::from_logits(&logits);
        top_k(&mut c, 40);
        let mut want: Vec<u32> = (0..50_257).collect();
        want.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]).then(a.cmp(&b)));
        assert_eq!(ids(&c), want[..40]);
    }
}
