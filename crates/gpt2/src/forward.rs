//! The forward pass, written once for one sequence or many: the KV cache (one slot per
//! sequence), the activation buffers, and a batch of tokens cut into *spans* (consecutive
//! tokens of one sequence). Every weight matmul takes all rows of the batch at once; the
//! attention runs per span, over that sequence's own slot of the cache.
//!
//! [`crate::Session`] runs one span in slot 0; [`crate::BatchSession`] runs many.

use half::f16;
use half::slice::HalfFloatSliceExt;
use quill_kernels::{self as k, AttnScratch, KvSlice, MatmulScratch};
use quill_quant::BlockQ8_0;

use crate::{Gpt2Model, KvType};

/// A run of consecutive tokens of one sequence inside a batch: batch rows
/// `start..start + len` hold the tokens at positions `pos..pos + len` of the sequence whose KV
/// cache is slot `slot`. Logits are computed for the span's rows `logits_from..len` (relative
/// to `start`; `len` means none, `len - 1` the last row only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub slot: usize,
    pub pos: usize,
    pub start: usize,
    pub len: usize,
    pub logits_from: usize,
}

impl Span {
    /// Rows of this span whose logits are computed.
    pub fn n_logits(&self) -> usize {
        self.len - self.logits_from
    }
}

/// Keys or values of every slot: `[n_slot][n_layer][n_head][n_ctx][head_dim]`, each head's
/// positions one run of memory (what the attention kernels read). Indices count elements;
/// a Q8_0 buffer holds 32 per block, and every index and length given to it is a multiple of
/// 32 (head rows, checked at creation).
enum KvBuf {
    F32(Vec<f32>),
    F16(Vec<f16>),
    Q8_0(Vec<BlockQ8_0>),
}

impl KvBuf {
    fn new(ty: KvType, n: usize) -> KvBuf {
        match ty {
            KvType::F32 => KvBuf::F32(vec![0.0; n]),
            KvType::F16 => KvBuf::F16(vec![f16::ZERO; n]),
            KvType::Q8_0 => KvBuf::Q8_0(vec![BlockQ8_0 { d: f16::ZERO, qs: [0; 32] }; n / 32]),
        }
    }

    fn write(&mut self, at: usize, src: &[f32]) {
        match self {
            KvBuf::F32(c) => c[at..at + src.len()].copy_from_slice(src),
            KvBuf::F16(c) => c[at..at + src.len()].convert_from_f32_slice(src),
            KvBuf::Q8_0(c) => k::Kernels::active().quantize_q8_0(src, &mut c[at / 32..(at + src.len()) / 32]),
        }
    }

    fn slice(&self, start: usize, len: usize) -> KvSlice<'_> {
        match self {
            KvBuf::F32(c) => KvSlice::F32(&c[start..start + len]),
            KvBuf::F16(c) => KvSlice::F16(&c[start..start + len]),
            KvBuf::Q8_0(c) => KvSlice::Q8_0(&c[start / 32..(start + len) / 32]),
        }
    }

    fn copy_within(&mut self, src: usize, dst: usize, len: usize) {
        match self {
            KvBuf::F32(c) => c.copy_within(src..src + len, dst),
            KvBuf::F16(c) => c.copy_within(src..src + len, dst),
            KvBuf::Q8_0(c) => c.copy_within(src / 32..(src + len) / 32, dst / 32),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            KvBuf::F32(c) => std::mem::size_of_val(c.as_slice()),
            KvBuf::F16(c) => std::mem::size_of_val(c.as_slice()),
            KvBuf::Q8_0(c) => std::mem::size_of_val(c.as_slice()),
        }
    }
}

/// The KV cache of `n_slot` sequences of up to `n_ctx` positions each.
pub(crate) struct KvCache {
    k: KvBuf, // [n_slot][n_layer][n_head][n_ctx][head_dim]
    v: KvBuf, // [n_slot][n_layer][n_head][n_ctx][head_dim]
    n_slot: usize,
    n_layer: usize,
    n_ctx: usize,
    n_head: usize,
    head_dim: usize,
}

impl KvCache {
    pub(crate) fn new(ty: KvType, n_slot: usize, model: &Gpt2Model<'_>, n_ctx: usize) -> KvCache {
        let c = &model.config;
        let n = n_slot * c.n_layer * n_ctx * c.n_embd;
        KvCache {
            k: KvBuf::new(ty, n),
            v: KvBuf::new(ty, n),
            n_slot,
            n_layer: c.n_layer,
            n_ctx,
            n_head: c.n_head,
            head_dim: c.head_dim(),
        }
    }

    /// Elements of one layer of one slot.
    fn layer_len(&self) -> usize {
        self.n_head * self.n_ctx * self.head_dim
    }

    /// Index of position `pos` of head `h` of layer `l` of `slot`.
    fn at(&self, slot: usize, l: usize, h: usize, pos: usize) -> usize {
        (slot * self.n_layer + l) * self.layer_len() + (h * self.n_ctx + pos) * self.head_dim
    }

    /// Stores the key and value rows (`[n_embd]` each) of position `pos` of layer `l` of `slot`.
    fn write(&mut self, slot: usize, l: usize, pos: usize, k: &[f32], v: &[f32]) {
        let hd = self.head_dim;
        for h in 0..self.n_head {
            let at = self.at(slot, l, h, pos);
            self.k.write(at, &k[h * hd..(h + 1) * hd]);
            self.v.write(at, &v[h * hd..(h + 1) * hd]);
        }
    }

    /// Keys and values of layer `l` of `slot`, as the attention kernels take them.
    fn layer(&self, slot: usize, l: usize) -> (KvSlice<'_>, KvSlice<'_>) {
        let (at, n) = (self.at(slot, l, 0, 0), self.layer_len());
        (self.k.slice(at, n), self.v.slice(at, n))
    }

    /// Copies positions `0..n` of every layer from slot `src` to slot `dst`.
    pub(crate) fn copy_prefix(&mut self, src: usize, dst: usize, n: usize) {
        debug_assert!(src < self.n_slot && dst < self.n_slot && n <= self.n_ctx);
        for l in 0..self.n_layer {
            for h in 0..self.n_head {
                let (s, d) = (self.at(src, l, h, 0), self.at(dst, l, h, 0));
                self.k.copy_within(s, d, n * self.head_dim);
                self.v.copy_within(s, d, n * self.head_dim);
            }
        }
    }

    pub(crate) fn bytes(&self) -> usize {
        self.k.bytes() + self.v.bytes()
    }

    pub(crate) fn n_slot(&self) -> usize {
        self.n_slot
    }
}

/// Every buffer a forward pass needs, allocated once.
pub(crate) struct RunState {
    x: Vec<f32>,    // [n_batch][n_embd] residual stream
    h: Vec<f32>,    // [max(n_batch, logit_rows)][n_embd] layer-norm output
    qkv: Vec<f32>,  // [n_batch][3 * n_embd]
    att: Vec<f32>,  // [n_batch][n_embd] attention output
    proj: Vec<f32>, // [n_batch][n_embd] projections added to the residual
    ff: Vec<f32>,   // [n_batch][n_ff]
    /// `[logit_rows][n_vocab]` logits of the selected rows, computed `logit_rows` at a time.
    pub(crate) logits: Vec<f32>,
    logit_rows: usize,
    pub(crate) mm: MatmulScratch,
    attn: Vec<AttnScratch>, // [max spans per batch] decode scores
}

impl RunState {
    /// Buffers for batches of up to `n_batch` rows in up to `n_span` spans, over contexts of
    /// `n_ctx`, with logits computed `logit_rows` rows at a time.
    pub(crate) fn new(model: &Gpt2Model<'_>, n_batch: usize, n_span: usize, n_ctx: usize, logit_rows: usize) -> Self {
        let c = &model.config;
        let (e, b) = (c.n_embd, n_batch);
        RunState {
            x: vec![0.0; b * e],
            h: vec![0.0; b.max(logit_rows) * e],
            qkv: vec![0.0; b * 3 * e],
            att: vec![0.0; b * e],
            proj: vec![0.0; b * e],
            ff: vec![0.0; b * c.n_ff],
            logits: vec![0.0; logit_rows * c.n_vocab],
            logit_rows,
            mm: MatmulScratch::new(),
            attn: (0..n_span).map(|_| AttnScratch::new(c.n_head, n_ctx)).collect(),
        }
    }

    /// Bytes of the f32 buffers a `new` with these sizes allocates (for the memory check).
    pub(crate) fn bytes_needed(
        model: &Gpt2Model<'_>,
        n_batch: usize,
        n_span: usize,
        n_ctx: usize,
        rows: usize,
    ) -> u128 {
        let c = &model.config;
        let (e, b) = (c.n_embd, n_batch);
        let floats = [b * e * 3, b.max(rows) * e, b * 3 * e, b * c.n_ff, rows * c.n_vocab, n_span * c.n_head * n_ctx];
        floats.iter().map(|&n| n as u128 * 4).sum()
    }

    /// Grows the logits buffer to `rows` rows (perplexity asks for many at once).
    pub(crate) fn set_logit_rows(&mut self, model: &Gpt2Model<'_>, rows: usize) {
        if rows > self.logit_rows {
            self.logits = vec![0.0; rows * model.config.n_vocab];
            self.h.resize(self.h.len().max(rows * model.config.n_embd), 0.0);
        }
        self.logit_rows = rows;
    }
}

/// One forward pass over `ids` (`[n_tokens]`, `n_tokens <= n_batch`) cut into `spans`, which
/// the callers have checked: they cover rows `0..ids.len()` in order, without gaps, each slot
/// at most once, each within its context, and the cache of every slot holds the positions
/// before its span. Writes each span's keys and values into its slot, then hands the logits of
/// the selected rows to `f(first, rows)`, at most `logit_rows` rows at a time, in batch order:
/// `first` numbers the first of them among all selected rows, `rows` is `[m][n_vocab]`.
///
/// Every step is applied per row, so that a row's numbers do not depend on the other rows of
/// the batch: layer norms, biases and GELU row by row, attention per span, and the weight
/// matmuls row-invariant when the scratch says so ([`MatmulScratch::set_row_invariant`]).
pub(crate) fn forward(
    model: &Gpt2Model<'_>,
    s: &mut RunState,
    kv: &mut KvCache,
    ids: &[u32],
    spans: &[Span],
    f: &mut dyn FnMut(usize, &[f32]),
) {
    let c = &model.config;
    let w = &model.weights;
    let (n, e) = (ids.len(), c.n_embd);
    let x = &mut s.x[..n * e];

    // Embeddings: x[t] = wte[id] + wpe[pos].
    for sp in spans {
        for t in 0..sp.len {
            let row = sp.start + t;
            let xt = &mut x[row * e..(row + 1) * e];
            w.token_embd.dequantize_row(ids[row] as usize, xt);
            w.position_embd.dequantize_row(sp.pos + t, &mut s.h[..e]);
            k::add_assign(xt, &s.h[..e]);
        }
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
        let q = &mut s.h[..n * e]; // ln_1 output is no longer needed: reuse it for Q
        for sp in spans {
            for t in 0..sp.len {
                let row_i = sp.start + t;
                let row = &qkv[row_i * 3 * e..(row_i + 1) * 3 * e];
                q[row_i * e..(row_i + 1) * e].copy_from_slice(&row[..e]);
                kv.write(sp.slot, l, sp.pos + t, &row[e..2 * e], &row[2 * e..]);
            }
        }
        let att = &mut s.att[..n * e];
        attend(model, kv, l, spans, q, att, &mut s.attn);
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
        // Row by row: a SIMD kernel's tail must not treat a row differently by where it sits.
        for row in ff.chunks_exact_mut(c.n_ff) {
            k::gelu(row);
        }
        k::matmul(&layer.ffn_down, ff, n, proj, &mut s.mm);
        k::add_bias(proj, &layer.ffn_down_b);
        k::add_assign(x, proj);
    }

    // ln_f, then logits for the selected rows, `logit_rows` at a time.
    let (v, cap) = (c.n_vocab, s.logit_rows);
    let (mut m, mut done) = (0, 0);
    for sp in spans {
        for row in sp.start + sp.logits_from..sp.start + sp.len {
            k::layer_norm(&x[row * e..(row + 1) * e], &w.ln_f_w, &w.ln_f_b, c.eps, &mut s.h[m * e..(m + 1) * e]);
            m += 1;
            if m == cap {
                k::matmul(&w.output, &s.h[..m * e], m, &mut s.logits[..m * v], &mut s.mm);
                f(done, &s.logits[..m * v]);
                done += m;
                m = 0;
            }
        }
    }
    if m > 0 {
        k::matmul(&w.output, &s.h[..m * e], m, &mut s.logits[..m * v], &mut s.mm);
        f(done, &s.logits[..m * v]);
    }
}

/// Attention of every span against its own slot, spans in parallel (each span's own work is
/// split over heads by the kernel). `att` holds the rows of `spans`, `q` the whole batch.
fn attend(
    model: &Gpt2Model<'_>,
    kv: &KvCache,
    l: usize,
    spans: &[Span],
    q: &[f32],
    att: &mut [f32],
    scratch: &mut [AttnScratch],
) {
    let c = &model.config;
    let e = c.n_embd;
    match spans {
        [] => {}
        [sp] => {
            let (keys, values) = kv.layer(sp.slot, l);
            k::attention(
                &q[sp.start * e..(sp.start + sp.len) * e],
                keys,
                values,
                sp.pos,
                sp.len,
                c.n_head,
                c.head_dim(),
                att,
                &mut scratch[0],
            );
        }
        _ => {
            let mid = spans.len() / 2;
            let (left, right) = spans.split_at(mid);
            let (att_l, att_r) = att.split_at_mut((right[0].start - left[0].start) * e);
            let (sc_l, sc_r) = scratch.split_at_mut(mid);
            rayon::join(|| attend(model, kv, l, left, q, att_l, sc_l), || attend(model, kv, l, right, q, att_r, sc_r));
        }
    }
}
