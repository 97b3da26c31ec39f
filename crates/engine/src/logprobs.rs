//! Log-probabilities of a logits row (log-softmax of the model's raw logits, before any
//! sampling filter): the chosen token's and the likeliest few.

use crate::stream::{TokenOut, MAX_TOP_LOGPROBS};

/// `ln(sum exp(l))` over the row, NaN logits ignored (as the sampler ignores them).
fn log_sum_exp(row: &[f32]) -> f64 {
    let max = row.iter().copied().filter(|l| !l.is_nan()).fold(f32::NEG_INFINITY, f32::max);
    if max.is_infinite() {
        return f64::from(max);
    }
    let sum: f64 = row.iter().filter(|l| !l.is_nan()).map(|&l| f64::from(l - max).exp()).sum();
    f64::from(max) + sum.ln()
}

/// Fills `out.logprob` with the log-probability of `out.id` under `row`, and `out.top` with
/// the `k` likeliest tokens (ties: lower id first). Allocates nothing.
pub(crate) fn fill(row: &[f32], k: usize, out: &mut TokenOut) {
    let lse = log_sum_exp(row);
    let lp = |l: f32| (f64::from(l) - lse) as f32;
    out.logprob = row.get(out.id as usize).map_or(f32::NEG_INFINITY, |&l| lp(l));
    let k = k.min(MAX_TOP_LOGPROBS).min(row.len());
    out.n_top = 0;
    if k == 0 {
        return;
    }
    let mut n = 0usize;
    let top = &mut out.top;
    for (i, &l) in row.iter().enumerate() {
        if l.is_nan() || (n == k && l <= top[k - 1].1) {
            continue;
        }
        // Insert (i, l) keeping descending order; an equal logit stays after the lower id.
        let mut j = n.min(k - 1);
        if n < k {
            n += 1;
        }
        while j > 0 && l > top[j - 1].1 {
            top[j] = top[j - 1];
            j -= 1;
        }
        top[j] = (i as u32, l);
    }
    for t in &mut top[..n] {
        t.1 = lp(t.1);
    }
    out.n_top = n as u8;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logprobs_are_a_log_softmax_and_top_is_sorted() {
        let row = [1.0f32, 3.0, 2.0, 3.0, f32::NAN, -1.0];
        let mut t = TokenOut::new(2);
        fill(&row, 3, &mut t);
        let lse = [1.0f64, 3.0, 2.0, 3.0, -1.0].iter().map(|x| x.exp()).sum::<f64>().ln();
        assert!((f64::from(t.logprob) - (2.0 - lse)).abs() < 1e-6);
        let ids: Vec<u32> = t.top().iter().map(|p| p.0).collect();
        assert_eq!(ids, [1, 3, 2]);
        assert!((f64::from(t.top()[0].1) - (3.0 - lse)).abs() < 1e-6);
        let mut none = TokenOut::new(0);
        fill(&row, 0, &mut none);
        assert!(none.top().is_empty());
        let mut all = TokenOut::new(0);
        fill(&row, 20, &mut all);
        assert_eq!(all.top().len(), 5);
    }
}
