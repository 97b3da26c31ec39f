//! The last stage: choose one candidate. [`dist`] draws in proportion to the softmax of the
//! logits (llama.cpp: `llama_sampler_dist_apply` in `src/llama-sampler.cpp`), [`greedy`]
//! takes the best.

use crate::candidates::{Candidates, Order};
use crate::rng::Xoshiro256StarStar;

/// Draws one candidate with probability `softmax(logits)`, leaving only it in `c` and
/// returning its id; `None` if `c` is empty. Always consumes exactly one `u64` of `rng`, even
/// for a single candidate, so that the stream of choices depends only on the seed and the
/// number of draws. The choice uses only deterministic arithmetic: `u` in `[0, 1)` from 53
/// random bits, target `u * sum`, and the first candidate (in the list's order) at which the
/// running sum of `p` exceeds it. A candidate whose `p` underflowed to 0 is never chosen.
/// The `p` of the chosen candidate is its probability before the choice.
pub fn dist(c: &mut Candidates, rng: &mut Xoshiro256StarStar) -> Option<u32> {
    let u = rng.next_f64();
    if c.is_empty() {
        return None;
    }
    let (_, sum) = c.exp_shifted();
    let target = u * sum;
    let mut run = 0.0f64;
    let mut chosen = None;
    let mut last_nonzero = 0;
    for (i, cand) in c.as_slice().iter().enumerate() {
        if cand.p > 0.0 {
            last_nonzero = i;
            run += f64::from(cand.p);
            if run > target {
                chosen = Some(i);
                break;
            }
        }
    }
    // Rounding can leave the running sum a hair under the target when u is close to 1.
    let i = chosen.unwrap_or(last_nonzero);
    let mut pick = c.data[i];
    pick.p = (f64::from(pick.p) / sum) as f32;
    c.data[0] = pick;
    c.truncate(1);
    c.order = Order::Sorted;
    Some(pick.id)
}

/// Takes the best candidate (highest logit, ties: lowest id), leaving only it in `c` with
/// `p = 1`; `None` if `c` is empty. Uses no randomness.
pub fn greedy(c: &mut Candidates) -> Option<u32> {
    let best = c.best()?;
    let mut pick = c.data[best];
    pick.p = 1.0;
    c.data[0] = pick;
    c.truncate(1);
    c.order = Order::Sorted;
    Some(pick.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_argmax_lowest_id_on_ties() {
        let mut c = Candidates::from_logits(&[0.0, 2.0, -1.0, 2.0]);
        assert_eq!(greedy(&mut c), Some(1));
        assert_eq!(c.len(), 1);
        assert_eq!(c.as_slice()[0].p, 1.0);
        assert_eq!(greedy(&mut Candidates::from_logits(&[])), None);
    }

    #[test]
    fn single_candidate_still_draws_once() {
        let mut rng = Xoshiro256StarStar::seed_from_u64(3);
        let mut twin = rng.clone();
        let mut c = Candidates::from_logits(&[0.7]);
        assert_eq!(dist(&mut c, &mut rng), Some(0));
        assert_eq!(c.as_slice()[0].p, 1.0);
        twin.next_u64();
        assert_eq!(rng.next_u64(), twin.next_u64());
    }

    #[test]
    fn empty_gives_none() {
        let mut rng = Xoshiro256StarStar::seed_from_u64(3);
        assert_eq!(dist(&mut Candidates::from_logits(&[]), &mut rng), None);
    }

    #[test]
    fn zero_probability_is_never_chosen() {
        // exp(-200) underflows to 0 in f32.
        let mut rng = Xoshiro256StarStar::seed_from_u64(11);
        for _ in 0..2000 {
            let mut c = Candidates::from_logits(&[-200.0, 0.0, -200.0, 0.0, -200.0]);
            let id = dist(&mut c, &mut rng).unwrap();
            assert!(id == 1 || id == 3);
        }
    }

    #[test]
    fn two_equal_tokens_split_evenly() {
        let mut rng = Xoshiro256StarStar::seed_from_u64(0);
        let mut seen = [0usize; 2];
        for _ in 0..1000 {
            let mut c = Candidates::from_logits(&[0.0, 0.0]);
            seen[dist(&mut c, &mut rng).unwrap() as usize] += 1;
            assert_eq!(c.as_slice()[0].p, 0.5);
        }
        assert!(seen[0] > 430 && seen[1] > 430, "{seen:?}");
    }
}
