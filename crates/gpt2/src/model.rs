//! The model (config + weights + tokenizer) and the session that runs it.

use gguf_file::GgufFile;

use crate::{Batch, BatchOptions, BatchSession, Gpt2Config, Gpt2Weights, ModelError, SpanLogits, Tokenizer};

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
    /// ggml's Q8_0 blocks (32 codes and an f16 scale, 34 bytes per 32 elements: 53% of F16),
    /// as llama.cpp's `-ctk q8_0 -ctv q8_0`; each new key and value row is quantized once.
    Q8_0,
}

impl KvType {
    /// Every type, for listings and tests.
    pub const ALL: [KvType; 3] = [KvType::F32, KvType::F16, KvType::Q8_0];

    /// The name on the command line and in Python (`f32`, `f16`, `q8_0`).
    pub fn name(self) -> &'static str {
        match self {
            KvType::F32 => "f32",
            KvType::F16 => "f16",
            KvType::Q8_0 => "q8_0",
        }
    }

    /// The type named `name` (see [`KvType::name`]).
    pub fn from_name(name: &str) -> Option<KvType> {
        KvType::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Bytes that `n` elements take (`n` a multiple of 32 for Q8_0).
    pub fn bytes(self, n: usize) -> usize {
        match self {
            KvType::F32 => 4 * n,
            KvType::F16 => 2 * n,
            KvType::Q8_0 => n / 32 * std::mem::size_of::<quill_quant::BlockQ8_0>(),
        }
    }
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

/// A run of the model over one sequence: the one-sequence case of [`crate::BatchSession`]
/// (one slot, the fastest one-row kernels), fed a prompt in batches of `n_batch` tokens.
pub struct Session<'m, 'a> {
    inner: BatchSession<'m, 'a>,
    batch: Batch,
}

impl<'m, 'a> Session<'m, 'a> {
    fn new(model: &'m Gpt2Model<'a>, opts: SessionOptions) -> Result<Self, ModelError> {
        let n_ctx = if opts.n_ctx == 0 { model.config.n_ctx } else { opts.n_ctx };
        let n_batch = opts.n_batch.clamp(1, n_ctx.max(1));
        let inner = BatchSession::new(
            model,
            BatchOptions { n_seq: 1, n_ctx, n_batch, logit_rows: 1, kv_type: opts.kv_type, row_invariant: false },
        )?;
        Ok(Session { inner, batch: Batch::with_capacity(n_batch, 1) })
    }

    /// Tokens evaluated so far (the next token's position).
    pub fn pos(&self) -> usize {
        self.inner.seq_len(0)
    }

    /// The session's context length.
    pub fn n_ctx(&self) -> usize {
        self.inner.n_ctx()
    }

    /// Forgets all tokens (the cache is overwritten as new ones come).
    pub fn reset(&mut self) {
        self.inner.clear_seq(0);
    }

    /// Bytes held by the KV cache.
    pub fn kv_bytes(&self) -> usize {
        self.inner.kv_bytes()
    }

    /// Evaluates a prompt in batches and returns the logits of its last token.
    pub fn prefill(&mut self, ids: &[u32]) -> Result<&[f32], ModelError> {
        self.eval(ids, usize::MAX, &mut |_, _| {})?;
        Ok(self.inner.first_logits())
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
        self.inner.set_logit_rows(LOGIT_ROWS);
        self.eval(ids, from, f)
    }

    /// `ids` in batches of `n_batch`, the whole checked first; rows from `from` on go to `f`
    /// (`usize::MAX`: only the last row's logits are computed, left first in the buffer).
    fn eval(&mut self, ids: &[u32], from: usize, f: &mut (dyn FnMut(usize, &[f32]) + Send)) -> Result<(), ModelError> {
        self.inner.check_span(0, self.pos(), ids)?;
        let n_batch = self.inner.n_batch();
        for (c, chunk) in ids.chunks(n_batch).enumerate() {
            let base = c * n_batch;
            let last = chunk.len() - 1;
            let from_here = from.saturating_sub(base).min(last);
            self.batch.clear();
            let logits = if from == usize::MAX { SpanLogits::Last } else { SpanLogits::From(from_here) };
            self.batch.push(0, self.pos(), chunk, logits);
            let v = self.inner.model().config.n_vocab;
            let mut rows_seen = 0;
            self.inner.forward(&self.batch, &mut |first, rows| {
                for (t, row) in rows.chunks_exact(v).enumerate() {
                    let i = base + from_here + first + t;
                    if from != usize::MAX && i >= from {
                        f(i, row);
                    }
                    rows_seen = t;
                }
            })?;
            // The last position's logits first in the buffer, as after `prefill`.
            self.inner.keep_logits_row(rows_seen);
        }
        Ok(())
    }
}
