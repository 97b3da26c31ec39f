//! NEON float kernels of the rest of the graph (the methods of the AVX-512 file on 4 lanes:
//! Cephes `expf` with `2^n` built in the exponent bits, 0 below -87.33 and saturating at
//! e^88.37; prefill attention with 4 queries on the lanes and blocks of 8 keys).

#![allow(clippy::missing_safety_doc)]
// Register tiles are indexed [key] in fully unrolled loops: indices read best.
#![allow(clippy::needless_range_loop)]

use std::arch::aarch64::*;

use half::f16;

use super::aarch64_neon::load_f16x4;
use crate::attention::{FlashJob, MAX_HEAD_DIM};

#[target_feature(enable = "neon")]
#[inline]
pub(crate) fn exp(x: float32x4_t) -> float32x4_t {
    let lo = vdupq_n_f32(-87.336_55);
    let xc = vminq_f32(vmaxq_f32(x, lo), vdupq_n_f32(88.376_26));
    let n = vrndnq_f32(vmulq_n_f32(xc, std::f32::consts::LOG2_E));
    let r = vfmsq_f32(xc, n, vdupq_n_f32(0.693_359_4));
    let r = vfmsq_f32(r, n, vdupq_n_f32(-2.121_944_4e-4));
    let mut p = vdupq_n_f32(1.987_569_1e-4);
    for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5] {
        p = vfmaq_f32(vdupq_n_f32(c), p, r);
    }
    let y = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.0)), p, vmulq_f32(r, r));
    let pow2n = vreinterpretq_f32_s32(vshlq_n_s32::<23>(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127))));
    let under = vcltq_f32(x, lo);
    vreinterpretq_f32_u32(vbicq_u32(vreinterpretq_u32_f32(vmulq_f32(y, pow2n)), under))
}

/// Runs the body over 4 lanes at a time; `len` < 4 only on the last step.
macro_rules! lanes4 {
    ($n:expr, |$i:ident, $len:ident| $body:block) => {{
        let n = $n;
        let mut $i = 0;
        while $i < n {
            let $len = (n - $i).min(4);
            $body
            $i += 4;
        }
    }};
}

#[target_feature(enable = "neon")]
#[inline]
unsafe fn load4(p: *const f32, len: usize) -> float32x4_t {
    if len == 4 {
        vld1q_f32(p)
    } else {
        let mut t = [0f32; 4];
        std::ptr::copy_nonoverlapping(p, t.as_mut_ptr(), len);
        vld1q_f32(t.as_ptr())
    }
}

#[target_feature(enable = "neon")]
#[inline]
unsafe fn store4(p: *mut f32, len: usize, v: float32x4_t) {
    if len == 4 {
        vst1q_f32(p, v)
    } else {
        let mut t = [0f32; 4];
        vst1q_f32(t.as_mut_ptr(), v);
        std::ptr::copy_nonoverlapping(t.as_ptr(), p, len);
    }
}

/// Lanes `0..len` kept, the others zero.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn keep(v: float32x4_t, len: usize) -> float32x4_t {
    let idx = [0u32, 1, 2, 3];
    let m = vcltq_u32(vld1q_u32(idx.as_ptr()), vdupq_n_u32(len as u32));
    vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(v), m))
}

#[target_feature(enable = "neon")]
pub(crate) unsafe fn gelu(x: &mut [f32]) {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    let p = x.as_mut_ptr();
    lanes4!(x.len(), |i, len| {
        let u = load4(p.add(i), len);
        let z = vmulq_f32(
            u,
            vfmaq_f32(vdupq_n_f32(SQRT_2_OVER_PI), vmulq_f32(u, u), vdupq_n_f32(0.044_715 * SQRT_2_OVER_PI)),
        );
        let e = exp(vmulq_n_f32(z, -2.0));
        store4(p.add(i), len, vdivq_f32(u, vaddq_f32(e, vdupq_n_f32(1.0))));
    });
}

#[target_feature(enable = "neon")]
pub(crate) unsafe fn softmax(x: &mut [f32]) {
    let (p, n) = (x.as_mut_ptr(), x.len());
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let vmax = vdupq_n_f32(max);
    let mut sum = vdupq_n_f32(0.0);
    lanes4!(n, |i, len| {
        let e = keep(exp(vsubq_f32(load4(p.add(i), len), vmax)), len);
        sum = vaddq_f32(sum, e);
        store4(p.add(i), len, e);
    });
    let inv = 1.0 / vaddvq_f32(sum);
    lanes4!(n, |i, len| { store4(p.add(i), len, vmulq_n_f32(load4(p.add(i), len), inv)) });
}

#[target_feature(enable = "neon")]
pub(crate) unsafe fn layer_norm(x: &[f32], w: &[f32], b: &[f32], eps: f32, out: &mut [f32]) {
    let n = x.len();
    debug_assert!(w.len() == n && b.len() == n && out.len() == n);
    let (xp, wp, bp, op) = (x.as_ptr(), w.as_ptr(), b.as_ptr(), out.as_mut_ptr());
    // Sum x - x[0]: rows far from zero keep their precision.
    let pivot = vdupq_n_f32(x[0]);
    let mut s = vdupq_n_f32(0.0);
    lanes4!(n, |i, len| { s = vaddq_f32(s, keep(vsubq_f32(load4(xp.add(i), len), pivot), len)) });
    let mean = x[0] + vaddvq_f32(s) / n as f32;
    let vm = vdupq_n_f32(mean);
    let mut v = vdupq_n_f32(0.0);
    lanes4!(n, |i, len| {
        let d = keep(vsubq_f32(load4(xp.add(i), len), vm), len);
        v = vfmaq_f32(v, d, d);
    });
    let inv = 1.0 / (vaddvq_f32(v) / n as f32 + eps).sqrt();
    lanes4!(n, |i, len| {
        let d = vmulq_n_f32(vsubq_f32(load4(xp.add(i), len), vm), inv);
        store4(op.add(i), len, vfmaq_f32(load4(bp.add(i), len), d, load4(wp.add(i), len)));
    });
}

#[target_feature(enable = "neon")]
pub(crate) unsafe fn add_assign(dst: &mut [f32], src: &[f32]) {
    let n = dst.len().min(src.len());
    let (d, s) = (dst.as_mut_ptr(), src.as_ptr());
    lanes4!(n, |i, len| { store4(d.add(i), len, vaddq_f32(load4(d.add(i), len), load4(s.add(i), len))) });
}

#[target_feature(enable = "neon")]
pub(crate) unsafe fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let mut acc = vdupq_n_f32(0.0);
    lanes4!(n, |i, len| { acc = vfmaq_f32(acc, load4(a.as_ptr().add(i), len), load4(b.as_ptr().add(i), len)) });
    vaddvq_f32(acc)
}

/// A KV element type: 4 of them widened to f32.
pub(crate) trait Kv: Copy + crate::attention::KvElem {
    unsafe fn load4(p: *const Self) -> float32x4_t;
}

impl Kv for f32 {
    #[inline(always)]
    unsafe fn load4(p: *const f32) -> float32x4_t {
        vld1q_f32(p)
    }
}

impl Kv for f16 {
    #[inline(always)]
    unsafe fn load4(p: *const f16) -> float32x4_t {
        load_f16x4(p.cast())
    }
}

#[target_feature(enable = "neon")]
#[inline]
unsafe fn scores<T: Kv>(q: &[f32], k: &[T], stride: usize, scale: f32, out: &mut [f32]) {
    let hd = q.len();
    if !hd.is_multiple_of(4) || hd > MAX_HEAD_DIM {
        return crate::attention::scores_ref(q, k, stride, scale, out);
    }
    for (p, o) in out.iter_mut().enumerate() {
        let row = k.as_ptr().add(p * stride);
        let mut a = [vdupq_n_f32(0.0); 2];
        for c in 0..hd / 4 {
            a[c % 2] = vfmaq_f32(a[c % 2], vld1q_f32(q.as_ptr().add(4 * c)), T::load4(row.add(4 * c)));
        }
        *o = vaddvq_f32(vaddq_f32(a[0], a[1])) * scale;
    }
}

#[target_feature(enable = "neon")]
#[inline]
unsafe fn accum<T: Kv>(w: &[f32], v: &[T], stride: usize, out: &mut [f32]) {
    let hd = out.len();
    if !hd.is_multiple_of(4) || hd > MAX_HEAD_DIM {
        return crate::attention::accum_ref(w, v, stride, out);
    }
    let mut acc = [vdupq_n_f32(0.0); MAX_HEAD_DIM / 4];
    for (p, &s) in w.iter().enumerate() {
        let row = v.as_ptr().add(p * stride);
        for c in 0..hd / 4 {
            acc[c] = vfmaq_n_f32(acc[c], T::load4(row.add(4 * c)), s);
        }
    }
    for c in 0..hd / 4 {
        vst1q_f32(out.as_mut_ptr().add(4 * c), acc[c]);
    }
}

#[target_feature(enable = "neon")]
pub(crate) unsafe fn scores_f32(q: &[f32], k: &[f32], stride: usize, scale: f32, out: &mut [f32]) {
    scores(q, k, stride, scale, out)
}

#[target_feature(enable = "neon")]
pub(crate) unsafe fn scores_f16(q: &[f32], k: &[f16], stride: usize, scale: f32, out: &mut [f32]) {
    scores(q, k, stride, scale, out)
}

#[target_feature(enable = "neon")]
pub(crate) unsafe fn accum_f32(w: &[f32], v: &[f32], stride: usize, out: &mut [f32]) {
    accum(w, v, stride, out)
}

#[target_feature(enable = "neon")]
pub(crate) unsafe fn accum_f16(w: &[f32], v: &[f16], stride: usize, out: &mut [f32]) {
    accum(w, v, stride, out)
}

/// Keys (or values) `j0..j0 + n` (n <= 8) as f32 rows of `hd` in `buf`, zero past `n`.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn load_block<T: Kv>(src: &[T], stride: usize, j0: usize, n: usize, hd: usize, buf: &mut [f32]) {
    for j in 0..8 {
        for c in 0..hd / 4 {
            let v = if j < n { T::load4(src.as_ptr().add((j0 + j) * stride + 4 * c)) } else { vdupq_n_f32(0.0) };
            vst1q_f32(buf.as_mut_ptr().add(j * hd + 4 * c), v);
        }
    }
}

/// Flash attention of one head, 4 queries on the lanes, blocks of 8 keys.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn flash<T: Kv>(job: &mut FlashJob<'_, T>) {
    let hd = job.hd;
    if !hd.is_multiple_of(4) || hd > MAX_HEAD_DIM {
        return crate::attention::flash_ref(job);
    }
    let mut qt = [0f32; 4 * MAX_HEAD_DIM]; // [d][query]
    let mut ot = [0f32; 4 * MAX_HEAD_DIM]; // [d][query]
    let mut kb = [0f32; 8 * MAX_HEAD_DIM]; // [key][d]
    let mut vb = [0f32; 8 * MAX_HEAD_DIM]; // [key][d]
    let neg_inf = vdupq_n_f32(f32::NEG_INFINITY);
    for i0 in (0..job.n_q).step_by(4) {
        let nq = (job.n_q - i0).min(4);
        qt[..4 * hd].fill(0.0);
        ot[..4 * hd].fill(0.0);
        for i in 0..nq {
            let qi = &job.q[(i0 + i) * job.q_stride..(i0 + i) * job.q_stride + hd];
            for (d, &v) in qi.iter().enumerate() {
                qt[4 * d + i] = v * job.scale;
            }
        }
        let last = job.first + i0 + nq - 1;
        let lanes: [u32; 4] = std::array::from_fn(|i| (job.first + i0 + i.min(nq - 1)) as u32);
        let pos = vld1q_u32(lanes.as_ptr());
        let (mut m, mut l) = (neg_inf, vdupq_n_f32(0.0));
        let mut j0 = 0;
        while j0 <= last {
            let nk = (last + 1 - j0).min(8);
            load_block(job.k, job.kv_stride, j0, nk, hd, &mut kb);
            load_block(job.v, job.kv_stride, j0, nk, hd, &mut vb);
            let mut s = [vdupq_n_f32(0.0); 8];
            for d in 0..hd {
                let qd = vld1q_f32(qt.as_ptr().add(4 * d));
                for j in 0..8 {
                    s[j] = vfmaq_n_f32(s[j], qd, kb[j * hd + d]);
                }
            }
            let mut mx = m;
            for j in 0..8 {
                let vis = vcgeq_u32(pos, vdupq_n_u32((j0 + j) as u32));
                s[j] = vbslq_f32(vis, s[j], neg_inf);
                mx = vmaxq_f32(mx, s[j]);
            }
            let corr = exp(vsubq_f32(m, mx));
            l = vmulq_f32(l, corr);
            for j in 0..8 {
                s[j] = exp(vsubq_f32(s[j], mx));
                l = vaddq_f32(l, s[j]);
            }
            m = mx;
            for d in 0..hd {
                let mut o = vmulq_f32(vld1q_f32(ot.as_ptr().add(4 * d)), corr);
                for j in 0..8 {
                    o = vfmaq_n_f32(o, s[j], vb[j * hd + d]);
                }
                vst1q_f32(ot.as_mut_ptr().add(4 * d), o);
            }
            j0 += 8;
        }
        let mut inv = [0f32; 4];
        vst1q_f32(inv.as_mut_ptr(), vdivq_f32(vdupq_n_f32(1.0), l));
        for i in 0..nq {
            let o = job.out.add((i0 + i) * job.o_stride);
            for d in 0..hd {
                *o.add(d) = ot[4 * d + i] * inv[i];
            }
        }
    }
}

#[target_feature(enable = "neon")]
pub(crate) unsafe fn flash_f32(job: &mut FlashJob<'_, f32>) {
    flash(job)
}

#[target_feature(enable = "neon")]
pub(crate) unsafe fn flash_f16(job: &mut FlashJob<'_, f16>) {
    flash(job)
}
