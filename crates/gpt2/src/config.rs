//! Hyperparameters, read from GGUF metadata and validated.

use gguf_file::Metadata;

use crate::ModelError;

/// GPT-2 hyperparameters.
#[derive(Clone, Debug, PartialEq)]
pub struct Gpt2Config {
    /// Vocabulary size (rows of `token_embd`).
    pub n_vocab: usize,
    /// Maximum context (rows of `position_embd`).
    pub n_ctx: usize,
    /// Model width.
    pub n_embd: usize,
    /// Attention heads.
    pub n_head: usize,
    /// Transformer blocks.
    pub n_layer: usize,
    /// Hidden width of the MLP (4 x n_embd in GPT-2).
    pub n_ff: usize,
    /// Layer norm epsilon.
    pub eps: f32,
}

/// Upper bounds that keep a hostile file from asking for absurd buffers before any tensor is
/// checked; real GPT-2 is far below them.
const MAX_DIM: u64 = 1 << 20;
const MAX_LAYERS: u64 = 4096;

impl Gpt2Config {
    /// Reads `gpt2.*` keys. `n_vocab` is taken from the embedding later (see
    /// [`crate::Gpt2Model::load`]), so it is 0 here.
    pub fn from_metadata(m: &Metadata) -> Result<Gpt2Config, ModelError> {
        let arch = m.get_str("general.architecture")?;
        if arch != "gpt2" {
            return Err(ModelError::UnsupportedArchitecture(arch.to_owned()));
        }
        let get = |key: &'static str| -> Result<usize, ModelError> {
            let v = m.get_u64(key)?;
            let max = if key.ends_with("block_count") { MAX_LAYERS } else { MAX_DIM };
            if v == 0 || v > max {
                return Err(ModelError::ConfigOutOfRange { key, value: v, max });
            }
            Ok(v as usize)
        };
        let cfg = Gpt2Config {
            n_vocab: 0,
            n_ctx: get("gpt2.context_length")?,
            n_embd: get("gpt2.embedding_length")?,
            n_head: get("gpt2.attention.head_count")?,
            n_layer: get("gpt2.block_count")?,
            n_ff: get("gpt2.feed_forward_length")?,
            eps: m.get_f64("gpt2.attention.layer_norm_epsilon")? as f32,
        };
        if !cfg.n_embd.is_multiple_of(cfg.n_head) {
            return Err(ModelError::HeadsDoNotDivide { n_embd: cfg.n_embd, n_head: cfg.n_head });
        }
        if !(cfg.eps.is_finite() && cfg.eps > 0.0) {
            return Err(ModelError::BadEpsilon { eps: cfg.eps });
        }
        Ok(cfg)
    }

    /// Writes the `gpt2.*` keys that [`Gpt2Config::from_metadata`] reads (llama.cpp's names and
    /// types: u32 counts, f32 epsilon).
    pub fn write_metadata(&self, m: &mut Metadata) {
        m.insert("gpt2.block_count", self.n_layer as u32);
        m.insert("gpt2.context_length", self.n_ctx as u32);
        m.insert("gpt2.embedding_length", self.n_embd as u32);
        m.insert("gpt2.feed_forward_length", self.n_ff as u32);
        m.insert("gpt2.attention.head_count", self.n_head as u32);
        m.insert("gpt2.attention.layer_norm_epsilon", self.eps);
    }

    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }
}
