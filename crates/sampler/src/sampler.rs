//! The sampler: the stages chained in llama.cpp's default order over buffers allocated once.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::candidates::{Candidate, Candidates};
use crate::config::SamplerConfig;
use crate::error::SamplerError;
use crate::rng::{SplitMix64, Xoshiro256StarStar};
use crate::stages::{self, Penalties, PenaltyHistory};

/// Turns one row of logits into one token id, with the chain
/// `logit-bias -> penalties -> top-k -> typical -> top-p -> min-p -> temperature -> dist`
/// (llama.cpp's default, `common/common.h`, minus DRY and XTC), or `greedy` in place of
/// `temperature -> dist` when the temperature is 0.
///
/// Policies: NaN logits are treated as `-inf` (the token is never sampled); `+inf` logits are
/// clamped to `f32::MAX`. When the temperature is 0 and typical sampling is off, the filters
/// are skipped: none of them can remove the likeliest token, so the result is the same.
///
/// The same seed, settings, logits and accepted tokens give the same tokens on every run and
/// platform: the draw uses [`Xoshiro256StarStar`] and platform-independent `exp`/`ln`, every
/// sort and selection has a single correct answer (ties go to the lower id), and each
/// successful non-greedy sample consumes exactly one `u64`.
///
/// ```
/// use quill_sampler::{Sampler, SamplerConfig};
/// let config = SamplerConfig { seed: Some(42), ..SamplerConfig::default() };
/// let mut sampler = Sampler::new(config, 4)?;
/// let token = sampler.sample(&[0.1, 2.0, f32::NEG_INFINITY, 1.5])?;
/// assert!(token == 1 || token == 3);
/// sampler.accept(token);
/// # Ok::<(), quill_sampler::SamplerError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Sampler {
    config: SamplerConfig,
    n_vocab: usize,
    /// `config.top_k` as a count (0 = off).
    top_k: usize,
    penalties: Penalties,
    seed: u64,
    rng: Xoshiro256StarStar,
    /// `[n_vocab]` candidate storage, reused for every token.
    candidates: Candidates,
    /// `[n_vocab]` the row after logit biases and penalties, when there are any.
    adjusted: Vec<f32>,
    /// `[repeat_last_n]` ring and `[n_vocab]` counts.
    history: PenaltyHistory,
}

impl Sampler {
    /// Validates `config` for a vocabulary of `n_vocab` tokens and allocates every buffer.
    pub fn new(config: SamplerConfig, n_vocab: usize) -> Result<Self, SamplerError> {
        config.validate()?;
        if n_vocab == 0 || n_vocab > u32::MAX as usize {
            return Err(SamplerError::VocabSize(n_vocab));
        }
        if let Some(&(token, _)) = config.logit_bias.iter().find(|(t, _)| *t as usize >= n_vocab) {
            return Err(SamplerError::LogitBiasToken { token, n_vocab });
        }
        let seed = config.seed.unwrap_or_else(fresh_seed);
        Ok(Self {
            top_k: config.top_k.max(0) as usize,
            penalties: Penalties {
                repeat: config.repeat_penalty,
                frequency: config.frequency_penalty,
                presence: config.presence_penalty,
            },
            seed,
            rng: Xoshiro256StarStar::seed_from_u64(seed),
            candidates: Candidates::with_capacity(n_vocab),
            adjusted: vec![0.0; n_vocab],
            history: PenaltyHistory::new(n_vocab, config.repeat_last_n),
            n_vocab,
            config,
        })
    }

    /// Chooses the next token from one row of `n_vocab` logits. Does not remember it: call
    /// [`Self::accept`] with the token actually used (and with prompt tokens, for penalties).
    /// Allocates nothing.
    ///
    /// Fails if `logits` has the wrong length, or if no token is left because every logit is
    /// `-inf` or NaN after biases and penalties.
    pub fn sample(&mut self, logits: &[f32]) -> Result<u32, SamplerError> {
        if logits.len() != self.n_vocab {
            return Err(SamplerError::LogitsLength { expected: self.n_vocab, found: logits.len() });
        }
        let cfg = &self.config;
        // Biases and penalties touch a few tokens of a copy of the row; without them the
        // row is read as it is.
        let row: &[f32] = if cfg.logit_bias.is_empty() && (self.penalties.is_neutral() || self.history.is_empty()) {
            logits
        } else {
            self.adjusted.copy_from_slice(logits);
            stages::apply_logit_bias(&mut self.adjusted, &cfg.logit_bias);
            stages::apply_penalties(&mut self.adjusted, &self.history, &self.penalties);
            &self.adjusted
        };
        let c = &mut self.candidates;
        let greedy = cfg.is_greedy();
        if greedy && cfg.typical_p >= 1.0 {
            // None of top-k, top-p and min-p can drop the likeliest token, so greedy is one
            // pass over the row.
            let Some((id, logit)) = argmax(row) else {
                c.load_sanitized(&[]);
                return Err(SamplerError::NoCandidates);
            };
            c.set_single(id, logit.min(f32::MAX));
            return Ok(id);
        }
        c.load_top_k(row, self.top_k);
        if c.is_empty() {
            return Err(SamplerError::NoCandidates);
        }
        stages::typical(c, cfg.typical_p, cfg.min_keep);
        stages::top_p(c, cfg.top_p, cfg.min_keep);
        stages::min_p(c, cfg.min_p, cfg.min_keep);
        let token = if greedy {
            stages::greedy(c)
        } else {
            stages::temperature(c, cfg.temperature);
            stages::dist(c, &mut self.rng)
        };
        // Every stage keeps at least one candidate.
        token.ok_or(SamplerError::NoCandidates)
    }

    /// Records `token` as generated (or as part of the prompt) for the penalty window.
    /// Ids outside the vocabulary are ignored.
    pub fn accept(&mut self, token: u32) {
        self.history.accept(token);
    }

    /// Forgets accepted tokens and restarts the generator from the seed, so that the sampler
    /// behaves as if just built (as llama.cpp's `llama_sampler_reset`).
    pub fn reset(&mut self) {
        self.history.clear();
        self.rng = Xoshiro256StarStar::seed_from_u64(self.seed);
    }

    /// The seed in use: the configured one, or the one drawn when none was given.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The settings.
    pub fn config(&self) -> &SamplerConfig {
        &self.config
    }

    /// The vocabulary size the sampler was built for.
    pub fn n_vocab(&self) -> usize {
        self.n_vocab
    }

    /// What the last [`Self::sample`] left: the chosen candidate, with its probability after the
    /// filters and temperature (1 when greedy). Empty after [`SamplerError::NoCandidates`].
    pub fn candidates(&self) -> &[Candidate] {
        self.candidates.as_slice()
    }

    /// The penalty window.
    pub fn history(&self) -> &PenaltyHistory {
        &self.history
    }
}

/// The highest logit that is not NaN (ties: lowest id), unless every logit is NaN or `-inf`.
fn argmax(row: &[f32]) -> Option<(u32, f32)> {
    // A NaN never compares greater, so it is skipped. Eight running maxima let the loop
    // vectorise; max is order-independent here (the sign of a zero maximum aside, which the
    // comparison below ignores).
    let mut lanes = [f32::NEG_INFINITY; 8];
    let mut chunks = row.chunks_exact(8);
    for chunk in &mut chunks {
        for (m, &l) in lanes.iter_mut().zip(chunk) {
            *m = if l > *m { l } else { *m };
        }
    }
    let max = chunks.remainder().iter().chain(&lanes).fold(f32::NEG_INFINITY, |m, &l| if l > m { l } else { m });
    if max == f32::NEG_INFINITY {
        return None;
    }
    // The first index holding it is the lowest id; -0.0 == 0.0, as in the sort key.
    let id = row.iter().position(|&l| l == max)?;
    Some((id as u32, max))
}

/// A seed nobody chose: the process's random hash keys (from the OS) mixed with the clock.
pub fn fresh_seed() -> u64 {
    let mut h = RandomState::new().build_hasher();
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    h.write_u128(nanos);
    SplitMix64::new(h.finish()).next_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seeded(seed: u64) -> SamplerConfig {
        SamplerConfig { seed: Some(seed), ..SamplerConfig::default() }
    }

    /// A logits row shaped like a language model's: a few likely tokens, a long tail.
    fn lm_like_logits(n: usize, salt: u32) -> Vec<f32> {
        (0..n as u32)
            .map(|i| {
                let h = (i ^ salt).wrapping_mul(2_654_435_761).rotate_left(13).wrapping_mul(40_503);
                let u = (h >> 8) as f32 / (1u32 << 24) as f32;
                -8.0 * u * u + if i % 97 == 3 { 4.0 } else { 0.0 }
            })
            .collect()
    }

    fn run(sampler: &mut Sampler, steps: u32) -> Vec<u32> {
        (0..steps)
            .map(|s| {
                let t = sampler.sample(&lm_like_logits(sampler.n_vocab(), s)).unwrap();
                sampler.accept(t);
                t
            })
            .collect()
    }

    #[test]
    fn rejects_bad_settings_and_vocab() {
        let bad = SamplerConfig { top_p: 1.5, ..SamplerConfig::default() };
        assert_eq!(Sampler::new(bad, 10).unwrap_err(), SamplerError::TopP(1.5));
        assert_eq!(Sampler::new(SamplerConfig::default(), 0).unwrap_err(), SamplerError::VocabSize(0));
        let bias = SamplerConfig { logit_bias: vec![(10, 1.0)], ..SamplerConfig::default() };
        let err = Sampler::new(bias, 10).unwrap_err();
        assert_eq!(err, SamplerError::LogitBiasToken { token: 10, n_vocab: 10 });
        assert_eq!(err.to_string(), "--logit-bias token id 10 is outside the vocabulary (n_vocab = 10)");
    }

    #[test]
    fn wrong_length_is_an_error() {
        let mut s = Sampler::new(seeded(1), 3).unwrap();
        assert_eq!(s.sample(&[1.0, 2.0]), Err(SamplerError::LogitsLength { expected: 3, found: 2 }));
    }

    #[test]
    fn temperature_zero_is_argmax() {
        let mut s = Sampler::new(SamplerConfig { temperature: 0.0, ..seeded(9) }, 5).unwrap();
        for _ in 0..10 {
            assert_eq!(s.sample(&[0.1, 0.2, 3.0, 2.9, -1.0]).unwrap(), 2);
        }
        let mut g = Sampler::new(SamplerConfig::greedy(), 4).unwrap();
        assert_eq!(g.sample(&[1.0, 7.0, 7.0, 2.0]).unwrap(), 1);
        assert_eq!(g.candidates()[0].p, 1.0);
    }

    #[test]
    fn greedy_with_typical_runs_the_filters() {
        // Typical drops the most likely token (see stages/typical.rs); greedy then takes the
        // best survivor, as llama.cpp's chain does.
        let logits: Vec<f32> = [0.05f32, 0.6, 0.05, 0.05, 0.25].iter().map(|p| p.ln()).collect();
        let cfg = SamplerConfig { temperature: 0.0, typical_p: 0.2, ..SamplerConfig::greedy() };
        assert_eq!(Sampler::new(cfg, 5).unwrap().sample(&logits).unwrap(), 4);
    }

    #[test]
    fn all_equal_logits_spread_over_all_tokens() {
        let cfg = SamplerConfig { top_k: 0, top_p: 1.0, min_p: 0.0, temperature: 1.0, ..seeded(5) };
        let mut s = Sampler::new(cfg, 8).unwrap();
        let mut seen = [0u32; 8];
        for _ in 0..8000 {
            seen[s.sample(&[0.25; 8]).unwrap() as usize] += 1;
        }
        assert!(seen.iter().all(|&n| (850..1150).contains(&n)), "{seen:?}");
    }

    #[test]
    fn neg_inf_and_nan_are_never_sampled() {
        let cfg = SamplerConfig { top_k: 0, top_p: 1.0, min_p: 0.0, temperature: 5.0, ..seeded(2) };
        let mut s = Sampler::new(cfg, 6).unwrap();
        let logits = [f32::NEG_INFINITY, 0.0, f32::NAN, -30.0, f32::NEG_INFINITY, 0.0];
        for _ in 0..5000 {
            let t = s.sample(&logits).unwrap();
            assert!(t == 1 || t == 3 || t == 5, "{t}");
        }
        let mut g = Sampler::new(SamplerConfig::greedy(), 3).unwrap();
        assert_eq!(g.sample(&[f32::NAN, -1.0, f32::NAN]).unwrap(), 1);
    }

    #[test]
    fn nothing_left_is_an_error() {
        let mut s = Sampler::new(seeded(2), 3).unwrap();
        let err = s.sample(&[f32::NEG_INFINITY, f32::NAN, f32::NEG_INFINITY]).unwrap_err();
        assert_eq!(err, SamplerError::NoCandidates);
        assert!(s.candidates().is_empty());
        let ban_all = SamplerConfig { logit_bias: vec![(0, f32::NEG_INFINITY), (1, f32::NEG_INFINITY)], ..seeded(2) };
        let mut s = Sampler::new(ban_all, 2).unwrap();
        assert_eq!(s.sample(&[1.0, 2.0]), Err(SamplerError::NoCandidates));
    }

    #[test]
    fn logit_bias_neg_inf_bans_even_the_best() {
        let cfg = SamplerConfig { logit_bias: vec![(2, f32::NEG_INFINITY)], ..seeded(4) };
        let mut s = Sampler::new(cfg, 4).unwrap();
        for _ in 0..2000 {
            assert_ne!(s.sample(&[0.0, 1.0, 50.0, 1.0]).unwrap(), 2);
        }
        let mut g =
            Sampler::new(SamplerConfig { logit_bias: vec![(2, f32::NEG_INFINITY)], ..SamplerConfig::greedy() }, 4)
                .unwrap();
        assert_eq!(g.sample(&[0.0, 1.0, 50.0, 1.5]).unwrap(), 3);
    }

    #[test]
    fn pos_inf_logit_bias_forces_a_token() {
        let cfg = SamplerConfig { logit_bias: vec![(0, f32::INFINITY)], ..seeded(4) };
        let mut s = Sampler::new(cfg, 3).unwrap();
        for _ in 0..100 {
            assert_eq!(s.sample(&[-5.0, 1.0, 2.0]).unwrap(), 0);
        }
    }

    #[test]
    fn repeat_penalty_moves_greedy_off_a_repeated_token() {
        let cfg = SamplerConfig { repeat_penalty: 2.0, ..SamplerConfig::greedy() };
        let mut s = Sampler::new(cfg, 3).unwrap();
        let logits = [3.0, 2.0, -1.0];
        assert_eq!(s.sample(&logits).unwrap(), 0);
        s.accept(0);
        // 3 / 2 = 1.5 < 2.
        assert_eq!(s.sample(&logits).unwrap(), 1);
        s.accept(1);
        // 2 / 2 = 1 < 1.5.
        assert_eq!(s.sample(&logits).unwrap(), 0);
        s.reset();
        assert_eq!(s.sample(&logits).unwrap(), 0);
    }

    #[test]
    fn frequency_penalty_grows_with_repeats_within_the_window() {
        let cfg = SamplerConfig { frequency_penalty: 1.0, repeat_last_n: 3, ..SamplerConfig::greedy() };
        let mut s = Sampler::new(cfg, 2).unwrap();
        let logits = [2.5, 0.0];
        for t in [0, 0] {
            s.accept(t);
        }
        // 2.5 - 2 = 0.5 > 0.
        assert_eq!(s.sample(&logits).unwrap(), 0);
        s.accept(0);
        // 2.5 - 3 < 0.
        assert_eq!(s.sample(&logits).unwrap(), 1);
        s.accept(1);
        // Window [0, 0, 1]: 0.5 vs -1.
        assert_eq!(s.sample(&logits).unwrap(), 0);
    }

    #[test]
    fn same_seed_same_sequence_and_reset_replays_it() {
        let mut a = Sampler::new(seeded(1234), 50_257).unwrap();
        let mut b = Sampler::new(seeded(1234), 50_257).unwrap();
        let first = run(&mut a, 64);
        assert_eq!(first, run(&mut b, 64));
        a.reset();
        assert_eq!(first, run(&mut a, 64));
    }

    #[test]
    fn different_seeds_differ() {
        let flat = SamplerConfig { top_k: 0, min_p: 0.0, temperature: 1.5, ..SamplerConfig::default() };
        let mut a = Sampler::new(SamplerConfig { seed: Some(1), ..flat.clone() }, 1000).unwrap();
        let mut b = Sampler::new(SamplerConfig { seed: Some(2), ..flat }, 1000).unwrap();
        assert_ne!(run(&mut a, 32), run(&mut b, 32));
    }

    #[test]
    fn sequence_is_pinned() {
        // The tokens this seed gives must not change between runs, platforms or releases.
        let mut s = Sampler::new(seeded(42), 50_257).unwrap();
        assert_eq!(run(&mut s, 12), PINNED_SEQUENCE);
    }
    const PINNED_SEQUENCE: [u32; 12] =
        [33177, 5823, 41907, 29394, 10673, 38609, 11061, 29976, 33274, 18239, 27939, 14456];

    #[test]
    fn unseeded_samplers_report_their_seed() {
        let a = Sampler::new(SamplerConfig::default(), 10).unwrap();
        let b = Sampler::new(SamplerConfig::default(), 10).unwrap();
        assert_ne!(a.seed(), b.seed());
        let replay = Sampler::new(SamplerConfig { seed: Some(a.seed()), ..SamplerConfig::default() }, 10).unwrap();
        assert_eq!(replay.seed(), a.seed());
    }

    #[test]
    fn samples_converge_to_the_distribution() {
        // Chi-square goodness of fit, 9 degrees of freedom, fixed seed: deterministic.
        let probs = [0.30f64, 0.20, 0.15, 0.10, 0.08, 0.07, 0.05, 0.03, 0.015, 0.005];
        let logits: Vec<f32> = probs.iter().map(|&p| p.ln() as f32 + 3.0).collect();
        let cfg = SamplerConfig { top_k: 0, top_p: 1.0, min_p: 0.0, temperature: 1.0, ..seeded(20_240_601) };
        let mut s = Sampler::new(cfg, probs.len()).unwrap();
        let n = 200_000;
        let mut counts = [0u64; 10];
        for _ in 0..n {
            counts[s.sample(&logits).unwrap() as usize] += 1;
        }
        let chi2: f64 = probs
            .iter()
            .zip(counts)
            .map(|(&p, c)| {
                let expected = p * n as f64;
                (c as f64 - expected).powi(2) / expected
            })
            .sum();
        // The 99.9th percentile of chi-square with 9 degrees of freedom is 27.88.
        assert!(chi2 < 27.88, "chi2 {chi2}, counts {counts:?}");
    }

    #[test]
    fn temperature_reshapes_the_distribution() {
        // At temperature 2, logits ln(0.8), ln(0.2) become probabilities 2/3, 1/3.
        let logits = [0.8f32.ln(), 0.2f32.ln()];
        let cfg = SamplerConfig { top_k: 0, top_p: 1.0, min_p: 0.0, temperature: 2.0, ..seeded(8) };
        let mut s = Sampler::new(cfg, 2).unwrap();
        let n = 30_000;
        let zeros = (0..n).filter(|_| s.sample(&logits).unwrap() == 0).count();
        let frac = zeros as f64 / n as f64;
        assert!((frac - 2.0 / 3.0).abs() < 0.01, "{frac}");
    }

    #[test]
    fn top_k_one_is_greedy_whatever_the_seed() {
        for seed in 0..20 {
            let cfg = SamplerConfig { top_k: 1, temperature: 3.0, ..seeded(seed) };
            let mut s = Sampler::new(cfg, 5).unwrap();
            assert_eq!(s.sample(&[0.1, 0.2, 0.3, 0.25, 0.0]).unwrap(), 2);
        }
    }

    #[test]
    fn min_p_one_keeps_only_the_best() {
        let cfg = SamplerConfig { top_k: 0, top_p: 1.0, min_p: 1.0, temperature: 2.0, ..seeded(3) };
        let mut s = Sampler::new(cfg, 4).unwrap();
        for _ in 0..200 {
            assert_eq!(s.sample(&[1.0, 1.01, 0.99, 1.0]).unwrap(), 1);
        }
    }

    #[test]
    fn reports_the_chosen_probability() {
        let cfg = SamplerConfig { top_k: 2, top_p: 1.0, min_p: 0.0, temperature: 1.0, ..seeded(3) };
        let mut s = Sampler::new(cfg, 3).unwrap();
        let t = s.sample(&[0.0, 0.0, -10.0]).unwrap();
        assert!(t < 2);
        assert_eq!(s.candidates().len(), 1);
        assert_eq!(s.candidates()[0].p, 0.5);
    }
}
