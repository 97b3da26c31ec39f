//! The model (config + weights + tokenizer) and the session that runs it.

use gguf_file::GgufFile;
use quill_kernels as k;

use crate::forward::{self, KvCache, RunState, Span};
use crate::{BatchOptions, BatchSession, Gpt2Config, Gpt2Weights, ModelError, Tokenizer};

/// A loaded GPT-2: weights are views into `file`, which must outlive it.
pub struct Gpt2Model<'a> {
    pub config: Gpt2Config,
    pub weights: Gpt2Weights<'a>,
    pub tokenizer: Tokenizer,
}

impl<'a> Gpt2Model<'a> {
    /// Reads the config, views the weights and builds the tokenizer, validating all of them.
    pub fn load(file: &'a GgufFile) -> Result<Gpt2Model<'a>, ModelError> {
        let mut config = Gpt2Config::from_metadata(file.metadata())?;
        let tokenizer = Tokenizer::from_gguf(file.metadata())?;
        let embd =
            file.tensor("token_embd.weight").ok_or_else(|| ModelError::MissingTensor("token_embd.weight".into()))?;
        let n_vocab = match embd.dims() {
            [e, v] if *e == config.n_embd as u64 => *v as usize,
            dims => {
                return Err(ModelError::BadTensorShape {
                    name: "token_embd.weight".into(),
                    expected: vec![config.n_embd as u64, tokenizer.n_vocab() as u64],
                    found: dims.to_vec(),
                })
            }
        };
        if n_vocab != tokenizer.n_vocab() {
            return Err(ModelError::VocabMismatch { rows: n_vocab, n_tokens: tokenizer.n_vocab() });
        }
        config.n_vocab = n_vocab;
        let weights = Gpt2Weights::load(file, &config)?;
        Ok(Gpt2Model { config, weights, tokenizer })
    }

    /// A new session (run state and KV cache) for this model.
    pub fn session(&self, opts: SessionOptions) -> Result<Session<'_, 'a>, ModelError> {
        Session::new(self, opts)
    }

    /// A new session for many sequences at once (see [`BatchSession`]).
    pub fn batch_session(&self, opts: BatchOptions) -> Result<BatchSession<'_, 'a>, ModelError> {
        BatchSession::new(self, opts)
    }
}

/// Storage type of the KV cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KvType {
    F32,
    #[default]
    F16,
}

/// Options of a session.
#[derive(Clone, Copy, Debug)]
pub struct SessionOptions {
    /// Context length; 0 means the model's.
    pub n_ctx: usize,
    /// Tokens evaluated per batch (prompts longer than this run in several batches).
    pub n_batch: usize,
    pub kv_type: KvType,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions { n_ctx: 0, n_batch: 512, kv_type: KvType::F16 }
    }
}

/// Rows of logits computed together by [`Session::eval_rows`] (the buffer for a whole batch of
/// 50257-wide rows would be 100 MB).
const LOGIT_ROWS: usize = 32;

/// A run of the model over one sequence: position, KV cache and buffers. The forward pass is
/// the batched one ([`crate::BatchSession`]) with a single span in a single slot.
pub struct Session<'m, 'a> {
    model: &'m Gpt2Model<'a>,
    s: RunState,
    kv: KvCache,
    n_ctx: usize,
    n_batch: usize,
    pos: usize,
}

impl<'m, 'a> Session<'m, 'a> {
    fn new(model: &'m Gpt2Model<'a>, opts: SessionOptions) -> Result<Self, ModelError> {
        let c = &model.config;
        let n_ctx = if opts.n_ctx == 0 { c.n_ctx } else { opts.n_ctx };
        if n_ctx > c.n_ctx {
            return Err(ModelError::ContextTooLarge { requested: n_ctx, max: c.n_ctx });
        }
        let n_batch = opts.n_batch.clamp(1, n_ctx);
        // Refuse up front, with the figure, what would not fit: never an allocation failure.
        let kv = (2 * (c.n_layer * n_ctx * c.n_embd) as u128) * KvCache::elem_bytes(opts.kv_type) as u128;
        let needed = kv + RunState::bytes_needed(model, n_batch, 1, n_ctx, 1);
        if let Some(available) = quill_sysinfo::mem_available() {
            if needed > u128::from(available) {
                return Err(ModelError::OutOfMemory { needed: needed as u64, available, n_ctx });
            }
        }
        let s = RunState::new(model, n_batch, 1, n_ctx, 1);
        let kv = KvCache::new(opts.kv_type, 1, c.n_layer, n_ctx, c.n_embd);
        Ok(Session { model, s, kv, n_ctx, n_batch, pos: 0 })
    }

    /// Tokens evaluated so far (the next token's position).
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// The session's context length.
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// Forgets all tokens (the cache is overwritten as new ones come).
    pub fn reset(&mut self) {
        self.pos = 0;
    }

    /// Bytes held by the KV cache.
    pub fn kv_bytes(&self) -> usize {
        self.kv.bytes()
    }

    /// Evaluates a prompt in batches and returns the logits of its last token.
    pub fn prefill(&mut self, ids: &[u32]) -> Result<&[f32], ModelError> {
        self.check(ids)?;
        let n_batch = self.n_batch;
        // On a pool thread the kernels split their work without blocking hand-offs.
        k::in_pool(|| {
            for chunk in ids.chunks(n_batch) {
                self.forward(chunk, chunk.len() - 1, &mut |_, _| {});
            }
        });
        Ok(&self.s.logits[..self.model.config.n_vocab])
    }

    /// Evaluates one token and returns its logits.
    pub fn decode(&mut self, id: u32) -> Result<&[f32], ModelError> {
        self.prefill(&[id])
    }

    /// Evaluates `ids` and calls `f(i, logits)` for every position `i >= from` of `ids`, in
    /// order (perplexity). The last position's logits also stay available as for `prefill`.
    pub fn eval_rows(
        &mut self,
        ids: &[u32],
        from: usize,
        f: &mut (dyn FnMut(usize, &[f32]) + Send),
    ) -> Result<(), ModelError> {
        self.check(ids)?;
        let n_batch = self.n_batch;
        let v = self.model.config.n_vocab;
        self.s.set_logit_rows(self.model, LOGIT_ROWS);
        // On a pool thread the kernels split their work without blocking hand-offs.
        k::in_pool(|| {
            for (c, chunk) in ids.chunks(n_batch).enumerate() {
                let base = c * n_batch;
                let from_here = from.saturating_sub(base).min(chunk.len() - 1);
                let mut last = 0;
                self.forward(chunk, from_here, &mut |first, rows| {
                    for (t, row) in rows.chunks_exact(v).enumerate() {
                        let i = from_here + first + t;
                        if base + i >= from {
                            f(base + i, row);
                        }
                        last = t;
                    }
                });
                // The last position's logits first in the buffer, as after `prefill`.
                self.s.logits.copy_within(last * v..(last + 1) * v, 0);
            }
        });
        Ok(())
    }

    fn check(&self, ids: &[u32]) -> Result<(), ModelError> {
        if ids.is_empty() {
            return Err(ModelError::EmptyInput);
        }
        let needed = self.pos + ids.len();
        if needed > self.n_ctx {
            return Err(ModelError::ContextFull { needed, n_ctx: self.n_ctx, max: self.model.config.n_ctx });
        }
        let n_vocab = self.model.config.n_vocab;
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= n_vocab) {
            return Err(ModelError::BadToken { id, n_vocab });
        }
        Ok(())
    }

    /// One batch (`ids.len() <= n_batch`, checked by the callers) at positions `pos..`, with
    /// the logits of rows `logits_from..` handed to `f`.
    fn forward(&mut self, ids: &[u32], logits_from: usize, f: &mut dyn FnMut(usize, &[f32])) {
        let span = Span { slot: 0, pos: self.pos, start: 0, len: ids.len(), logits_from };
        forward::forward(self.model, &mut self.s, &mut self.kv, ids, &[span], f);
        self.pos += ids.len();
    }
}
