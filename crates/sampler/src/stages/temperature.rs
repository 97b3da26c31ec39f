//! Temperature: divides every logit by `t`. llama.cpp: `llama_sampler_temp_impl` in
//! `src/llama-sampler.cpp`, where `t <= 0` keeps only the best candidate (greedy).

use crate::candidates::{Candidates, Order};

/// Scales logits by `1 / t`, clamping results to `[-f32::MAX, f32::MAX]` so that they stay
/// finite. `t <= 0` keeps only the best candidate (ties: lowest id); `t == 1` changes nothing.
pub fn temperature(c: &mut Candidates, t: f32) {
    if c.is_empty() || t == 1.0 {
        return;
    }
    if t <= 0.0 {
        if let Some(best) = c.best() {
            c.data[0] = c.data[best];
            c.truncate(1);
            c.order = Order::Sorted;
        }
        return;
    }
    for cand in c.live_mut() {
        cand.logit = (cand.logit / t).clamp(-f32::MAX, f32::MAX);
    }
    // Division is monotone, but rounding and clamping can create ties, which the sort key
    // would order by id.
    if c.order == Order::Sorted {
        c.order = Order::Unordered;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits(c: &Candidates) -> Vec<f32> {
        c.as_slice().iter().map(|c| c.logit).collect()
    }

    #[test]
    fn divides_logits() {
        let mut c = Candidates::from_logits(&[1.0, -2.0, 0.5]);
        temperature(&mut c, 0.5);
        assert_eq!(logits(&c), [2.0, -4.0, 1.0]);
        temperature(&mut c, 4.0);
        assert_eq!(logits(&c), [0.5, -1.0, 0.25]);
    }

    #[test]
    fn zero_is_greedy() {
        let mut c = Candidates::from_logits(&[1.0, 3.0, 3.0, 0.5]);
        temperature(&mut c, 0.0);
        assert_eq!(c.len(), 1);
        assert_eq!(c.as_slice()[0].id, 1);
    }

    #[test]
    fn one_changes_nothing_and_huge_values_stay_finite() {
        let mut c = Candidates::from_logits(&[1.0, 3.0]);
        temperature(&mut c, 1.0);
        assert_eq!(logits(&c), [1.0, 3.0]);
        let mut c = Candidates::from_logits(&[f32::MAX, -f32::MAX, 1.0]);
        temperature(&mut c, 0.25);
        assert_eq!(logits(&c), [f32::MAX, -f32::MAX, 4.0]);
    }

    #[test]
    fn higher_temperature_flattens() {
        let mut cold = Candidates::from_logits(&[2.0, 0.0]);
        let mut hot = cold.clone();
        temperature(&mut cold, 0.5);
        temperature(&mut hot, 2.0);
        cold.softmax();
        hot.softmax();
        assert!(cold.as_slice()[0].p > 0.95 && hot.as_slice()[0].p < 0.75);
    }
}
