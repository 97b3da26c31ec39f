//! The attention core (see `crate::attention` for the drivers and the scalar references).
//!
//! * Decode: `scores` takes `LANES` keys at a time (one partial-sum register per key, then
//!   `LANES` horizontal sums at once); `accum` adds values with even and odd keys in separate
//!   accumulators (two independent FMA chains per output register).
//! * Prefill (`flash`): queries in sub-blocks of `2 * LANES` (two registers of lanes), up to
//!   two sub-blocks sweeping each block of 8 keys together, the block widened to f32 once for
//!   both. Scores are broadcast key elements x transposed queries, 4 keys at a time, so the
//!   online softmax needs no horizontal reduction; values are added as broadcast value
//!   elements x the probabilities. Causal masks apply only to blocks that cross the diagonal;
//!   a block entirely past a lane's position changes nothing for it (its probabilities are 0
//!   and the running max stays), so a query's result does not depend on its sub-block.

// Register tiles are indexed [key][lane vector] in fully unrolled loops: indices read best.
#![allow(clippy::needless_range_loop)]

use std::mem::MaybeUninit;

use super::ops::exp;
use super::{Simd, Widen};
use crate::attention::{accum_ref, flash_ref, scores_ref, FlashJob, MAX_HEAD_DIM};

/// Vectors of a head row at the narrowest width (NEON's 4 lanes).
const MAX_CHUNKS: usize = MAX_HEAD_DIM / 4;
/// The widest vector (AVX-512's 16 lanes).
const MAX_LANES: usize = 16;

/// `out[p] = scale * q . row p of k` (from unit `p * stride`) for every `p < out.len()`.
#[inline(always)]
pub(crate) unsafe fn scores<S: Simd, T: Widen>(q: &[f32], k: &[T], stride: usize, scale: f32, out: &mut [f32]) {
    // SAFETY: within this function's contract: the CPU has the target features it (or its
    // caller) names, and the caller's pointers and lengths are valid for what it touches.
    unsafe {
        let (hd, l) = (q.len(), S::LANES);
        if !hd.is_multiple_of(l) || hd > MAX_HEAD_DIM {
            return scores_ref(q, k, stride, scale, out);
        }
        let nc = hd / l;
        let mut qv = [S::zero(); MAX_CHUNKS];
        for (c, v) in qv.iter_mut().enumerate().take(nc) {
            *v = S::mul(S::load(q.as_ptr().add(l * c)), S::splat(scale));
        }
        let (kp, n) = (k.as_ptr(), out.len());
        let mut acc = [S::zero(); MAX_LANES];
        let mut p = 0;
        while p + l <= n {
            for (j, a) in acc.iter_mut().enumerate().take(l) {
                *a = T::dot::<S>(&qv[..nc], kp.add((p + j) * stride));
            }
            S::store(out.as_mut_ptr().add(p), S::hsums(&acc[..l]));
            p += l;
        }
        for (j, o) in out.iter_mut().enumerate().skip(p) {
            *o = S::hsum(T::dot::<S>(&qv[..nc], kp.add(j * stride)));
        }
    }
}

/// `out[d] = sum_p w[p] * element d of row p of v` (from unit `p * stride`) for `d < out.len()`
/// (overwrites `out`).
#[inline(always)]
pub(crate) unsafe fn accum<S: Simd, T: Widen>(w: &[f32], v: &[T], stride: usize, out: &mut [f32]) {
    // SAFETY: within this function's contract: the CPU has the target features it (or its
    // caller) names, and the caller's pointers and lengths are valid for what it touches.
    unsafe {
        let (hd, l) = (out.len(), S::LANES);
        if !hd.is_multiple_of(l) || hd > MAX_HEAD_DIM {
            return accum_ref(w, v, stride, out);
        }
        let nc = hd / l;
        let mut acc = [[S::zero(); MAX_CHUNKS]; 2];
        let vp = v.as_ptr();
        for (p, &s) in w.iter().enumerate() {
            T::axpy::<S>(s, vp.add(p * stride), &mut acc[p % 2][..nc]);
        }
        for c in 0..nc {
            S::store(out.as_mut_ptr().add(l * c), S::add(acc[0][c], acc[1][c]));
        }
    }
}

/// Keys (or values) `j0..j0 + n` (`n <= 8`) as f32 rows of `hd` in `buf`, zero past `n`.
#[inline(always)]
unsafe fn load_block<S: Simd, T: Widen>(src: *const T, stride: usize, j0: usize, n: usize, hd: usize, buf: *mut f32) {
    // SAFETY: within this function's contract: the CPU has the target features it (or its
    // caller) names, and the caller's pointers and lengths are valid for what it touches.
    unsafe {
        for j in 0..8 {
            for c in (0..hd).step_by(S::LANES) {
                let v = if j < n { T::widen::<S>(src.add((j0 + j) * stride), c) } else { S::zero() };
                S::store(buf.add(j * hd + c), v);
            }
        }
    }
}

/// One sub-block of up to `2 * LANES` queries (lanes) of a flash job: the scaled queries and
/// the output accumulators transposed (`[d][2 * LANES]`, in buffers of the caller, written
/// before they are read), and the online softmax's running max and sum.
struct Sub<S: Simd> {
    qt: *mut f32,
    ot: *mut f32,
    m: [S::V; 2],
    l: [S::V; 2],
    /// Position of each lane's query (lanes past the block repeat the last one).
    pos: [S::I; 2],
    first: usize,
    last: usize,
}

impl<S: Simd> Sub<S> {
    /// Sub-block `i` of a flash job, its buffers in `bufs`.
    #[inline(always)]
    unsafe fn new(bufs: *mut f32, i: usize) -> Self {
        // SAFETY: within this function's contract: the CPU has the target features it (or its
        // caller) names, and the caller's pointers and lengths are valid for what it touches.
        unsafe {
            let fq = 2 * S::LANES;
            Sub {
                qt: bufs.add(2 * i * fq * MAX_HEAD_DIM),
                ot: bufs.add((2 * i + 1) * fq * MAX_HEAD_DIM),
                m: [S::splat(f32::NEG_INFINITY); 2],
                l: [S::zero(); 2],
                pos: [S::splat_i(0); 2],
                first: 0,
                last: 0,
            }
        }
    }
}

/// `s[j][v]` for the 4 keys of `kb` (rows of `hd`): dot products with the sub-block's queries.
#[inline(always)]
unsafe fn qk4<S: Simd>(sub: &Sub<S>, kb: *const f32, hd: usize) -> [[S::V; 2]; 4] {
    // SAFETY: within this function's contract: the CPU has the target features it (or its
    // caller) names, and the caller's pointers and lengths are valid for what it touches.
    unsafe {
        let fq = 2 * S::LANES;
        let mut s = [[S::zero(); 2]; 4];
        for d in 0..hd {
            let q0 = S::load(sub.qt.add(fq * d));
            let q1 = S::load(sub.qt.add(fq * d + S::LANES));
            for (j, sj) in s.iter_mut().enumerate() {
                let k = S::splat(*kb.add(j * hd + d));
                sj[0] = S::fma(k, q0, sj[0]);
                sj[1] = S::fma(k, q1, sj[1]);
            }
        }
        s
    }
}

/// `ot[d] += sum_j p[j] * vb[j][d]` over 4 keys.
#[inline(always)]
unsafe fn pv4<S: Simd>(sub: &Sub<S>, p: &[[S::V; 2]], vb: *const f32, hd: usize) {
    // SAFETY: within this function's contract: the CPU has the target features it (or its
    // caller) names, and the caller's pointers and lengths are valid for what it touches.
    unsafe {
        let fq = 2 * S::LANES;
        for d in 0..hd {
            let (o0p, o1p) = (sub.ot.add(fq * d), sub.ot.add(fq * d + S::LANES));
            let (mut o0, mut o1) = (S::load(o0p), S::load(o1p));
            for (j, pj) in p.iter().enumerate() {
                let v = S::splat(*vb.add(j * hd + d));
                o0 = S::fma(pj[0], v, o0);
                o1 = S::fma(pj[1], v, o1);
            }
            S::store(o0p, o0);
            S::store(o1p, o1);
        }
    }
}

/// A block of 8 keys from `j0` (rows of `kb`, `vb`) against a sub-block: scores, causal mask,
/// online softmax update, weighted values.
#[inline(always)]
unsafe fn block<S: Simd>(sub: &mut Sub<S>, kb: *const f32, vb: *const f32, j0: usize, hd: usize) {
    // SAFETY: within this function's contract: the CPU has the target features it (or its
    // caller) names, and the caller's pointers and lengths are valid for what it touches.
    unsafe {
        let lo = qk4(sub, kb, hd);
        let hi = qk4(sub, kb.add(4 * hd), hd);
        let mut s = [[S::zero(); 2]; 8];
        s[..4].copy_from_slice(&lo);
        s[4..].copy_from_slice(&hi);
        if j0 + 7 > sub.first {
            // Keys past a lane's position are hidden (also those past the context, zero rows).
            let neg_inf = S::splat(f32::NEG_INFINITY);
            for (j, sj) in s.iter_mut().enumerate() {
                let key = S::splat_i((j0 + j) as i32);
                for v in 0..2 {
                    sj[v] = S::select(S::gt_i(key, sub.pos[v]), sj[v], neg_inf);
                }
            }
        }
        let mut corr = [S::zero(); 2];
        for v in 0..2 {
            let mut mx = sub.m[v];
            for sj in &s {
                mx = S::max(mx, sj[v]);
            }
            corr[v] = exp::<S>(S::sub(sub.m[v], mx));
            let mut l = S::mul(sub.l[v], corr[v]);
            for sj in s.iter_mut() {
                sj[v] = exp::<S>(S::sub(sj[v], mx));
                l = S::add(l, sj[v]);
            }
            sub.l[v] = l;
            sub.m[v] = mx;
        }
        let fq = 2 * S::LANES;
        for d in 0..hd {
            for v in 0..2 {
                let o = sub.ot.add(fq * d + v * S::LANES);
                S::store(o, S::mul(S::load(o), corr[v]));
            }
        }
        pv4(sub, &s[..4], vb, hd);
        pv4(sub, &s[4..], vb.add(4 * hd), hd);
    }
}

/// Flash attention of one head (see the module docs).
#[inline(always)]
pub(crate) unsafe fn flash<S: Simd, T: Widen>(job: &mut FlashJob<'_, T>) {
    // SAFETY: within this function's contract: the CPU has the target features it (or its
    // caller) names, and the caller's pointers and lengths are valid for what it touches.
    unsafe {
        let (hd, fq) = (job.hd, 2 * S::LANES);
        if !hd.is_multiple_of(S::LANES) || hd > MAX_HEAD_DIM {
            return flash_ref(job);
        }
        // Uninitialised buffers sized for the largest head and widest vectors: only what a job
        // uses is written, each part before it is read (zeroing 150 KB per job would cost more
        // than a small job).
        let mut kb = [const { MaybeUninit::<f32>::uninit() }; 8 * MAX_HEAD_DIM]; // [key][d]
        let mut vb = [const { MaybeUninit::<f32>::uninit() }; 8 * MAX_HEAD_DIM]; // [key][d]
        let mut bufs = [const { MaybeUninit::<f32>::uninit() }; 8 * MAX_LANES * MAX_HEAD_DIM];
        let (kb, vb) = (kb.as_mut_ptr().cast::<f32>(), vb.as_mut_ptr().cast::<f32>());
        let bufs = bufs.as_mut_ptr().cast::<f32>();
        let mut subs = [Sub::<S>::new(bufs, 0), Sub::<S>::new(bufs, 1)];
        for g0 in (0..job.n_q).step_by(2 * fq) {
            let n_sub = (job.n_q - g0).div_ceil(fq).min(2);
            for (b, sub) in subs.iter_mut().enumerate().take(n_sub) {
                let i0 = g0 + b * fq;
                let nq = (job.n_q - i0).min(fq);
                std::ptr::write_bytes(sub.qt, 0, fq * hd);
                std::ptr::write_bytes(sub.ot, 0, fq * hd);
                for i in 0..nq {
                    let qi = &job.q[(i0 + i) * job.q_stride..(i0 + i) * job.q_stride + hd];
                    for (d, &v) in qi.iter().enumerate() {
                        *sub.qt.add(fq * d + i) = v * job.scale;
                    }
                }
                (sub.first, sub.last) = (job.first + i0, job.first + i0 + nq - 1);
                let last = S::splat_i(sub.last as i32);
                sub.pos[0] = S::min_i(S::iota(sub.first as i32), last);
                sub.pos[1] = S::min_i(S::iota((sub.first + S::LANES) as i32), last);
                sub.m = [S::splat(f32::NEG_INFINITY); 2];
                sub.l = [S::zero(); 2];
            }
            let last = subs[n_sub - 1].last;
            for j0 in (0..=last).step_by(8) {
                let nk = (last + 1 - j0).min(8);
                load_block::<S, T>(job.k.as_ptr(), job.kv_stride, j0, nk, hd, kb);
                load_block::<S, T>(job.v.as_ptr(), job.kv_stride, j0, nk, hd, vb);
                for sub in subs.iter_mut().take(n_sub) {
                    if j0 <= sub.last {
                        block(sub, kb, vb, j0, hd);
                    }
                }
            }
            for (b, sub) in subs.iter().enumerate().take(n_sub) {
                let i0 = g0 + b * fq;
                let nq = (job.n_q - i0).min(fq);
                let mut inv = [0f32; 2 * MAX_LANES];
                for v in 0..2 {
                    S::store(inv.as_mut_ptr().add(v * S::LANES), S::div(S::splat(1.0), sub.l[v]));
                }
                for (i, &inv_i) in inv.iter().enumerate().take(nq) {
                    // SAFETY (of the write): FlashJob's contract, row i0 + i of the output holds hd
                    // writable elements that only this job touches.
                    let o = job.out.add((i0 + i) * job.o_stride);
                    for d in 0..hd {
                        *o.add(d) = *sub.ot.add(fq * d + i) * inv_i;
                    }
                }
            }
        }
    }
}
