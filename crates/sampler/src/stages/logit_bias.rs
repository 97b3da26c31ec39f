//! Logit bias: adds a fixed amount to chosen tokens' logits. `-inf` bans a token (it is then
//! dropped by [`crate::Candidates::sanitize`]); `+inf` makes it as likely as the likeliest.
//! llama.cpp: `llama_sampler_logit_bias_apply` in `src/llama-sampler.cpp`.

use crate::candidates::{Candidates, Order};

/// Adds each `(token, bias)` to that token's logit; a token listed twice gets both. Tokens
/// that are not among the candidates are ignored. Costs one step per bias while the
/// candidates are still in vocabulary order (right after [`Candidates::load`]), and a scan of
/// the candidates per bias otherwise.
pub fn logit_bias(c: &mut Candidates, biases: &[(u32, f32)]) {
    let identity = c.order == Order::Identity;
    let live = c.live_mut();
    for &(token, bias) in biases {
        let cand = if identity { live.get_mut(token as usize) } else { live.iter_mut().find(|c| c.id == token) };
        if let Some(cand) = cand {
            cand.logit += bias;
        }
    }
}

/// [`logit_bias`] on a raw row of logits (index = token id), before any candidate list is
/// built. Ids past the end are ignored.
pub fn apply_logit_bias(logits: &mut [f32], biases: &[(u32, f32)]) {
    for &(token, bias) in biases {
        if let Some(l) = logits.get_mut(token as usize) {
            *l += bias;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_bias_and_neg_inf_bans() {
        let mut c = Candidates::from_logits(&[1.0, 2.0, 3.0]);
        logit_bias(&mut c, &[(0, 0.5), (2, f32::NEG_INFINITY), (0, 0.25), (7, 1.0)]);
        c.sanitize();
        let got: Vec<(u32, f32)> = c.as_slice().iter().map(|c| (c.id, c.logit)).collect();
        assert_eq!(got, [(0, 1.75), (1, 2.0)]);
    }

    #[test]
    fn works_after_reordering() {
        let mut c = Candidates::from_logits(&[1.0, 2.0, 3.0]);
        c.sort();
        logit_bias(&mut c, &[(0, 10.0), (1, -1.0)]);
        let got: Vec<(u32, f32)> = c.as_slice().iter().map(|c| (c.id, c.logit)).collect();
        assert_eq!(got, [(2, 3.0), (1, 1.0), (0, 11.0)]);
    }

    #[test]
    fn pos_inf_becomes_the_top_token() {
        let mut c = Candidates::from_logits(&[1.0, 2.0, 3.0]);
        logit_bias(&mut c, &[(0, f32::INFINITY)]);
        c.sanitize();
        assert_eq!(c.best(), Some(0));
        assert_eq!(c.as_slice()[0].logit, f32::MAX);
    }

    #[test]
    fn raw_row_version_agrees() {
        let mut row = [1.0, 2.0, 3.0];
        apply_logit_bias(&mut row, &[(0, 0.5), (2, f32::NEG_INFINITY), (0, 0.25), (7, 1.0)]);
        assert_eq!(row, [1.75, 2.0, f32::NEG_INFINITY]);
    }
}
