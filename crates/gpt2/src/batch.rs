//! Many sequences in one forward pass (llama.cpp's `llama_batch`): every token carries its
//! sequence and position; the weight matmuls take all rows at once, the attention runs per
//! sequence over that sequence's own slot of the KV cache.

use quill_kernels as k;

use crate::forward::{self, KvCache, RunState, Span};
use crate::{Gpt2Model, KvType, ModelError};

/// Which logits a sequence's tokens in a batch ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanLogits {
    /// None (a prompt chunk that does not end the prompt).
    None,
    /// The last token's (a decode step, the end of a prompt).
    Last,
    /// Every token's from this index of the span on (scoring a prompt).
    From(usize),
}

/// The tokens of one forward pass: for each sequence, a run of consecutive tokens at
/// consecutive positions. Buffers are reused from one step to the next.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    ids: Vec<u32>,
    spans: Vec<Span>,
}

impl Batch {
    /// An empty batch with room for `n_tokens` tokens in `n_seq` sequences.
    pub fn with_capacity(n_tokens: usize, n_seq: usize) -> Batch {
        Batch { ids: Vec::with_capacity(n_tokens), spans: Vec::with_capacity(n_seq) }
    }

    pub fn clear(&mut self) {
        self.ids.clear();
        self.spans.clear();
    }

    /// Adds `ids` of the sequence in `slot` at positions `pos..pos + ids.len()`.
    pub fn push(&mut self, slot: usize, pos: usize, ids: &[u32], logits: SpanLogits) {
        let len = ids.len();
        let logits_from = match logits {
            SpanLogits::None => len,
            SpanLogits::Last => len.saturating_sub(1),
            SpanLogits::From(i) => i.min(len),
        };
        self.spans.push(Span { slot, pos, start: self.ids.len(), len, logits_from });
        self.ids.extend_from_slice(ids);
    }

    /// Tokens in the batch.
    pub fn n_tokens(&self) -> usize {
        self.ids.len()
    }

    /// Rows whose logits the batch asks for.
    pub fn n_logits(&self) -> usize {
        self.spans.iter().map(Span::n_logits).sum()
    }

    /// The runs of tokens, in batch order.
    pub fn spans(&self) -> &[Span] {
        &self.spans
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// Options of a [`BatchSession`].
#[derive(Clone, Copy, Debug)]
pub struct BatchOptions {
    /// Sequences (KV slots).
    pub n_seq: usize,
    /// Positions per sequence; 0 means the model's context.
    pub n_ctx: usize,
    /// Most tokens in one batch.
    pub n_batch: usize,
    /// Rows of logits computed in one matmul (more rows run in several).
    pub logit_rows: usize,
    pub kv_type: KvType,
    /// Every weight matmul row-invariant ([`quill_kernels::MatmulScratch::set_row_invariant`]):
    /// a sequence's numbers then do not depend on the other sequences of its batch nor on the
    /// thread count.
    pub row_invariant: bool,
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions { n_seq: 1, n_ctx: 0, n_batch: 512, logit_rows: 1, kv_type: KvType::F16, row_invariant: true }
    }
}

/// Run state for many sequences: a KV cache of `n_seq` slots of `n_ctx` positions and the
/// buffers of batches of up to `n_batch` tokens. Which sequence owns which slot is the
/// caller's business; the session checks that every batch is well formed.
pub struct BatchSession<'m, 'a> {
    model: &'m Gpt2Model<'a>,
    s: RunState,
    kv: KvCache,
    n_ctx: usize,
    n_batch: usize,
    /// `[n_seq]` positions held by each slot.
    len: Vec<usize>,
    /// `[n_seq]` scratch of `check`: slots seen in the batch.
    seen: Vec<bool>,
}

impl<'m, 'a> BatchSession<'m, 'a> {
    pub fn new(model: &'m Gpt2Model<'a>, opts: BatchOptions) -> Result<Self, ModelError> {
        let c = &model.config;
        let n_ctx = if opts.n_ctx == 0 { c.n_ctx } else { opts.n_ctx };
        if n_ctx > c.n_ctx {
            return Err(ModelError::ContextTooLarge { requested: n_ctx, max: c.n_ctx });
        }
        if opts.n_seq == 0 {
            return Err(ModelError::BadBatch("a batch session needs at least one sequence".into()));
        }
        let n_batch = opts.n_batch.max(1);
        let rows = opts.logit_rows.max(1);
        if opts.kv_type == KvType::Q8_0 && !c.head_dim().is_multiple_of(32) {
            return Err(ModelError::KvTypeUnsupported { kv: opts.kv_type.name(), head_dim: c.head_dim() });
        }
        let kv = 2 * opts.kv_type.bytes(opts.n_seq * c.n_layer * n_ctx * c.n_embd) as u128;
        let needed = kv + RunState::bytes_needed(model, n_batch, opts.n_seq, n_ctx, rows);
        if let Some(available) = quill_sysinfo::mem_available() {
            if needed > u128::from(available) {
                return Err(ModelError::OutOfMemory { needed: needed as u64, available, n_ctx });
            }
        }
        let mut s = RunState::new(model, n_batch, opts.n_seq, n_ctx, rows);
        s.mm.set_row_invariant(opts.row_invariant);
        let kv = KvCache::new(opts.kv_type, opts.n_seq, model, n_ctx);
        Ok(BatchSession { model, s, kv, n_ctx, n_batch, len: vec![0; opts.n_seq], seen: vec![false; opts.n_seq] })
    }

    /// Evaluates `batch` and hands the logits of the rows it asks for to `f(first, rows)`,
    /// `rows` being `[m][n_vocab]` and `first` the index of its first row among all the rows
    /// asked for (in batch order). Each slot's cache then holds the positions up to the end
    /// of its span. Allocates nothing.
    pub fn forward(&mut self, batch: &Batch, f: &mut (dyn FnMut(usize, &[f32]) + Send)) -> Result<(), ModelError> {
        self.check(batch)?;
        let (model, s, kv) = (self.model, &mut self.s, &mut self.kv);
        // On a pool thread the kernels split their work without blocking hand-offs.
        k::in_pool(|| forward::forward(model, s, kv, &batch.ids, &batch.spans, f));
        for sp in &batch.spans {
            self.len[sp.slot] = sp.pos + sp.len;
        }
        Ok(())
    }

    /// Whether `ids` may be evaluated in `slot` from position `pos` on (in as many batches as
    /// they need): not empty, in the vocabulary, within the context.
    pub fn check_span(&self, slot: usize, pos: usize, ids: &[u32]) -> Result<(), ModelError> {
        if ids.is_empty() {
            return Err(ModelError::EmptyInput);
        }
        let n_vocab = self.model.config.n_vocab;
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= n_vocab) {
            return Err(ModelError::BadToken { id, n_vocab });
        }
        if slot >= self.len.len() {
            return Err(ModelError::BadBatch(format!(
                "slot {slot} does not exist (the session has {})",
                self.len.len()
            )));
        }
        let needed = pos + ids.len();
        if needed > self.n_ctx {
            return Err(ModelError::ContextFull { needed, n_ctx: self.n_ctx, max: self.model.config.n_ctx });
        }
        Ok(())
    }

    fn check(&mut self, batch: &Batch) -> Result<(), ModelError> {
        let bad = |msg: String| Err(ModelError::BadBatch(msg));
        if batch.ids.is_empty() {
            return Err(ModelError::EmptyInput);
        }
        if batch.ids.len() > self.n_batch {
            return bad(format!("{} tokens, the session takes at most {}", batch.ids.len(), self.n_batch));
        }
        self.seen.fill(false);
        for sp in &batch.spans {
            if sp.slot >= self.len.len() {
                return bad(format!("slot {} does not exist (the session has {})", sp.slot, self.len.len()));
            }
            if std::mem::replace(&mut self.seen[sp.slot], true) {
                return bad(format!("slot {} appears twice in one batch", sp.slot));
            }
            if sp.len == 0 {
                return bad(format!("slot {} has no tokens", sp.slot));
            }
            if sp.pos > self.len[sp.slot] {
                return bad(format!(
                    "slot {} holds {} positions, a batch cannot start it at {}",
                    sp.slot, self.len[sp.slot], sp.pos
                ));
            }
            self.check_span(sp.slot, sp.pos, &batch.ids[sp.start..sp.start + sp.len])?;
        }
        Ok(())
    }

    /// The first row of logits of the last `forward` (a one-sequence session's last token).
    pub(crate) fn first_logits(&self) -> &[f32] {
        &self.s.logits[..self.model.config.n_vocab]
    }

    /// Moves row `t` of the last `forward`'s last block of logits to the front.
    pub(crate) fn keep_logits_row(&mut self, t: usize) {
        let v = self.model.config.n_vocab;
        self.s.logits.copy_within(t * v..(t + 1) * v, 0);
    }

    /// Computes logits for up to `rows` rows at once from now on.
    pub(crate) fn set_logit_rows(&mut self, rows: usize) {
        self.s.set_logit_rows(self.model, rows);
    }

    /// Makes slot `dst` hold the first `n` positions of slot `src` (sequences that share a
    /// prompt evaluate it once).
    pub fn copy_seq(&mut self, src: usize, dst: usize, n: usize) -> Result<(), ModelError> {
        let n_seq = self.len.len();
        if src >= n_seq || dst >= n_seq {
            return Err(ModelError::BadBatch(format!("copy from slot {src} to {dst}: the session has {n_seq}")));
        }
        if n > self.len[src] {
            return Err(ModelError::BadBatch(format!("slot {src} holds {} positions, not {n}", self.len[src])));
        }
        if src != dst {
            self.kv.copy_prefix(src, dst, n);
        }
        self.len[dst] = n;
        Ok(())
    }

    /// Keeps only the first `n` positions of `slot` (a new sequence that shares them starts
    /// after them); `n` must not exceed what the slot holds.
    pub fn truncate_seq(&mut self, slot: usize, n: usize) -> Result<(), ModelError> {
        match self.len.get_mut(slot) {
            Some(l) if n <= *l => {
                *l = n;
                Ok(())
            }
            Some(l) => Err(ModelError::BadBatch(format!("slot {slot} holds {l} positions, not {n}"))),
            None => Err(ModelError::BadBatch(format!("slot {slot} does not exist"))),
        }
    }

    /// Forgets the positions of `slot` (a new sequence takes it).
    pub fn clear_seq(&mut self, slot: usize) {
        if let Some(l) = self.len.get_mut(slot) {
            *l = 0;
        }
    }

    /// Positions held by `slot`.
    pub fn seq_len(&self, slot: usize) -> usize {
        self.len.get(slot).copied().unwrap_or(0)
    }

    /// Sequences (slots).
    pub fn n_seq(&self) -> usize {
        self.kv.n_slot()
    }

    /// Positions per sequence.
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// Most tokens in one batch.
    pub fn n_batch(&self) -> usize {
        self.n_batch
    }

    /// Bytes of the whole KV cache.
    pub fn kv_bytes(&self) -> usize {
        self.kv.bytes()
    }

    /// Bytes of the KV cache of one sequence.
    pub fn kv_bytes_per_seq(&self) -> usize {
        self.kv.bytes() / self.kv.n_slot()
    }

    pub fn model(&self) -> &'m Gpt2Model<'a> {
        self.model
    }
}
