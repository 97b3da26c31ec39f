//! The model (config + weights + tokenizer) and the session that runs it.

use gguf_file::GgufFile;
use half::f16;
use half::slice::HalfFloatSliceExt;
use quill_kernels::{self as k, AttnScratch, KvSlice, MatmulScratch};

use crate::{Gpt2Config, Gpt2Weights, ModelError, Tokenizer};

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

/// The KV cache of all layers, `[n_layer][n_ctx][n_embd]`.
enum KvCache {
    F32(Vec<f32>),
    F16(Vec<f16>),
}

impl KvCache {
    fn new(ty: KvType, n: usize) -> KvCache {
        match ty {
            KvType::F32 => KvCache::F32(vec![0.0; n]),
            KvType::F16 => KvCache::F16(vec![f16::ZERO; n]),
        }
    }

    fn write(&mut self, at: usize, src: &[f32]) {
        match self {
            KvCache::F32(c) => c[at..at + src.len()].copy_from_slice(src),
            KvCache::F16(c) => c[at..at + src.len()].convert_from_f32_slice(src),
        }
    }

    fn slice(&self, start: usize, len: usize) -> KvSlice<'_> {
        match self {
            KvCache::F32(c) => KvSlice::F32(&c[start..start + len]),
            KvCache::F16(c) => KvSlice::F16(&c[start..start + len]),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            KvCache::F32(c) => c.len() * 4,
            KvCache::F16(c) => c.len() * 2,
        }
    }
}

/// Every buffer a forward pass needs, allocated once per session.
struct RunState {
    x: Vec<f32>,      // [n_batch][n_embd] residual stream
    h: Vec<f32>,      // [n_batch][n_embd] layer-norm output
    qkv: Vec<f32>,    // [n_batch][3 * n_embd]
    att: Vec<f32>,    // [n_batch][n_embd] attention output
    proj: Vec<f32>,   // [n_batch][n_embd] projections added to the residual
    ff: Vec<f32>,     // [n_batch][n_ff]
    logits: Vec<f32>, // [n_vocab] logits of the last position
    rows: Vec<f32>,   // [LOGIT_ROWS][n_vocab] for eval_rows, allocated on first use
    k: KvCache,       // [n_layer][n_ctx][n_embd]
    v: KvCache,       // [n_layer][n_ctx][n_embd]
    mm: MatmulScratch,
    attn: AttnScratch,
}

/// Which logits a forward pass computes.
enum Logits<'o> {
    /// Only the last position's, into the session's buffer.
    Last,
    /// Those of batch rows `from..`, handed to the callback with their position in the batch,
    /// in groups of [`LOGIT_ROWS`] (the buffer for a whole batch of 50257-wide rows would be
    /// 100 MB).
    Rows { from: usize, f: &'o mut dyn FnMut(usize, &[f32]) },
}

/// Rows of logits computed together by [`Session::eval_rows`].
const LOGIT_ROWS: usize = 32;

/// A run of the model: position, KV cache and buffers.
pub struct Session<'m, 'a> {
    model: &'m Gpt2Model<'a>,
    s: RunState,
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
        let (e, b) = (c.n_embd, n_batch);
        let kv = c.n_layer * n_ctx * e;
        // Refuse up front, with the figure, what would not fit: never an allocation failure.
        let elem = match opts.kv_type {
            KvType::F32 => 4,
            KvType::F16 => 2,
        };
        let floats = [b * e * 4, b * 3 * e, b * c.n_ff, c.n_vocab, c.n_head * n_ctx];
        let needed = (2 * kv as u128) * elem + floats.iter().map(|&n| n as u128 * 4).sum::<u128>();
        if let Some(available) = quill_sysinfo::mem_available() {
            if needed > u128::from(available) {
                return Err(ModelError::OutOfMemory { needed: needed as u64, available, n_ctx });
            }
        }
        let s = RunState {
            x: vec![0.0; b * e],
            h: vec![0.0; b * e],
            qkv: vec![0.0; b * 3 * e],
            att: vec![0.0; b * e],
            proj: vec![0.0; b * e],
            ff: vec![0.0; b * c.n_ff],
            logits: vec![0.0; c.n_vocab],
            rows: Vec::new(),
            k: KvCache::new(opts.kv_type, kv),
            v: KvCache::new(opts.kv_type, kv),
            mm: MatmulScratch::new(),
            attn: AttnScratch::new(c.n_head, n_ctx),
        };
        Ok(Session { model, s, n_ctx, n_batch, pos: 0 })
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
        self.s.k.bytes() + self.s.v.bytes()
    }

    /// Evaluates a prompt in batches and returns the logits of its last token.
    pub fn prefill(&mut self, ids: &[u32]) -> Result<&[f32], ModelError> {
        self.check(ids)?;
        let n_batch = self.n_batch;
        // On a pool thread the kernels split their work without blocking hand-offs.
        k::in_pool(|| {
            for chunk in ids.chunks(n_batch) {
                self.forward(chunk, Logits::Last);
            }
        });
        Ok(&self.s.logits)
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
        // On a pool thread the kernels split their work without blocking hand-offs.
        k::in_pool(|| {
            for (c, chunk) in ids.chunks(n_batch).enumerate() {
                let base = c * n_batch;
                let from_here = from.saturating_sub(base);
                if from_here >= chunk.len() {
                    self.forward(chunk, Logits::Last);
                    continue;
                }
                let mut g = |i: usize, row: &[f32]| f(base + i, row);
                self.forward(chunk, Logits::Rows { from: from_here, f: &mut g });
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

    /// One batch (`ids.len() <= n_batch`, checked by the callers) at positions `pos..`.
    fn forward(&mut self, ids: &[u32], logits: Logits<'_>) {
        let c = &self.model.config;
        let w = &self.model.weights;
        let s = &mut self.s;
        let (n, e, pos0) = (ids.len(), c.n_embd, self.pos);
        let x = &mut s.x[..n * e];

        // Embeddings: x[t] = wte[id] + wpe[pos].
        for (t, &id) in ids.iter().enumerate() {
            let xt = &mut x[t * e..(t + 1) * e];
            w.token_embd.dequantize_row(id as usize, xt);
            w.position_embd.dequantize_row(pos0 + t, &mut s.h[..e]);
            k::add_assign(xt, &s.h[..e]);
        }

        for (l, layer) in w.layers.iter().enumerate() {
            // x += attn(ln_1(x))
            let h = &mut s.h[..n * e];
            for (xt, ht) in x.chunks_exact(e).zip(h.chunks_exact_mut(e)) {
                k::layer_norm(xt, &layer.ln1_w, &layer.ln1_b, c.eps, ht);
            }
            let qkv = &mut s.qkv[..n * 3 * e];
            k::matmul(&layer.attn_qkv, h, n, qkv, &mut s.mm);
            k::add_bias(qkv, &layer.attn_qkv_b);
            let layer_base = l * self.n_ctx * e;
            let q = &mut s.h[..n * e]; // ln_1 output is no longer needed: reuse it for Q
            for t in 0..n {
                let row = &qkv[t * 3 * e..(t + 1) * 3 * e];
                q[t * e..(t + 1) * e].copy_from_slice(&row[..e]);
                let at = layer_base + (pos0 + t) * e;
                s.k.write(at, &row[e..2 * e]);
                s.v.write(at, &row[2 * e..]);
            }
            let n_kv = pos0 + n;
            let att = &mut s.att[..n * e];
            k::attention(
                q,
                s.k.slice(layer_base, n_kv * e),
                s.v.slice(layer_base, n_kv * e),
                pos0,
                n,
                c.n_head,
                c.head_dim(),
                att,
                &mut s.attn,
            );
            let proj = &mut s.proj[..n * e];
            k::matmul(&layer.attn_out, att, n, proj, &mut s.mm);
            k::add_bias(proj, &layer.attn_out_b);
            k::add_assign(x, proj);

            // x += mlp(ln_2(x))
            let h = &mut s.h[..n * e];
            for (xt, ht) in x.chunks_exact(e).zip(h.chunks_exact_mut(e)) {
                k::layer_norm(xt, &layer.ln2_w, &layer.ln2_b, c.eps, ht);
            }
            let ff = &mut s.ff[..n * c.n_ff];
            k::matmul(&layer.ffn_up, h, n, ff, &mut s.mm);
            k::add_bias(ff, &layer.ffn_up_b);
            k::gelu(ff);
            k::matmul(&layer.ffn_down, ff, n, proj, &mut s.mm);
            k::add_bias(proj, &layer.ffn_down_b);
            k::add_assign(x, proj);
        }

        // ln_f, then logits for the positions asked for.
        match logits {
            Logits::Last => self.last_logits(n),
            Logits::Rows { from, f } => self.row_logits(n, from, f),
        }
        self.pos += n;
    }

    /// `ln_f` and the output projection of the batch's last row, into `s.logits`.
    fn last_logits(&mut self, n: usize) {
        let (c, w, s) = (&self.model.config, &self.model.weights, &mut self.s);
        let e = c.n_embd;
        let (x, h) = (&s.x[(n - 1) * e..n * e], &mut s.h[..e]);
        k::layer_norm(x, &w.ln_f_w, &w.ln_f_b, c.eps, h);
        k::matmul(&w.output, h, 1, &mut s.logits, &mut s.mm);
    }

    /// `ln_f` and the output projection of batch rows `from..n`, [`LOGIT_ROWS`] at a time, each
    /// handed to `f` with its row in the batch; the last row's logits are also kept in
    /// `s.logits`.
    fn row_logits(&mut self, n: usize, from: usize, f: &mut dyn FnMut(usize, &[f32])) {
        let (c, w, s) = (&self.model.config, &self.model.weights, &mut self.s);
        let (e, v) = (c.n_embd, c.n_vocab);
        let (x, h) = (&s.x[..n * e], &mut s.h[..n * e]);
        if s.rows.is_empty() {
            s.rows = vec![0.0; LOGIT_ROWS * v];
        }
        for start in (from..n).step_by(LOGIT_ROWS) {
            let m = (n - start).min(LOGIT_ROWS);
            for t in 0..m {
                let row = start + t;
                let (xt, ht) = (&x[row * e..(row + 1) * e], &mut h[t * e..(t + 1) * e]);
                k::layer_norm(xt, &w.ln_f_w, &w.ln_f_b, c.eps, ht);
            }
            let out = &mut s.rows[..m * v];
            k::matmul(&w.output, &h[..m * e], m, out, &mut s.mm);
            for t in 0..m {
                f(start + t, &out[t * v..(t + 1) * v]);
            }
        }
        s.logits.copy_from_slice(&s.rows[((n - 1 - from) % LOGIT_ROWS) * v..][..v]);
    }
}
