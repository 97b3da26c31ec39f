//! The attention core: causal multi-head attention of new queries against the KV cache.
//!
//! * Decode (one query): per head, in parallel over heads, the scores of every cached key, a
//!   softmax, and the weighted sum of the values.
//! * Prefill (several queries): per (head, block of queries), in parallel, a flash-attention
//!   sweep over blocks of keys with an online softmax, so the score matrix is never stored.

use half::f16;
use rayon::prelude::*;

use crate::Kernels;

/// Keys or values for positions `0..n` of one layer, `[n][n_embd]`.
#[derive(Clone, Copy)]
pub enum KvSlice<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
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
/// attends to keys `0..=first + i` (`k[p * kv_stride..][..hd]`, values likewise) and writes
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

impl<'a, T> FlashJob<'a, T> {
    /// The same job over keys `k` and values `v`.
    fn with_kv<U>(&self, k: &'a [U], v: &'a [U]) -> FlashJob<'a, U> {
        let FlashJob { q, q_stride, n_q, kv_stride, first, hd, scale, out, o_stride, .. } = *self;
        FlashJob { q, q_stride, n_q, k, v, kv_stride, first, hd, scale, out, o_stride }
    }
}

/// The attention kernels of a backend.
pub(crate) struct AttnKernels {
    pub scores_f32: ScoresFn<f32>,
    pub scores_f16: ScoresFn<f16>,
    pub accum_f32: AccumFn<f32>,
    pub accum_f16: AccumFn<f16>,
    pub flash_f32: FlashFn<f32>,
    pub flash_f16: FlashFn<f16>,
}

/// A KV element read as f32.
pub(crate) trait KvElem: Copy + Send + Sync {
    fn f(self) -> f32;
}

impl KvElem for f32 {
    #[inline(always)]
    fn f(self) -> f32 {
        self
    }
}

impl KvElem for f16 {
    #[inline(always)]
    fn f(self) -> f32 {
        self.to_f32()
    }
}

pub(crate) fn scores_ref<T: KvElem>(q: &[f32], k: &[T], stride: usize, scale: f32, out: &mut [f32]) {
    for (p, s) in out.iter_mut().enumerate() {
        let kp = &k[p * stride..p * stride + q.len()];
        *s = q.iter().zip(kp).map(|(&a, &b)| a * b.f()).sum::<f32>() * scale;
    }
}

pub(crate) fn accum_ref<T: KvElem>(w: &[f32], v: &[T], stride: usize, out: &mut [f32]) {
    out.fill(0.0);
    for (p, &s) in w.iter().enumerate() {
        let n = out.len();
        for (o, &x) in out.iter_mut().zip(&v[p * stride..p * stride + n]) {
            *o += s * x.f();
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
            let kp = &job.k[p * job.kv_stride..p * job.kv_stride + hd];
            let s = q.iter().zip(kp).map(|(&a, &b)| a * b.f()).sum::<f32>() * job.scale;
            let m_new = m.max(s);
            let (c, e) = ((m - m_new).exp(), (s - m_new).exp());
            l = l * c + e;
            let vp = &job.v[p * job.kv_stride..p * job.kv_stride + hd];
            for (od, &vd) in o.iter_mut().zip(vp) {
                *od = *od * c + e * vd.f();
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
    pub(crate) const SCALAR: AttnKernels = AttnKernels {
        scores_f32: scores_ref::<f32>,
        scores_f16: scores_ref::<f16>,
        accum_f32: accum_ref::<f32>,
        accum_f16: accum_ref::<f16>,
        flash_f32: flash_ref::<f32>,
        flash_f16: flash_ref::<f16>,
    };
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
        let kv_len = match (k, v) {
            (KvSlice::F32(a), KvSlice::F32(b)) => a.len().min(b.len()),
            (KvSlice::F16(a), KvSlice::F16(b)) => a.len().min(b.len()),
            _ => panic!("attention: keys and values must have the same type"),
        };
        assert!(kv_len >= n_kv * n_embd, "attention: the cache holds fewer than {n_kv} positions");
        assert!(head_dim <= MAX_HEAD_DIM, "attention: head_dim {head_dim} > {MAX_HEAD_DIM}");
        let scale = 1.0 / (head_dim as f32).sqrt();
        let a = &self.ops.attn;
        if n_tok == 1 {
            let scores = &mut scratch.scores;
            out.par_chunks_mut(head_dim).zip(scores.par_chunks_mut(scratch.n_ctx)).enumerate().for_each(
                |(h, (oh, sc))| {
                    let qh = &q[h * head_dim..(h + 1) * head_dim];
                    let sc = &mut sc[..n_kv];
                    // SAFETY: the table's kernels run on this CPU (Kernels::get), and the
                    // slices hold n_kv rows of stride n_embd from column h * head_dim (checked
                    // above: kv_len >= n_kv * n_embd).
                    unsafe {
                        match (k, v) {
                            (KvSlice::F32(kk), KvSlice::F32(vv)) => {
                                (a.scores_f32)(qh, &kk[h * head_dim..], n_embd, scale, sc);
                                (self.ops.softmax)(sc);
                                (a.accum_f32)(sc, &vv[h * head_dim..], n_embd, oh);
                            }
                            (KvSlice::F16(kk), KvSlice::F16(vv)) => {
                                (a.scores_f16)(qh, &kk[h * head_dim..], n_embd, scale, sc);
                                (self.ops.softmax)(sc);
                                (a.accum_f16)(sc, &vv[h * head_dim..], n_embd, oh);
                            }
                            _ => unreachable!(),
                        }
                    }
                },
            );
            return;
        }
        let n_blocks = n_tok.div_ceil(Q_BLOCK);
        let optr = OutPtr(out.as_mut_ptr(), out.len());
        (0..n_head * n_blocks).into_par_iter().for_each(|task| {
            // Heaviest (latest) query blocks first: causal work grows with the position.
            let (h, blk) = (task % n_head, n_blocks - 1 - task / n_head);
            let t0 = blk * Q_BLOCK;
            let n_q = Q_BLOCK.min(n_tok - t0);
            let o_start = t0 * n_embd + h * head_dim;
            // o_start lies inside `out` (asserted length n_tok * n_embd). The job writes only
            // columns h*head_dim.. of rows t0..t0+n_q, which no other task writes (tasks differ
            // in head or in row block), and nothing reads `out` meanwhile.
            let o = optr.at(o_start);
            let col = h * head_dim;
            let job: FlashJob<'_, f32> = FlashJob {
                q: &q[t0 * n_embd + col..],
                q_stride: n_embd,
                n_q,
                k: &[],
                v: &[],
                kv_stride: n_embd,
                first: pos0 + t0,
                hd: head_dim,
                scale,
                out: o,
                o_stride: n_embd,
            };
            // SAFETY: as for decode; the job's slices cover every row the kernel reads.
            unsafe {
                match (k, v) {
                    (KvSlice::F32(kk), KvSlice::F32(vv)) => (a.flash_f32)(&mut job.with_kv(&kk[col..], &vv[col..])),
                    (KvSlice::F16(kk), KvSlice::F16(vv)) => (a.flash_f16)(&mut job.with_kv(&kk[col..], &vv[col..])),
                    _ => unreachable!(),
                }
            }
        });
    }
}

/// Causal attention for `n_tok` queries at positions `pos0..pos0 + n_tok`.
///
/// `q` and `out` are `[n_tok][n_head * head_dim]`; `k` and `v` hold positions
/// `0..pos0 + n_tok` as `[pos][n_head * head_dim]`. Query `t` attends to positions `0..=pos0 + t`
/// with scale `1/sqrt(head_dim)`.
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
