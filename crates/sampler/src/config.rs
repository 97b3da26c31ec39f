//! Sampling settings, their llama.cpp defaults (`common/common.h`,
//! `common_params_sampling`) and their validation.

use std::fmt::{self, Write as _};

use crate::error::SamplerError;

/// Largest accepted `repeat_last_n`: the window is allocated up front.
pub const MAX_REPEAT_LAST_N: usize = 1 << 20;

/// Every setting of the sampling chain. [`Default`] gives llama.cpp's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplerConfig {
    /// `--temp`: logits are divided by it before the draw; 0 samples greedily (default 0.8).
    pub temperature: f32,
    /// `--top-k`: keep the k likeliest tokens; 0 disables (default 40).
    pub top_k: i32,
    /// `--top-p`: nucleus mass in (0, 1]; 1 disables (default 0.95).
    pub top_p: f32,
    /// `--min-p`: drop tokens less likely than this fraction of the likeliest; 0 disables
    /// (default 0.05).
    pub min_p: f32,
    /// `--typical`: locally typical mass in (0, 1]; 1 disables (default 1).
    pub typical_p: f32,
    /// `--repeat-penalty`: divides positive (multiplies negative) logits of recent tokens;
    /// 1 disables (default 1).
    pub repeat_penalty: f32,
    /// `--frequency-penalty`: subtracted per occurrence in the window; 0 disables (default 0).
    pub frequency_penalty: f32,
    /// `--presence-penalty`: subtracted once from any token in the window; 0 disables
    /// (default 0).
    pub presence_penalty: f32,
    /// `--repeat-last-n`: how many accepted tokens the penalties look back over; 0 disables
    /// (default 64).
    pub repeat_last_n: usize,
    /// `--logit-bias`: `(token, bias)` pairs added to logits first; `-inf` bans a token.
    pub logit_bias: Vec<(u32, f32)>,
    /// Least number of tokens top-p, min-p and typical keep (default 0, meaning 1).
    pub min_keep: usize,
    /// `--seed`: `None` draws a fresh seed from the OS's hash seed and the clock (default);
    /// [`crate::Sampler::seed`] reports the one used.
    pub seed: Option<u64>,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            typical_p: 1.0,
            repeat_penalty: 1.0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            repeat_last_n: 64,
            logit_bias: Vec::new(),
            min_keep: 0,
            seed: None,
        }
    }
}

impl SamplerConfig {
    /// Always the likeliest token: temperature 0, every filter and penalty off, seed 0 (never
    /// used). Sampling is then one pass over the logits.
    pub fn greedy() -> Self {
        Self { temperature: 0.0, top_k: 0, top_p: 1.0, min_p: 0.0, typical_p: 1.0, seed: Some(0), ..Self::default() }
    }

    /// Whether the chain ends in an argmax rather than a random draw.
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }

    /// Checks every value that does not depend on the vocabulary; [`crate::Sampler::new`]
    /// also checks logit-bias token ids against it. Ranges are llama.cpp's, made strict:
    /// llama.cpp treats `top_k < 0` and `top_p > 1` as "disabled" and `temp < 0` as greedy,
    /// here they are errors, so that a typo does not silently change the sampler.
    pub fn validate(&self) -> Result<(), SamplerError> {
        let t = self.temperature;
        if !(t >= 0.0 && t.is_finite()) {
            return Err(SamplerError::Temperature(t));
        }
        if self.top_k < 0 {
            return Err(SamplerError::TopK(self.top_k));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(SamplerError::TopP(self.top_p));
        }
        if !(self.min_p >= 0.0 && self.min_p <= 1.0) {
            return Err(SamplerError::MinP(self.min_p));
        }
        if !(self.typical_p > 0.0 && self.typical_p <= 1.0) {
            return Err(SamplerError::TypicalP(self.typical_p));
        }
        let r = self.repeat_penalty;
        // llama.cpp (common/sampling.cpp) also requires 1 / penalty to be finite.
        if !(r > 0.0 && r.is_finite() && (1.0 / r).is_finite()) {
            return Err(SamplerError::RepeatPenalty(r));
        }
        if !self.frequency_penalty.is_finite() {
            return Err(SamplerError::FrequencyPenalty(self.frequency_penalty));
        }
        if !self.presence_penalty.is_finite() {
            return Err(SamplerError::PresencePenalty(self.presence_penalty));
        }
        if self.repeat_last_n > MAX_REPEAT_LAST_N {
            return Err(SamplerError::RepeatLastN { value: self.repeat_last_n, max: MAX_REPEAT_LAST_N });
        }
        if let Some(&(token, _)) = self.logit_bias.iter().find(|(_, b)| b.is_nan()) {
            return Err(SamplerError::LogitBiasNan { token });
        }
        Ok(())
    }

    /// The active stages in order, as llama.cpp prints its sampler chain, e.g.
    /// `penalties(last_n 64, repeat 1.10) -> top-k 40 -> top-p 0.950 -> min-p 0.050 -> temp 0.800 -> dist`.
    pub fn describe_chain(&self) -> String {
        let mut stages: Vec<String> = Vec::new();
        if !self.logit_bias.is_empty() {
            stages.push(format!("logit-bias({} tokens)", self.logit_bias.len()));
        }
        let neutral = self.repeat_penalty == 1.0 && self.frequency_penalty == 0.0 && self.presence_penalty == 0.0;
        if self.repeat_last_n > 0 && !neutral {
            let mut s = format!("penalties(last_n {}", self.repeat_last_n);
            if self.repeat_penalty != 1.0 {
                let _ = write!(s, ", repeat {:.2}", self.repeat_penalty);
            }
            if self.frequency_penalty != 0.0 {
                let _ = write!(s, ", frequency {:.2}", self.frequency_penalty);
            }
            if self.presence_penalty != 0.0 {
                let _ = write!(s, ", presence {:.2}", self.presence_penalty);
            }
            s.push(')');
            stages.push(s);
        }
        if self.top_k > 0 {
            stages.push(format!("top-k {}", self.top_k));
        }
        if self.typical_p < 1.0 {
            stages.push(format!("typical {:.3}", self.typical_p));
        }
        if self.top_p < 1.0 {
            stages.push(format!("top-p {:.3}", self.top_p));
        }
        if self.min_p > 0.0 {
            stages.push(format!("min-p {:.3}", self.min_p));
        }
        if self.is_greedy() {
            stages.push("greedy".to_owned());
        } else {
            if self.temperature != 1.0 {
                stages.push(format!("temp {:.3}", self.temperature));
            }
            stages.push("dist".to_owned());
        }
        stages.join(" -> ")
    }
}

impl fmt::Display for SamplerConfig {
    /// The settings in llama.cpp's own wording (`--verbose` prints the same line there).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "repeat_last_n = {}, repeat_penalty = {:.3}, frequency_penalty = {:.3}, presence_penalty = {:.3}, \
             top_k = {}, top_p = {:.3}, min_p = {:.3}, typical_p = {:.3}, temp = {:.3}, min_keep = {}",
            self.repeat_last_n,
            self.repeat_penalty,
            self.frequency_penalty,
            self.presence_penalty,
            self.top_k,
            self.top_p,
            self.min_p,
            self.typical_p,
            self.temperature,
            self.min_keep
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Edit = fn(&mut SamplerConfig);

    fn check(f: impl FnOnce(&mut SamplerConfig)) -> Result<(), SamplerError> {
        let mut c = SamplerConfig::default();
        f(&mut c);
        c.validate()
    }

    #[test]
    fn defaults_are_llama_cpp_and_valid() {
        let c = SamplerConfig::default();
        assert_eq!((c.temperature, c.top_k, c.top_p, c.min_p, c.typical_p), (0.8, 40, 0.95, 0.05, 1.0));
        assert_eq!((c.repeat_penalty, c.repeat_last_n, c.seed), (1.0, 64, None));
        c.validate().unwrap();
        SamplerConfig::greedy().validate().unwrap();
        assert!(SamplerConfig::greedy().is_greedy());
    }

    #[test]
    fn each_bad_value_names_its_flag() {
        let last_n_msg = format!("--repeat-last-n must be <= 1048576, got {}", usize::MAX);
        let cases: Vec<(Edit, &str)> = vec![
            (|c| c.temperature = -1.0, "--temp must be a finite number >= 0 (got -1)"),
            (|c| c.temperature = f32::NAN, "--temp must be a finite number >= 0 (got NaN)"),
            (|c| c.temperature = f32::INFINITY, "--temp must be a finite number >= 0 (got inf)"),
            (|c| c.top_k = -1, "--top-k must be >= 0, 0 disables it (got -1)"),
            (|c| c.top_p = 1.5, "--top-p must be in (0, 1], got 1.5"),
            (|c| c.top_p = 0.0, "--top-p must be in (0, 1], got 0"),
            (|c| c.top_p = f32::NAN, "--top-p must be in (0, 1], got NaN"),
            (|c| c.min_p = -0.1, "--min-p must be in [0, 1], got -0.1"),
            (|c| c.min_p = f32::NAN, "--min-p must be in [0, 1], got NaN"),
            (|c| c.typical_p = 0.0, "--typical must be in (0, 1], got 0"),
            (|c| c.typical_p = 2.0, "--typical must be in (0, 1], got 2"),
            (|c| c.repeat_penalty = 0.0, "--repeat-penalty must be a finite number > 0, got 0"),
            (
                |c| c.repeat_penalty = 1e-39,
                "--repeat-penalty must be a finite number > 0, got 0.000000000000000000000000000000000000001",
            ),
            (|c| c.repeat_penalty = f32::NAN, "--repeat-penalty must be a finite number > 0, got NaN"),
            (|c| c.frequency_penalty = f32::INFINITY, "--frequency-penalty must be a finite number, got inf"),
            (|c| c.presence_penalty = f32::NAN, "--presence-penalty must be a finite number, got NaN"),
            (|c| c.repeat_last_n = usize::MAX, &last_n_msg),
            (|c| c.logit_bias = vec![(1, 0.5), (7, f32::NAN)], "--logit-bias for token 7 is NaN"),
        ];
        for (f, want) in cases {
            assert_eq!(check(f).unwrap_err().to_string(), want);
        }
    }

    #[test]
    fn boundaries_are_accepted() {
        check(|c| c.temperature = 0.0).unwrap();
        check(|c| c.top_k = 0).unwrap();
        check(|c| c.top_p = 1.0).unwrap();
        check(|c| c.min_p = 0.0).unwrap();
        check(|c| c.min_p = 1.0).unwrap();
        check(|c| c.typical_p = 1.0).unwrap();
        check(|c| c.frequency_penalty = -2.0).unwrap();
        check(|c| c.repeat_last_n = MAX_REPEAT_LAST_N).unwrap();
        check(|c| c.logit_bias = vec![(3, f32::NEG_INFINITY), (4, f32::INFINITY)]).unwrap();
    }

    #[test]
    fn describes_the_chain() {
        assert_eq!(
            SamplerConfig::default().describe_chain(),
            "top-k 40 -> top-p 0.950 -> min-p 0.050 -> temp 0.800 -> dist"
        );
        assert_eq!(SamplerConfig::greedy().describe_chain(), "greedy");
        let c = SamplerConfig {
            repeat_penalty: 1.1,
            presence_penalty: 0.5,
            typical_p: 0.9,
            temperature: 1.0,
            logit_bias: vec![(1, -1.0)],
            ..SamplerConfig::default()
        };
        assert_eq!(
            c.describe_chain(),
            "logit-bias(1 tokens) -> penalties(last_n 64, repeat 1.10, presence 0.50) -> top-k 40 -> typical 0.900 -> top-p 0.950 -> min-p 0.050 -> dist"
        );
        assert!(SamplerConfig::default().to_string().contains("top_k = 40, top_p = 0.950"));
    }
}
