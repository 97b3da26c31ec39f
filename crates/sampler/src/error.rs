//! The one error type of the crate: invalid settings (each naming the command-line flag a
//! llama.cpp user would type) and the two ways a call to [`crate::Sampler::sample`] can fail.

/// Why a [`crate::SamplerConfig`] was refused or a token could not be sampled.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SamplerError {
    /// Temperature is negative, infinite or NaN.
    #[error("--temp must be a finite number >= 0 (got {0})")]
    Temperature(f32),
    /// Top-k is negative.
    #[error("--top-k must be >= 0, 0 disables it (got {0})")]
    TopK(i32),
    /// Top-p is outside `(0, 1]` or NaN.
    #[error("--top-p must be in (0, 1], got {0}")]
    TopP(f32),
    /// Min-p is outside `[0, 1]` or NaN.
    #[error("--min-p must be in [0, 1], got {0}")]
    MinP(f32),
    /// Typical-p is outside `(0, 1]` or NaN.
    #[error("--typical must be in (0, 1], got {0}")]
    TypicalP(f32),
    /// The repetition penalty is not a finite number > 0 (or its inverse overflows).
    #[error("--repeat-penalty must be a finite number > 0, got {0}")]
    RepeatPenalty(f32),
    /// The frequency penalty is infinite or NaN.
    #[error("--frequency-penalty must be a finite number, got {0}")]
    FrequencyPenalty(f32),
    /// The presence penalty is infinite or NaN.
    #[error("--presence-penalty must be a finite number, got {0}")]
    PresencePenalty(f32),
    /// The penalty window is larger than [`crate::MAX_REPEAT_LAST_N`].
    #[error("--repeat-last-n must be <= {max}, got {value}")]
    RepeatLastN {
        /// The value asked for.
        value: usize,
        /// The largest value accepted.
        max: usize,
    },
    /// A logit bias is NaN (`-inf` bans a token, `+inf` forces it; NaN means nothing).
    #[error("--logit-bias for token {token} is NaN")]
    LogitBiasNan {
        /// The token the bias was given for.
        token: u32,
    },
    /// A logit bias names a token id that the vocabulary does not have.
    #[error("--logit-bias token id {token} is outside the vocabulary (n_vocab = {n_vocab})")]
    LogitBiasToken {
        /// The token id given.
        token: u32,
        /// The vocabulary size.
        n_vocab: usize,
    },
    /// The vocabulary is empty or has more entries than a `u32` token id can name.
    #[error("the vocabulary size must be in 1..=2^32, got {0}")]
    VocabSize(usize),
    /// [`crate::Sampler::sample`] got a logits row of the wrong length.
    #[error("got {found} logits, but the sampler was built for a vocabulary of {expected}")]
    LogitsLength {
        /// The vocabulary size the sampler was built for.
        expected: usize,
        /// The length of the row passed in.
        found: usize,
    },
    /// Every logit is `-inf` or NaN once logit biases and penalties are applied.
    #[error("no token can be sampled: every logit is -inf or NaN after logit biases and penalties")]
    NoCandidates,
}
