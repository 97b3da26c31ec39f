//! Properties of the whole sampler over random rows, settings and histories.

use proptest::prelude::*;
use quill_sampler::stages::{apply_logit_bias, apply_penalties};
use quill_sampler::{Penalties, PenaltyHistory, Sampler, SamplerConfig, SamplerError};

/// A logit: mostly finite, sometimes -inf or NaN; few distinct values, so ties are common.
fn logit() -> impl Strategy<Value = f32> {
    prop_oneof![
        8 => (-40i32..40).prop_map(|v| v as f32 * 0.5),
        2 => -30.0f32..30.0,
        1 => Just(f32::NEG_INFINITY),
        1 => Just(f32::NAN),
    ]
}

fn config() -> impl Strategy<Value = SamplerConfig> {
    (
        (prop_oneof![Just(0.0f32), 0.05f32..3.0], 0i32..60, prop_oneof![Just(1.0f32), 0.01f32..1.0]),
        (prop_oneof![Just(0.0f32), 0.0f32..1.0], prop_oneof![3 => Just(1.0f32), 1 => 0.05f32..1.0]),
        (prop_oneof![Just(1.0f32), 0.5f32..2.0], -1.0f32..1.0, -1.0f32..1.0, 0usize..16),
        (0usize..6, any::<u64>()),
    )
        .prop_map(
            |((temperature, top_k, top_p), (min_p, typical_p), (repeat, freq, presence, last_n), (min_keep, seed))| {
                SamplerConfig {
                    temperature,
                    top_k,
                    top_p,
                    min_p,
                    typical_p,
                    repeat_penalty: repeat,
                    frequency_penalty: freq,
                    presence_penalty: presence,
                    repeat_last_n: last_n,
                    logit_bias: Vec::new(),
                    min_keep,
                    seed: Some(seed),
                }
            },
        )
}

/// Mostly banned: a handful of finite logits at most.
fn sparse_logit() -> impl Strategy<Value = f32> {
    prop_oneof![8 => Just(f32::NEG_INFINITY), 1 => Just(f32::NAN), 1 => -5.0f32..5.0]
}

fn row() -> impl Strategy<Value = Vec<f32>> {
    prop_oneof![
        4 => prop::collection::vec(logit(), 1..200),
        1 => prop::collection::vec(sparse_logit(), 1..30),
    ]
}

/// A row, settings with a few bans and biases, and tokens accepted before sampling.
fn case() -> impl Strategy<Value = (Vec<f32>, SamplerConfig, Vec<u32>)> {
    (row(), config()).prop_flat_map(|(logits, cfg)| {
        let n = logits.len() as u32;
        let bias = prop::collection::vec((0..n, prop_oneof![Just(f32::NEG_INFINITY), -3.0f32..3.0]), 0..4);
        let history = prop::collection::vec(0..n, 0..24);
        (Just(logits), Just(cfg), bias, history).prop_map(|(logits, mut cfg, bias, history)| {
            cfg.logit_bias = bias;
            (logits, cfg, history)
        })
    })
}

/// The row the filters see: logits after biases and penalties.
fn adjusted(logits: &[f32], cfg: &SamplerConfig, history: &[u32]) -> Vec<f32> {
    let mut row = logits.to_vec();
    apply_logit_bias(&mut row, &cfg.logit_bias);
    let mut h = PenaltyHistory::new(logits.len(), cfg.repeat_last_n);
    history.iter().for_each(|&t| h.accept(t));
    let p = Penalties { repeat: cfg.repeat_penalty, frequency: cfg.frequency_penalty, presence: cfg.presence_penalty };
    apply_penalties(&mut row, &h, &p);
    row
}

fn sampler(logits: &[f32], cfg: &SamplerConfig, history: &[u32]) -> Sampler {
    let mut s = Sampler::new(cfg.clone(), logits.len()).expect("valid settings");
    history.iter().for_each(|&t| s.accept(t));
    s
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn sampled_token_is_finite_and_within_top_k((logits, cfg, history) in case()) {
        let row = adjusted(&logits, &cfg, &history);
        let mut s = sampler(&logits, &cfg, &history);
        let any_finite = row.iter().any(|l| l.is_finite());
        match s.sample(&logits) {
            Ok(t) => {
                let l = row[t as usize];
                prop_assert!(l.is_finite(), "token {t} has logit {l}");
                prop_assert!(logits[t as usize].is_finite());
                if cfg.top_k > 0 {
                    let better = row.iter().filter(|&&x| x > l).count();
                    prop_assert!(better < cfg.top_k as usize, "{better} tokens beat token {t}");
                }
                prop_assert_eq!(s.candidates().len(), 1);
                prop_assert_eq!(s.candidates()[0].id, t);
            }
            Err(e) => {
                prop_assert_eq!(e, SamplerError::NoCandidates);
                prop_assert!(!any_finite);
            }
        }
    }

    #[test]
    fn greedy_is_the_lowest_id_argmax((logits, mut cfg, history) in case()) {
        cfg.temperature = 0.0;
        cfg.typical_p = 1.0;
        let row = adjusted(&logits, &cfg, &history);
        let mut s = sampler(&logits, &cfg, &history);
        let max = row.iter().copied().filter(|l| !l.is_nan()).fold(f32::NEG_INFINITY, f32::max);
        match s.sample(&logits) {
            Ok(t) => prop_assert_eq!(Some(t as usize), row.iter().position(|&l| l == max)),
            Err(_) => prop_assert_eq!(max, f32::NEG_INFINITY),
        }
    }

    #[test]
    fn same_seed_same_tokens((logits, cfg, history) in case()) {
        let mut a = sampler(&logits, &cfg, &history);
        let mut b = sampler(&logits, &cfg, &history);
        for _ in 0..8 {
            let (ta, tb) = (a.sample(&logits), b.sample(&logits));
            prop_assert_eq!(&ta, &tb);
            if let Ok(t) = ta {
                a.accept(t);
                b.accept(t);
            }
        }
    }
}
