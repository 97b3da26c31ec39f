//! The attention core: causal multi-head attention of new queries against the KV cache.
//!
//! * Decode (one query): per head, in parallel over heads, the scores of every cached key, a
//!   softmax, and the weighted sum of the values.
//! * Prefill (several queries): per (head, block of queries), in parallel, a flash-attention
//!   sweep over blocks of keys with an online softmax, so the score matrix is never stored.

use half::f16;
use quill_quant::BlockQ8_0;
use rayon::prelude::*;

use crate::Kernels;

/// Keys or values of one layer, `[n_head][cap][head_dim]` (see [`attention`]): f32, f16, or
/// ggml's Q8_0 blocks (32 elements each, so heads must be a multiple of 32 wide, as GPT-2's 64
/// are).
#[derive(Clone, Copy)]
pub enum KvSlice<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
    Q8_0(&'a [BlockQ8_0]),
}

impl KvSlice<'_> {
    /// Elements held.
    fn elems(&self) -> usize {
        match self {
            KvSlice::F32(a) => a.len(),
            KvSlice::F16(a) => a.len(),
            KvSlice::Q8_0(a) => a.len() * 32,
        }
    }
}

/// Scratch for [`attention`]: decode scores, sized for the context.
pub struct AttnScratch {
    scores: Vec<f32>,
    n_ctx: usize,
}

impl AttnScratch {
    /// Scratch for `n_head` heads and contexts up to `n_ctx` positions.
    pub fn new(n_head: usize, n_ctx: usize) -> Self {
        AttnScratch { scores: vec![0.0; n_head * n_ctx], n_ctx }
    }
}

/// `out[p] = scale * dot(q, k[p * stride..][..q.len()])` for `p < out.len()`.
pub(crate) type ScoresFn<T> = unsafe fn(q: &[f32], k: &[T], stride: usize, scale: f32, out: &mut [f32]);
/// `out[d] = sum_p w[p] * v[p * stride + d]` for `d < out.len()`, `p < w.len()` (overwrites).
pub(crate) type AccumFn<T> = unsafe fn(w: &[f32], v: &[T], stride: usize, out: &mut [f32]);
/// One head for a block of queries (see [`FlashJob`]).
pub(crate) type FlashFn<T> = unsafe fn(job: &mut FlashJob<'_, T>);

/// Causal attention of `n_q` queries of one head: query `i` (row `q[i * q_stride..][..hd]`)
/// attends to keys `0..=first + i` (row `p` of `k` from unit `p * kv_stride`, values likewise) and writes
/// `out[i * o_stride..][..hd]` through a raw pointer: the jobs of other heads write the other
/// columns of the same rows, so no job may hold a `&mut` slice over them.
pub(crate) struct FlashJob<'a, T> {
    pub q: &'a [f32],
    pub q_stride: usize,
    pub n_q: usize,
    pub k: &'a [T],
    pub v: &'a [T],
    pub kv_stride: usize,
    pub first: usize,
    pub hd: usize,
    pub scale: f32,
    pub out: *mut f32,
    pub o_stride: usize,
}

/// The attention kernels of a backend for one KV element type.
pub(crate) struct AttnFns<T> {
    pub scores: ScoresFn<T>,
    pub accum: AccumFn<T>,
    pub flash: FlashFn<T>,
}

/// The attention kernels of a backend.
pub(crate) struct AttnKernels {
    pub f32: AttnFns<f32>,
    pub f16: AttnFns<f16>,
    pub q8_0: AttnFns<BlockQ8_0>,
}

/// A unit of KV storage: one element (f32, f16) or a block of `BLOCK` elements (Q8_0). Rows
/// of the kernels start at a unit, and strides and offsets count units.
pub(crate) trait KvElem: Copy + Send + Sync {
    /// Elements per unit.
    const BLOCK: usize;
    /// Element `d` of the row that starts at `row[0]`.
    fn at(row: &[Self], d: usize) -> f32;
}

impl KvElem for f32 {
    const BLOCK: usize = 1;
    #[inline(always)]
    fn at(row: &[Self], d: usize) -> f32 {
        row[d]
    }
}

impl KvElem for f16 {
    const BLOCK: usize = 1;
    #[inline(always)]
    fn at(row: &[Self], d: usize) -> f32 {
        row[d].to_f32()
    }
}

impl KvElem for BlockQ8_0 {
    const BLOCK: usize = 32;
    /// The scale times the code: exact in f32 (an 11-bit significand times a 7-bit integer).
    #[inline(always)]
    fn at(row: &[Self], d: usize) -> f32 {
        let b = &row[d / 32];
        b.d.to_f32() * f32::from(b.qs[d % 32])
    }
}

/// Row `p` (`stride` units apart) of `x`, from its first unit.
fn row_at<T>(x: &[T], p: usize, stride: usize) -> &[T] {
    &x[p * stride..]
}

/// `q . row` in element order, times `scale`.
fn dot_ref<T: KvElem>(q: &[f32], row: &[T], scale: f32) -> f32 {
    q.iter().enumerate().map(|(d, &a)| a * T::at(row, d)).sum::<f32>() * scale
}

pub(crate) fn scores_ref<T: KvElem>(q: &[f32], k: &[T], stride: usize, scale: f32, out: &mut [f32]) {
    for (p, s) in out.iter_mut().enumerate() {
        *s = dot_ref(q, row_at(k, p, stride), scale);
    }
}

pub(crate) fn accum_ref<T: KvElem>(w: &[f32], v: &[T], stride: usize, out: &mut [f32]) {
    out.fill(0.0);
    for (p, &s) in w.iter().enumerate() {
        let row = row_at(v, p, stride);
        for (d, o) in out.iter_mut().enumerate() {
            *o += s * T::at(row, d);
        }
    }
}

/// Online softmax one key at a time (the reference of the blocked SIMD kernels).
pub(crate) fn flash_ref<T: KvElem>(job: &mut FlashJob<'_, T>) {
    let hd = job.hd;
    for i in 0..job.n_q {
        let q = &job.q[i * job.q_stride..i * job.q_stride + hd];
        let mut o = [0f32; MAX_HEAD_DIM];
        let o = &mut o[..hd];
        let (mut m, mut l) = (f32::NEG_INFINITY, 0.0f32);
        for p in 0..=job.first + i {
            let s = dot_ref(q, row_at(job.k, p, job.kv_stride), job.scale);
            let m_new = m.max(s);
            let (c, e) = ((m - m_new).exp(), (s - m_new).exp());
            l = l * c + e;
            let vp = row_at(job.v, p, job.kv_stride);
            for (d, od) in o.iter_mut().enumerate() {
                *od = *od * c + e * T::at(vp, d);
            }
            m = m_new;
        }
        let inv = 1.0 / l;
        for (d, od) in o.iter().enumerate() {
            // SAFETY: FlashJob's contract: row i of the output holds hd writable elements that
            // only this job touches.
            unsafe { *job.out.add(i * job.o_stride + d) = od * inv };
        }
    }
}

impl AttnKernels {
    pub(crate) const SCALAR: AttnKernels =
        AttnKernels { f32: AttnFns::SCALAR, f16: AttnFns::SCALAR, q8_0: AttnFns::SCALAR };
}

impl<T: KvElem> AttnFns<T> {
    const SCALAR: AttnFns<T> = AttnFns { scores: scores_ref::<T>, accum: accum_ref::<T>, flash: flash_ref::<T> };
}

/// The largest head size the prefill kernels take (GPT-2's is 64).
pub const MAX_HEAD_DIM: usize = 256;

/// Queries per prefill task: enough work per task, enough tasks for every thread.
pub(crate) const Q_BLOCK: usize = 32;

/// A raw output pointer shared by tasks that write disjoint elements.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32, usize);

impl OutPtr {
    /// The pointer `i` elements in (callers keep `i` inside the buffer).
    fn at(self, i: usize) -> *mut f32 {
        debug_assert!(i < self.1);
        // SAFETY: i is inside the buffer of self.1 elements (the caller's bound).
        unsafe { self.0.add(i) }
    }
}
// SAFETY: OutPtr is only dereferenced by tasks that write pairwise disjoint element ranges (one
// head's columns of one block of rows each), so sending it between threads races on nothing.
unsafe impl Send for OutPtr {}
// SAFETY: as above; shared references never read through it.
unsafe impl Sync for OutPtr {}

/// The shape of one [`attention`] call.
#[derive(Clone, Copy)]
struct AttnShape {
    pos0: usize,
    n_tok: usize,
    n_head: usize,
    head_dim: usize,
    /// Positions each head's part of the cache holds.
    cap: usize,
}

impl Kernels {
    /// [`attention`] with this table's kernels.
    #[allow(clippy::too_many_arguments)]
    pub fn attention(
        &self,
        q: &[f32],
        k: KvSlice<'_>,
        v: KvSlice<'_>,
        pos0: usize,
        n_tok: usize,
        n_head: usize,
        head_dim: usize,
        out: &mut [f32],
        scratch: &mut AttnScratch,
    ) {
        let n_embd = n_head * head_dim;
        let n_kv = pos0 + n_tok;
        assert!(n_kv <= scratch.n_ctx, "attention: context larger than the scratch");
        assert_eq!(q.len(), n_tok * n_embd, "attention: q has the wrong length");
        assert_eq!(out.len(), n_tok * n_embd, "attention: out has the wrong length");
        assert_eq!(k.elems(), v.elems(), "attention: keys and values differ in length");
        assert!(k.elems().is_multiple_of(n_embd.max(1)), "attention: the cache is not whole rows of {n_embd}");
        let cap = k.elems() / n_embd.max(1);
        assert!(cap >= n_kv, "attention: the cache holds {cap} positions, fewer than {n_kv}");
        assert!(head_dim <= MAX_HEAD_DIM, "attention: head_dim {head_dim} > {MAX_HEAD_DIM}");
        let shape = AttnShape { pos0, n_tok, n_head, head_dim, cap };
        let a = &self.ops.attn;
        match (k, v) {
            (KvSlice::F32(k), KvSlice::F32(v)) => self.attend(&a.f32, q, k, v, shape, out, scratch),
            (KvSlice::F16(k), KvSlice::F16(v)) => self.attend(&a.f16, q, k, v, shape, out, scratch),
            (KvSlice::Q8_0(k), KvSlice::Q8_0(v)) => {
                assert!(head_dim.is_multiple_of(32), "attention: a Q8_0 cache needs heads of a multiple of 32");
                self.attend(&a.q8_0, q, k, v, shape, out, scratch)
            }
            _ => panic!("attention: keys and values must have the same type"),
        }
    }

    /// [`Kernels::attention`] over caches of one element type (lengths checked by the caller).
    #[allow(clippy::too_many_arguments)]
    fn attend<T: KvElem>(
        &self,
        fns: &AttnFns<T>,
        q: &[f32],
        k: &[T],
        v: &[T],
        shape: AttnShape,
        out: &mut [f32],
        scratch: &mut AttnScratch,
    ) {
        let AttnShape { pos0, n_tok, n_head, head_dim, cap } = shape;
        let n_embd = n_head * head_dim;
        // Offsets and strides of the cache count its units (T::BLOCK elements each): head h's
        // rows start at unit h * cap * stride, one row of head_dim elements every stride.
        let stride = head_dim / T::BLOCK;
        let head = |h: usize| h * cap * stride;
        let scale = 1.0 / (head_dim as f32).sqrt();
        if n_tok == 1 {
            let n_kv = pos0 + 1;
            let (scores, n_ctx) = (&mut scratch.scores, scratch.n_ctx);
            out.par_chunks_mut(head_dim).zip(scores.par_chunks_mut(n_ctx)).enumerate().for_each(|(h, (oh, sc))| {
                let qh = &q[h * head_dim..(h + 1) * head_dim];
                let sc = &mut sc[..n_kv];
                // SAFETY: the table's kernels run on this CPU (Kernels::get), and the slices
                // hold n_kv rows of `stride` units from head(h) (checked by the caller: each
                // head holds cap >= n_kv positions).
                unsafe {
                    (fns.scores)(qh, &k[head(h)..], stride, scale, sc);
                    (self.ops.softmax)(sc);
                    (fns.accum)(sc, &v[head(h)..], stride, oh);
                }
            });
            return;
        }
        let n_blocks = n_tok.div_ceil(Q_BLOCK);
        let optr = OutPtr(out.as_mut_ptr(), out.len());
        (0..n_head * n_blocks).into_par_iter().for_each(|task| {
            // Heaviest (latest) query blocks first: causal work grows with the position.
            let (h, blk) = (task % n_head, n_blocks - 1 - task / n_head);
            let t0 = blk * Q_BLOCK;
            let n_q = Q_BLOCK.min(n_tok - t0);
            let col = h * head_dim;
            // t0 * n_embd + col lies inside `out` (length n_tok * n_embd, checked). The job
            // writes only columns col.. of rows t0..t0+n_q, which no other task writes (tasks
            // differ in head or in row block), and nothing reads `out` meanwhile.
            let o = optr.at(t0 * n_embd + col);
            let mut job = FlashJob {
                q: &q[t0 * n_embd + col..],
                q_stride: n_embd,
                n_q,
                k: &k[head(h)..],
                v: &v[head(h)..],
                kv_stride: stride,
                first: pos0 + t0,
                hd: head_dim,
                scale,
                out: o,
                o_stride: n_embd,
            };
            // SAFETY: as for decode; the job's slices cover every row the kernel reads.
            unsafe { (fns.flash)(&mut job) }
        });
    }
}

/// Causal attention for `n_tok` queries at positions `pos0..pos0 + n_tok`.
///
/// `q` and `out` are `[n_tok][n_head * head_dim]`; `k` and `v` are head-major,
/// `[n_head][cap][head_dim]` with `cap = len / (n_head * head_dim) >= pos0 + n_tok`, so that one
/// head's keys are one run of memory (a decode step reads them front to back, which the
/// hardware prefetchers follow; rows `n_head * head_dim` apart defeat them). Query `t` attends
/// to positions `0..=pos0 + t` with scale `1/sqrt(head_dim)`.
#[allow(clippy::too_many_arguments)]
pub fn attention(
    q: &[f32],
    k: KvSlice<'_>,
    v: KvSlice<'_>,
    pos0: usize,
    n_tok: usize,
    n_head: usize,
    head_dim: usize,
    out: &mut [f32],
    scratch: &mut AttnScratch,
) {
    Kernels::active().attention(q, k, v, pos0, n_tok, n_head, head_dim, out, scratch)
}
