//! AVX2 + FMA float kernels of the rest of the graph (see the AVX-512 file for the methods;
//! here 8 lanes, and `2^n` is built in the exponent bits: `exp` is 0 below -87.33 and saturates
//! at e^88.37 above; same accuracy elsewhere).

#![allow(clippy::missing_safety_doc)]
// Register tiles are indexed [key] in fully unrolled loops: indices read best.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

use half::f16;

use crate::attention::{FlashJob, MAX_HEAD_DIM};

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) fn exp(x: __m256) -> __m256 {
    let lo = _mm256_set1_ps(-87.336_55);
    let xc = _mm256_min_ps(_mm256_max_ps(x, lo), _mm256_set1_ps(88.376_26));
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
        xc,
        _mm256_set1_ps(std::f32::consts::LOG2_E),
    ));
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), xc);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_4e-4), r);
    let mut p = _mm256_set1_ps(1.987_569_1e-4);
    for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
    }
    let y = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0)));
    let pow2n =
        _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127))));
    let under = _mm256_cmp_ps::<_CMP_LT_OQ>(x, lo);
    _mm256_andnot_ps(under, _mm256_mul_ps(y, pow2n))
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn hmax(v: __m256) -> f32 {
    let s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_max_ss(s, _mm_movehdup_ps(s)))
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn gelu8(u: __m256) -> __m256 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    let u2 = _mm256_mul_ps(u, u);
    let z = _mm256_mul_ps(
        u,
        _mm256_fmadd_ps(u2, _mm256_set1_ps(0.044_715 * SQRT_2_OVER_PI), _mm256_set1_ps(SQRT_2_OVER_PI)),
    );
    let e = exp(_mm256_mul_ps(z, _mm256_set1_ps(-2.0)));
    _mm256_div_ps(u, _mm256_add_ps(e, _mm256_set1_ps(1.0)))
}

/// Runs `f` over 8 lanes at a time, the tail through a zero-padded copy.
macro_rules! lanes8 {
    ($n:expr, |$i:ident, $len:ident| $body:block) => {{
        let n = $n;
        let mut $i = 0;
        while $i < n {
            let $len = (n - $i).min(8);
            $body
            $i += 8;
        }
    }};
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn load8(p: *const f32, len: usize) -> __m256 {
    if len == 8 {
        _mm256_loadu_ps(p)
    } else {
        let mut t = [0f32; 8];
        std::ptr::copy_nonoverlapping(p, t.as_mut_ptr(), len);
        _mm256_loadu_ps(t.as_ptr())
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn store8(p: *mut f32, len: usize, v: __m256) {
    if len == 8 {
        _mm256_storeu_ps(p, v)
    } else {
        let mut t = [0f32; 8];
        _mm256_storeu_ps(t.as_mut_ptr(), v);
        std::ptr::copy_nonoverlapping(t.as_ptr(), p, len);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn gelu(x: &mut [f32]) {
    let p = x.as_mut_ptr();
    lanes8!(x.len(), |i, len| { store8(p.add(i), len, gelu8(load8(p.add(i), len))) });
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn softmax(x: &mut [f32]) {
    let (p, n) = (x.as_mut_ptr(), x.len());
    let mut vmax = _mm256_set1_ps(f32::NEG_INFINITY);
    let mut i = 0;
    while i + 8 <= n {
        vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(p.add(i)));
        i += 8;
    }
    let mut max = hmax(vmax);
    while i < n {
        max = max.max(*p.add(i));
        i += 1;
    }
    let vmax = _mm256_set1_ps(max);
    let mut sum = _mm256_setzero_ps();
    lanes8!(n, |i, len| {
        let e = exp(_mm256_sub_ps(load8(p.add(i), len), vmax));
        let e = if len == 8 {
            e
        } else {
            let keep = _mm256_cmpgt_epi32(_mm256_set1_epi32(len as i32), _mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0));
            _mm256_and_ps(e, _mm256_castsi256_ps(keep))
        };
        sum = _mm256_add_ps(sum, e);
        store8(p.add(i), len, e);
    });
    let inv = _mm256_set1_ps(1.0 / hsum(sum));
    lanes8!(n, |i, len| { store8(p.add(i), len, _mm256_mul_ps(load8(p.add(i), len), inv)) });
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn layer_norm(x: &[f32], w: &[f32], b: &[f32], eps: f32, out: &mut [f32]) {
    let n = x.len();
    debug_assert!(w.len() == n && b.len() == n && out.len() == n);
    let (xp, wp, bp, op) = (x.as_ptr(), w.as_ptr(), b.as_ptr(), out.as_mut_ptr());
    // Sum x - x[0]: rows far from zero keep their precision.
    let pivot = _mm256_set1_ps(x[0]);
    let mut s = _mm256_setzero_ps();
    lanes8!(n, |i, len| {
        let keep = _mm256_castsi256_ps(_mm256_cmpgt_epi32(
            _mm256_set1_epi32(len as i32),
            _mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0),
        ));
        s = _mm256_add_ps(s, _mm256_and_ps(_mm256_sub_ps(load8(xp.add(i), len), pivot), keep));
    });
    let mean = x[0] + hsum(s) / n as f32;
    let vm = _mm256_set1_ps(mean);
    let mut v = _mm256_setzero_ps();
    lanes8!(n, |i, len| {
        let keep = _mm256_castsi256_ps(_mm256_cmpgt_epi32(
            _mm256_set1_epi32(len as i32),
            _mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0),
        ));
        let d = _mm256_and_ps(_mm256_sub_ps(load8(xp.add(i), len), vm), keep);
        v = _mm256_fmadd_ps(d, d, v);
    });
    let inv = _mm256_set1_ps(1.0 / (hsum(v) / n as f32 + eps).sqrt());
    lanes8!(n, |i, len| {
        let d = _mm256_mul_ps(_mm256_sub_ps(load8(xp.add(i), len), vm), inv);
        store8(op.add(i), len, _mm256_fmadd_ps(d, load8(wp.add(i), len), load8(bp.add(i), len)));
    });
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn add_assign(dst: &mut [f32], src: &[f32]) {
    let n = dst.len().min(src.len());
    let (d, s) = (dst.as_mut_ptr(), src.as_ptr());
    lanes8!(n, |i, len| { store8(d.add(i), len, _mm256_add_ps(load8(d.add(i), len), load8(s.add(i), len))) });
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let mut acc = _mm256_setzero_ps();
    lanes8!(n, |i, len| { acc = _mm256_fmadd_ps(load8(a.as_ptr().add(i), len), load8(b.as_ptr().add(i), len), acc) });
    hsum(acc)
}

/// A KV element type: 8 of them widened to f32.
pub(crate) trait Kv: Copy + crate::attention::KvElem {
    unsafe fn load8(p: *const Self) -> __m256;
}

impl Kv for f32 {
    #[inline(always)]
    unsafe fn load8(p: *const f32) -> __m256 {
        _mm256_loadu_ps(p)
    }
}

impl Kv for f16 {
    #[inline(always)]
    unsafe fn load8(p: *const f16) -> __m256 {
        _mm256_cvtph_ps(_mm_loadu_si128(p.cast()))
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn scores<T: Kv>(q: &[f32], k: &[T], stride: usize, scale: f32, out: &mut [f32]) {
    let hd = q.len();
    if !hd.is_multiple_of(8) || hd > MAX_HEAD_DIM {
        return crate::attention::scores_ref(q, k, stride, scale, out);
    }
    let kp = k.as_ptr();
    for (p, o) in out.iter_mut().enumerate() {
        let row = kp.add(p * stride);
        let mut a = [_mm256_setzero_ps(); 2];
        for c in 0..hd / 8 {
            a[c % 2] = _mm256_fmadd_ps(_mm256_loadu_ps(q.as_ptr().add(8 * c)), T::load8(row.add(8 * c)), a[c % 2]);
        }
        *o = hsum(_mm256_add_ps(a[0], a[1])) * scale;
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn accum<T: Kv>(w: &[f32], v: &[T], stride: usize, out: &mut [f32]) {
    let hd = out.len();
    if !hd.is_multiple_of(8) || hd > MAX_HEAD_DIM {
        return crate::attention::accum_ref(w, v, stride, out);
    }
    let mut acc = [_mm256_setzero_ps(); MAX_HEAD_DIM / 8];
    let vp = v.as_ptr();
    for (p, &s) in w.iter().enumerate() {
        let ws = _mm256_set1_ps(s);
        let row = vp.add(p * stride);
        for c in 0..hd / 8 {
            acc[c] = _mm256_fmadd_ps(ws, T::load8(row.add(8 * c)), acc[c]);
        }
    }
    for c in 0..hd / 8 {
        _mm256_storeu_ps(out.as_mut_ptr().add(8 * c), acc[c]);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn scores_f32(q: &[f32], k: &[f32], stride: usize, scale: f32, out: &mut [f32]) {
    scores(q, k, stride, scale, out)
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn scores_f16(q: &[f32], k: &[f16], stride: usize, scale: f32, out: &mut [f32]) {
    scores(q, k, stride, scale, out)
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn accum_f32(w: &[f32], v: &[f32], stride: usize, out: &mut [f32]) {
    accum(w, v, stride, out)
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn accum_f16(w: &[f32], v: &[f16], stride: usize, out: &mut [f32]) {
    accum(w, v, stride, out)
}

/// Keys (or values) `j0..j0 + n` (n <= 8) as f32 rows of `hd` in `buf`, zero past `n`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn load_block<T: Kv>(src: *const T, stride: usize, j0: usize, n: usize, hd: usize, buf: *mut f32) {
    for j in 0..8 {
        for c in 0..hd / 8 {
            let v = if j < n { T::load8(src.add((j0 + j) * stride + 8 * c)) } else { _mm256_setzero_ps() };
            _mm256_storeu_ps(buf.add(j * hd + 8 * c), v);
        }
    }
}

/// Queries per flash sub-block: two registers of 8 lanes.
const FQ: usize = 16;

/// One sub-block of up to 16 queries (lanes) of a flash job: the scaled queries and the output
/// accumulators transposed (`[d][16]`), and the online softmax's running max and sum.
struct FlashSub {
    /// `[hd][16]` each, in buffers of the caller (written before they are read).
    qt: *mut f32,
    ot: *mut f32,
    m: [__m256; 2],
    l: [__m256; 2],
    /// Position of each lane's query (lanes past the block repeat the last one).
    pos: [__m256i; 2],
    /// The first and last query positions.
    first: usize,
    last: usize,
}

/// `s[j][v]` for keys `j0..j0 + 4` (rows `kb[4h..4h + 4]`): the dot products of the sub-block's
/// queries (lane vectors `v`) with the keys.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn qk4(sub: &FlashSub, kb: *const f32, hd: usize) -> [[__m256; 2]; 4] {
    let mut s = [[_mm256_setzero_ps(); 2]; 4];
    let qt = sub.qt;
    for d in 0..hd {
        let q0 = _mm256_loadu_ps(qt.add(FQ * d));
        let q1 = _mm256_loadu_ps(qt.add(FQ * d + 8));
        for j in 0..4 {
            let k = _mm256_broadcast_ss(&*kb.add(j * hd + d));
            s[j][0] = _mm256_fmadd_ps(k, q0, s[j][0]);
            s[j][1] = _mm256_fmadd_ps(k, q1, s[j][1]);
        }
    }
    s
}

/// `ot[d] += sum_j p[j] * vb[j][d]` over 4 keys.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn pv4(sub: &mut FlashSub, p: &[[__m256; 2]], vb: *const f32, hd: usize) {
    let ot = sub.ot;
    for d in 0..hd {
        let mut o0 = _mm256_loadu_ps(ot.add(FQ * d));
        let mut o1 = _mm256_loadu_ps(ot.add(FQ * d + 8));
        for j in 0..4 {
            let v = _mm256_broadcast_ss(&*vb.add(j * hd + d));
            o0 = _mm256_fmadd_ps(p[j][0], v, o0);
            o1 = _mm256_fmadd_ps(p[j][1], v, o1);
        }
        _mm256_storeu_ps(ot.add(FQ * d), o0);
        _mm256_storeu_ps(ot.add(FQ * d + 8), o1);
    }
}

/// One block of 8 keys from `j0` (rows of `kb`, `vb`) against a sub-block: scores, causal mask,
/// online softmax update, weighted values.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn flash_block(sub: &mut FlashSub, kb: *const f32, vb: *const f32, j0: usize, hd: usize) {
    let lo = qk4(sub, kb, hd);
    let hi = qk4(sub, kb.add(4 * hd), hd);
    let mut s = [[_mm256_setzero_ps(); 2]; 8];
    s[..4].copy_from_slice(&lo);
    s[4..].copy_from_slice(&hi);
    let neg_inf = _mm256_set1_ps(f32::NEG_INFINITY);
    if j0 + 7 > sub.first {
        // Keys past a lane's position are hidden (also keys past the context, which are zero).
        for (j, sj) in s.iter_mut().enumerate() {
            let key = _mm256_set1_epi32((j0 + j) as i32);
            for v in 0..2 {
                let hidden = _mm256_castsi256_ps(_mm256_cmpgt_epi32(key, sub.pos[v]));
                sj[v] = _mm256_blendv_ps(sj[v], neg_inf, hidden);
            }
        }
    }
    let mut corr = [_mm256_setzero_ps(); 2];
    for v in 0..2 {
        let mut mx = sub.m[v];
        for sj in &s {
            mx = _mm256_max_ps(mx, sj[v]);
        }
        corr[v] = exp(_mm256_sub_ps(sub.m[v], mx));
        let mut l = _mm256_mul_ps(sub.l[v], corr[v]);
        for sj in s.iter_mut() {
            sj[v] = exp(_mm256_sub_ps(sj[v], mx));
            l = _mm256_add_ps(l, sj[v]);
        }
        sub.l[v] = l;
        sub.m[v] = mx;
    }
    let ot = sub.ot;
    for d in 0..hd {
        _mm256_storeu_ps(ot.add(FQ * d), _mm256_mul_ps(_mm256_loadu_ps(ot.add(FQ * d)), corr[0]));
        _mm256_storeu_ps(ot.add(FQ * d + 8), _mm256_mul_ps(_mm256_loadu_ps(ot.add(FQ * d + 8)), corr[1]));
    }
    pv4(sub, &s[..4], vb, hd);
    pv4(sub, &s[4..], vb.add(4 * hd), hd);
}

/// Flash attention of one head: queries in sub-blocks of 16 (two registers of lanes), up to two
/// sub-blocks sweeping the keys together, blocks of 8 keys widened to f32 once for both.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn flash<T: Kv>(job: &mut FlashJob<'_, T>) {
    let hd = job.hd;
    if !hd.is_multiple_of(8) || hd > MAX_HEAD_DIM {
        return crate::attention::flash_ref(job);
    }
    // Uninitialised buffers sized for the largest head: only the first hd rows are used, each
    // written before it is read (zeroing 80 KB per job would cost more than small jobs).
    let mut kb = [const { MaybeUninit::<f32>::uninit() }; 8 * MAX_HEAD_DIM]; // [key][d]
    let mut vb = [const { MaybeUninit::<f32>::uninit() }; 8 * MAX_HEAD_DIM]; // [key][d]
    let mut bufs = [const { MaybeUninit::<f32>::uninit() }; 4 * FQ * MAX_HEAD_DIM];
    let (kb, vb, bufs) =
        (kb.as_mut_ptr().cast::<f32>(), vb.as_mut_ptr().cast::<f32>(), bufs.as_mut_ptr().cast::<f32>());
    let new_sub = |i: usize| FlashSub {
        qt: bufs.add(2 * i * FQ * MAX_HEAD_DIM),
        ot: bufs.add((2 * i + 1) * FQ * MAX_HEAD_DIM),
        m: [_mm256_set1_ps(f32::NEG_INFINITY); 2],
        l: [_mm256_setzero_ps(); 2],
        pos: [_mm256_setzero_si256(); 2],
        first: 0,
        last: 0,
    };
    let mut subs = [new_sub(0), new_sub(1)];
    for g0 in (0..job.n_q).step_by(2 * FQ) {
        let n_sub = (job.n_q - g0).div_ceil(FQ).min(2);
        for (b, sub) in subs.iter_mut().enumerate().take(n_sub) {
            let i0 = g0 + b * FQ;
            let nq = (job.n_q - i0).min(FQ);
            std::ptr::write_bytes(sub.qt, 0, FQ * hd);
            std::ptr::write_bytes(sub.ot, 0, FQ * hd);
            for i in 0..nq {
                let qi = &job.q[(i0 + i) * job.q_stride..(i0 + i) * job.q_stride + hd];
                for (d, &v) in qi.iter().enumerate() {
                    *sub.qt.add(FQ * d + i) = v * job.scale;
                }
            }
            (sub.first, sub.last) = (job.first + i0, job.first + i0 + nq - 1);
            let base = _mm256_set1_epi32(sub.first as i32);
            let cap = _mm256_set1_epi32(sub.last as i32);
            sub.pos = [0, 8].map(|o| {
                let lanes = _mm256_add_epi32(_mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0), _mm256_set1_epi32(o));
                _mm256_min_epi32(_mm256_add_epi32(base, lanes), cap)
            });
            sub.m = [_mm256_set1_ps(f32::NEG_INFINITY); 2];
            sub.l = [_mm256_setzero_ps(); 2];
        }
        let last = subs[n_sub - 1].last;
        for j0 in (0..=last).step_by(8) {
            let nk = (last + 1 - j0).min(8);
            load_block(job.k.as_ptr(), job.kv_stride, j0, nk, hd, kb);
            load_block(job.v.as_ptr(), job.kv_stride, j0, nk, hd, vb);
            for sub in subs.iter_mut().take(n_sub) {
                if j0 <= sub.last {
                    flash_block(sub, kb, vb, j0, hd);
                }
            }
        }
        for (b, sub) in subs.iter().enumerate().take(n_sub) {
            let i0 = g0 + b * FQ;
            let nq = (job.n_q - i0).min(FQ);
            let mut inv = [0f32; FQ];
            _mm256_storeu_ps(inv.as_mut_ptr(), _mm256_div_ps(_mm256_set1_ps(1.0), sub.l[0]));
            _mm256_storeu_ps(inv.as_mut_ptr().add(8), _mm256_div_ps(_mm256_set1_ps(1.0), sub.l[1]));
            for i in 0..nq {
                let o = job.out.add((i0 + i) * job.o_stride);
                for d in 0..hd {
                    *o.add(d) = *sub.ot.add(FQ * d + i) * inv[i];
                }
            }
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn flash_f32(job: &mut FlashJob<'_, f32>) {
    flash(job)
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn flash_f16(job: &mut FlashJob<'_, f16>) {
    flash(job)
}
