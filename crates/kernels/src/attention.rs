//! The attention core: causal multi-head attention of new queries against the KV cache.

use half::f16;
use rayon::prelude::*;

/// Keys or values for positions `0..n` of one layer, `[n][n_embd]`.
#[derive(Clone, Copy)]
pub enum KvSlice<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
}

impl KvSlice<'_> {
    fn get(&self, i: usize) -> f32 {
        match self {
            KvSlice::F32(s) => s[i],
            KvSlice::F16(s) => s[i].to_f32(),
        }
    }
}

/// Scratch for [`attention`]: attention scores, sized for the context.
pub struct AttnScratch {
    scores: Vec<f32>,
    n_ctx: usize,
}

impl AttnScratch {
    /// Scratch for `n_head` heads and contexts up to `n_ctx` positions.
    pub fn new(n_head: usize, n_ctx: usize) -> Self {
        AttnScratch { scores: vec![0.0; n_head * n_ctx], n_ctx }
    }
}

/// Causal attention for `n_tok` queries at positions `pos0..pos0 + n_tok`.
///
/// `q` and `out` are `[n_tok][n_head * head_dim]`; `k` and `v` hold positions
/// `0..pos0 + n_tok` as `[pos][n_head * head_dim]`. Query `t` attends to positions `0..=pos0 + t`
/// with scale `1/sqrt(head_dim)`.
#[allow(clippy::too_many_arguments)]
pub fn attention(
    q: &[f32],
    k: KvSlice<'_>,
    v: KvSlice<'_>,
    pos0: usize,
    n_tok: usize,
    n_head: usize,
    head_dim: usize,
    out: &mut [f32],
    scratch: &mut AttnScratch,
) {
    let n_embd = n_head * head_dim;
    assert!(pos0 + n_tok <= scratch.n_ctx, "attention: context larger than the scratch");
    let scale = 1.0 / (head_dim as f32).sqrt();
    for t in 0..n_tok {
        let n_kv = pos0 + t + 1;
        let qt = &q[t * n_embd..(t + 1) * n_embd];
        let ot = &mut out[t * n_embd..(t + 1) * n_embd];
        ot.par_chunks_mut(head_dim).zip(scratch.scores.par_chunks_mut(scratch.n_ctx)).enumerate().for_each(
            |(h, (oh, scores))| {
                let qh = &qt[h * head_dim..(h + 1) * head_dim];
                let scores = &mut scores[..n_kv];
                for (p, s) in scores.iter_mut().enumerate() {
                    let base = p * n_embd + h * head_dim;
                    *s = qh.iter().enumerate().map(|(i, &qv)| qv * k.get(base + i)).sum::<f32>() * scale;
                }
                crate::softmax(scores);
                oh.fill(0.0);
                for (p, &s) in scores.iter().enumerate() {
                    let base = p * n_embd + h * head_dim;
                    for (i, o) in oh.iter_mut().enumerate() {
                        *o += s * v.get(base + i);
                    }
                }
            },
        );
    }
}
