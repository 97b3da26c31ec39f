//! AVX-512 float kernels of the rest of the graph: exp, GELU, softmax, layer norm, adds, and
//! the attention core.
//!
//! `exp`: Cephes' `expf` (range reduction by ln 2 in two parts, degree-5 polynomial), scaled by
//! `vscalefps`; relative error below 2.5e-7 (measured against f64 over [-87, 88]), 0 below
//! -103, +inf above 88.7. GELU is `u / (1 + exp(-2z))`: relative error below 1e-6 for u >= -3
//! (see `crate::gelu` for below).
//!
//! Prefill attention puts 16 queries on the lanes: scores of one key against 16 queries are
//! one register (broadcast key element x transposed queries), so the online softmax needs no
//! horizontal reduction, and the value update is broadcast value x 16 probabilities.

#![allow(clippy::missing_safety_doc)]
// Register tiles are indexed [key] in fully unrolled loops: indices read best.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use half::f16;

use crate::attention::{FlashJob, MAX_HEAD_DIM};

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
pub(crate) fn exp(x: __m512) -> __m512 {
    let x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-104.0)), _mm512_set1_ps(89.0));
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm512_mul_ps(
        x,
        _mm512_set1_ps(std::f32::consts::LOG2_E),
    ));
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_359_4), x);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.121_944_4e-4), r);
    let mut p = _mm512_set1_ps(1.987_569_1e-4);
    for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    let y = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0)));
    _mm512_scalef_ps(y, n)
}

#[inline(always)]
fn mask16(n: usize) -> __mmask16 {
    ((1u32 << n.min(16)) - 1) as u16
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) unsafe fn gelu(x: &mut [f32]) {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    let p = x.as_mut_ptr();
    let mut i = 0;
    while i < x.len() {
        let m = mask16(x.len() - i);
        let u = _mm512_maskz_loadu_ps(m, p.add(i));
        let u2 = _mm512_mul_ps(u, u);
        let z = _mm512_mul_ps(
            u,
            _mm512_fmadd_ps(u2, _mm512_set1_ps(0.044_715 * SQRT_2_OVER_PI), _mm512_set1_ps(SQRT_2_OVER_PI)),
        );
        let e = exp(_mm512_mul_ps(z, _mm512_set1_ps(-2.0)));
        _mm512_mask_storeu_ps(p.add(i), m, _mm512_div_ps(u, _mm512_add_ps(e, _mm512_set1_ps(1.0))));
        i += 16;
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) unsafe fn softmax(x: &mut [f32]) {
    let (p, n) = (x.as_mut_ptr(), x.len());
    let mut vmax = _mm512_set1_ps(f32::NEG_INFINITY);
    for i in (0..n).step_by(16) {
        vmax = _mm512_max_ps(vmax, _mm512_mask_loadu_ps(_mm512_set1_ps(f32::NEG_INFINITY), mask16(n - i), p.add(i)));
    }
    let max = _mm512_set1_ps(_mm512_reduce_max_ps(vmax));
    let mut sum = _mm512_setzero_ps();
    for i in (0..n).step_by(16) {
        let m = mask16(n - i);
        let e = exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, p.add(i)), max));
        let e = _mm512_maskz_mov_ps(m, e);
        sum = _mm512_add_ps(sum, e);
        _mm512_mask_storeu_ps(p.add(i), m, e);
    }
    let inv = _mm512_set1_ps(1.0 / _mm512_reduce_add_ps(sum));
    for i in (0..n).step_by(16) {
        let m = mask16(n - i);
        _mm512_mask_storeu_ps(p.add(i), m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, p.add(i)), inv));
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) unsafe fn layer_norm(x: &[f32], w: &[f32], b: &[f32], eps: f32, out: &mut [f32]) {
    let n = x.len();
    debug_assert!(w.len() == n && b.len() == n && out.len() == n);
    let (xp, wp, bp, op) = (x.as_ptr(), w.as_ptr(), b.as_ptr(), out.as_mut_ptr());
    // Sum x - x[0]: rows far from zero keep their precision.
    let pivot = _mm512_set1_ps(x[0]);
    let mut s = _mm512_setzero_ps();
    for i in (0..n).step_by(16) {
        let m = mask16(n - i);
        s = _mm512_add_ps(s, _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, xp.add(i)), pivot));
    }
    let mean = x[0] + _mm512_reduce_add_ps(s) / n as f32;
    let vm = _mm512_set1_ps(mean);
    let mut v = _mm512_setzero_ps();
    for i in (0..n).step_by(16) {
        let m = mask16(n - i);
        let d = _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, xp.add(i)), vm);
        v = _mm512_fmadd_ps(d, d, v);
    }
    let inv = _mm512_set1_ps(1.0 / (_mm512_reduce_add_ps(v) / n as f32 + eps).sqrt());
    for i in (0..n).step_by(16) {
        let m = mask16(n - i);
        let d = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, xp.add(i)), vm), inv);
        let y = _mm512_fmadd_ps(d, _mm512_maskz_loadu_ps(m, wp.add(i)), _mm512_maskz_loadu_ps(m, bp.add(i)));
        _mm512_mask_storeu_ps(op.add(i), m, y);
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) unsafe fn add_assign(dst: &mut [f32], src: &[f32]) {
    let n = dst.len().min(src.len());
    let (d, s) = (dst.as_mut_ptr(), src.as_ptr());
    for i in (0..n).step_by(16) {
        let m = mask16(n - i);
        _mm512_mask_storeu_ps(
            d.add(i),
            m,
            _mm512_add_ps(_mm512_maskz_loadu_ps(m, d.add(i)), _mm512_maskz_loadu_ps(m, s.add(i))),
        );
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) unsafe fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let mut acc = _mm512_setzero_ps();
    for i in (0..n).step_by(16) {
        let m = mask16(n - i);
        acc = _mm512_fmadd_ps(
            _mm512_maskz_loadu_ps(m, a.as_ptr().add(i)),
            _mm512_maskz_loadu_ps(m, b.as_ptr().add(i)),
            acc,
        );
    }
    _mm512_reduce_add_ps(acc)
}

/// A KV element type: 16 of them widened to f32.
pub(crate) trait Kv: Copy + crate::attention::KvElem {
    const IS_F32: bool;
    unsafe fn load16(p: *const Self) -> __m512;
}

impl Kv for f32 {
    const IS_F32: bool = true;
    #[inline(always)]
    unsafe fn load16(p: *const f32) -> __m512 {
        _mm512_loadu_ps(p)
    }
}

impl Kv for f16 {
    const IS_F32: bool = false;
    #[inline(always)]
    unsafe fn load16(p: *const f16) -> __m512 {
        _mm512_cvtph_ps(_mm256_loadu_si256(p.cast()))
    }
}

/// Decode scores: `out[p] = scale * q . k[p]`, 16 keys at a time (one partial-sum register
/// per key, then 16 horizontal sums at once).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
unsafe fn scores<T: Kv>(q: &[f32], k: &[T], stride: usize, scale: f32, out: &mut [f32]) {
    let hd = q.len();
    if !hd.is_multiple_of(16) || hd > MAX_HEAD_DIM {
        return crate::attention::scores_ref(q, k, stride, scale, out);
    }
    let mut qv = [_mm512_setzero_ps(); MAX_HEAD_DIM / 16];
    for (c, v) in qv.iter_mut().enumerate().take(hd / 16) {
        *v = _mm512_mul_ps(_mm512_loadu_ps(q.as_ptr().add(16 * c)), _mm512_set1_ps(scale));
    }
    let kp = k.as_ptr();
    let n = out.len();
    let mut p = 0;
    while p + 16 <= n {
        let acc: [__m512; 16] = std::array::from_fn(|j| {
            let row = kp.add((p + j) * stride);
            let mut a = _mm512_mul_ps(qv[0], T::load16(row));
            for c in 1..hd / 16 {
                a = _mm512_fmadd_ps(qv[c], T::load16(row.add(16 * c)), a);
            }
            a
        });
        _mm512_storeu_ps(out.as_mut_ptr().add(p), super::x86_avx512::reduce16(&acc));
        p += 16;
    }
    while p < n {
        let row = kp.add(p * stride);
        let mut a = _mm512_setzero_ps();
        for c in 0..hd / 16 {
            a = _mm512_fmadd_ps(qv[c], T::load16(row.add(16 * c)), a);
        }
        out[p] = _mm512_reduce_add_ps(a);
        p += 1;
    }
}

/// Decode values: `out = sum_p w[p] * v[p]`, even and odd keys in separate accumulators
/// (two independent FMA chains per output register).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
unsafe fn accum<T: Kv>(w: &[f32], v: &[T], stride: usize, out: &mut [f32]) {
    let hd = out.len();
    if !hd.is_multiple_of(16) || hd > MAX_HEAD_DIM {
        return crate::attention::accum_ref(w, v, stride, out);
    }
    let mut acc = [[_mm512_setzero_ps(); MAX_HEAD_DIM / 16]; 2];
    let vp = v.as_ptr();
    for (p, &s) in w.iter().enumerate() {
        let ws = _mm512_set1_ps(s);
        let row = vp.add(p * stride);
        let a = &mut acc[p % 2];
        for c in 0..hd / 16 {
            a[c] = _mm512_fmadd_ps(ws, T::load16(row.add(16 * c)), a[c]);
        }
    }
    for c in 0..hd / 16 {
        _mm512_storeu_ps(out.as_mut_ptr().add(16 * c), _mm512_add_ps(acc[0][c], acc[1][c]));
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) unsafe fn scores_f32(q: &[f32], k: &[f32], stride: usize, scale: f32, out: &mut [f32]) {
    scores(q, k, stride, scale, out)
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) unsafe fn scores_f16(q: &[f32], k: &[f16], stride: usize, scale: f32, out: &mut [f32]) {
    scores(q, k, stride, scale, out)
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) unsafe fn accum_f32(w: &[f32], v: &[f32], stride: usize, out: &mut [f32]) {
    accum(w, v, stride, out)
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) unsafe fn accum_f16(w: &[f32], v: &[f16], stride: usize, out: &mut [f32]) {
    accum(w, v, stride, out)
}

/// Rows `j0..j0 + n` (n <= 16) of keys or values as f32: straight from an f32 cache when the
/// block is whole, else converted (or copied) into `buf` (`[16][hd]`, zero past `n`). Returns
/// the first row and the row stride.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
unsafe fn kv_block<T: Kv>(
    src: &[T],
    stride: usize,
    j0: usize,
    n: usize,
    hd: usize,
    buf: &mut [f32],
) -> (*const f32, usize) {
    if T::IS_F32 && n == 16 {
        return (src.as_ptr().add(j0 * stride).cast(), stride);
    }
    for j in 0..16 {
        for c in 0..hd / 16 {
            let v = if j < n { T::load16(src.as_ptr().add((j0 + j) * stride + 16 * c)) } else { _mm512_setzero_ps() };
            _mm512_storeu_ps(buf.as_mut_ptr().add(j * hd + 16 * c), v);
        }
    }
    (buf.as_ptr(), hd)
}

/// Queries per pass (lanes) and per task.
const QL: usize = 16;
const QS: usize = crate::attention::Q_BLOCK / QL;

/// Flash attention of one head for up to `Q_BLOCK` queries: blocks of 16 keys (outer, each
/// converted once), and per pass of 16 queries (lanes) the scores as 16 registers (broadcast
/// key element x transposed queries, keys 4 at a time), the online softmax on them with no
/// horizontal reductions, and the values added with the 16 queries as accumulators over
/// natural value rows (broadcast probability x value chunk).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
unsafe fn flash<T: Kv>(job: &mut FlashJob<'_, T>) {
    let hd = job.hd;
    if !hd.is_multiple_of(16) || hd > MAX_HEAD_DIM || job.n_q > QL * QS {
        return crate::attention::flash_ref(job);
    }
    let mut qt = [[0f32; QL * MAX_HEAD_DIM]; QS]; // per pass: [d][query], scaled
    let mut o = [[0f32; QL * MAX_HEAD_DIM]; QS]; // per pass: [query][d]
    let mut kb = [0f32; 16 * MAX_HEAD_DIM];
    let mut vb = [0f32; 16 * MAX_HEAD_DIM];
    let mut p = [0f32; 16 * QL]; // [key][query]
    let mut corr_s = [0f32; QL];
    let neg_inf = _mm512_set1_ps(f32::NEG_INFINITY);
    let n_pass = job.n_q.div_ceil(QL);
    let mut m = [neg_inf; QS];
    let mut l = [_mm512_setzero_ps(); QS];
    let mut pos = [_mm512_setzero_si512(); QS];
    for ps in 0..n_pass {
        let (i0, nq) = (ps * QL, (job.n_q - ps * QL).min(QL));
        for i in 0..nq {
            let qi = job.q.as_ptr().add((i0 + i) * job.q_stride);
            for d in 0..hd {
                qt[ps][QL * d + i] = *qi.add(d) * job.scale;
            }
        }
        // Lane i holds query position first + i0 + i (padding lanes repeat the last query).
        let pos0 = (job.first + i0) as i32;
        pos[ps] = _mm512_min_epi32(
            _mm512_add_epi32(
                _mm512_set1_epi32(pos0),
                _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
            ),
            _mm512_set1_epi32(pos0 + nq as i32 - 1),
        );
    }
    let last = job.first + job.n_q - 1;
    let mut j0 = 0;
    while j0 <= last {
        let nk = (last + 1 - j0).min(16);
        let (kp, ks) = kv_block(job.k, job.kv_stride, j0, nk, hd, &mut kb);
        let (vp, vs) = kv_block(job.v, job.kv_stride, j0, nk, hd, &mut vb);
        for ps in 0..n_pass {
            let pass_last = job.first + (ps * QL + QL).min(job.n_q) - 1;
            if j0 > pass_last {
                continue;
            }
            let qtp = qt[ps].as_ptr();
            let mut s = [_mm512_setzero_ps(); 16];
            for jc in 0..4 {
                let rows: [*const f32; 4] = std::array::from_fn(|t| kp.add((4 * jc + t) * ks));
                let mut acc = [_mm512_setzero_ps(); 4];
                for d in 0..hd {
                    let qd = _mm512_loadu_ps(qtp.add(QL * d));
                    for t in 0..4 {
                        acc[t] = _mm512_fmadd_ps(_mm512_set1_ps(*rows[t].add(d)), qd, acc[t]);
                    }
                }
                s[4 * jc..4 * jc + 4].copy_from_slice(&acc);
            }
            let mut mx = m[ps];
            for j in 0..16 {
                // Key j0 + j is visible to lanes whose position is >= it.
                let vis = _mm512_cmpge_epi32_mask(pos[ps], _mm512_set1_epi32((j0 + j) as i32));
                s[j] = _mm512_mask_mov_ps(neg_inf, vis, s[j]);
                mx = _mm512_max_ps(mx, s[j]);
            }
            let corr = exp(_mm512_sub_ps(m[ps], mx));
            let mut lsum = _mm512_mul_ps(l[ps], corr);
            for j in 0..16 {
                let e = exp(_mm512_sub_ps(s[j], mx));
                lsum = _mm512_add_ps(lsum, e);
                _mm512_storeu_ps(p.as_mut_ptr().add(QL * j), e);
            }
            (m[ps], l[ps]) = (mx, lsum);
            _mm512_storeu_ps(corr_s.as_mut_ptr(), corr);
            let op = o[ps].as_mut_ptr();
            for c in 0..hd / 16 {
                let mut acc: [__m512; QL] = std::array::from_fn(|i| {
                    _mm512_mul_ps(_mm512_loadu_ps(op.add(i * hd + 16 * c)), _mm512_set1_ps(corr_s[i]))
                });
                for j in 0..16 {
                    let v = _mm512_loadu_ps(vp.add(j * vs + 16 * c));
                    for i in 0..QL {
                        acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(p[QL * j + i]), v, acc[i]);
                    }
                }
                for i in 0..QL {
                    _mm512_storeu_ps(op.add(i * hd + 16 * c), acc[i]);
                }
            }
        }
        j0 += 16;
    }
    for ps in 0..n_pass {
        let (i0, nq) = (ps * QL, (job.n_q - ps * QL).min(QL));
        let mut inv = [0f32; QL];
        _mm512_storeu_ps(inv.as_mut_ptr(), _mm512_div_ps(_mm512_set1_ps(1.0), l[ps]));
        for i in 0..nq {
            let out = job.out.add((i0 + i) * job.o_stride);
            let vinv = _mm512_set1_ps(inv[i]);
            for c in 0..hd / 16 {
                // FlashJob's contract: hd writable elements at each of the job's rows.
                _mm512_storeu_ps(
                    out.add(16 * c),
                    _mm512_mul_ps(_mm512_loadu_ps(o[ps].as_ptr().add(i * hd + 16 * c)), vinv),
                );
            }
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) unsafe fn flash_f32(job: &mut FlashJob<'_, f32>) {
    flash(job)
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) unsafe fn flash_f16(job: &mut FlashJob<'_, f16>) {
    flash(job)
}
