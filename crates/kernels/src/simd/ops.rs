//! Element-wise and row kernels: `exp`, GELU, softmax, layer norm, adds, dot products.
//!
//! `exp` is Cephes' `expf`: range reduction by ln 2 in two parts and a degree-5 polynomial,
//! then `2^n` by [`Simd::exp_scale`]; relative error below 2.5e-7 against f64 over [-87, 88].
//! GELU is GPT-2's tanh form written as `u / (1 + exp(-2z))`, which has no cancellation for
//! negative `u`. Tails shorter than a vector go through [`Simd::load_part`] and
//! [`Simd::store_part`], so a row's result does not depend on where it sits in a buffer.

use super::Simd;

const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
const EXP_POLY: [f32; 6] = [1.987_569_1e-4, 1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5];

#[inline(always)]
pub(crate) unsafe fn exp<S: Simd>(x: S::V) -> S::V {
    let xc = S::min(S::max(x, S::splat(S::EXP_LO)), S::splat(S::EXP_HI));
    let n = S::round(S::mul(xc, S::splat(std::f32::consts::LOG2_E)));
    let r = S::fnma(n, S::splat(LN2_HI), xc);
    let r = S::fnma(n, S::splat(LN2_LO), r);
    let mut p = S::splat(EXP_POLY[0]);
    for &c in &EXP_POLY[1..] {
        p = S::fma(p, r, S::splat(c));
    }
    let y = S::fma(p, S::mul(r, r), S::add(r, S::splat(1.0)));
    S::exp_scale(x, y, n)
}

#[inline(always)]
unsafe fn gelu_v<S: Simd>(u: S::V) -> S::V {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    let u2 = S::mul(u, u);
    let z = S::mul(u, S::fma(u2, S::splat(0.044_715 * SQRT_2_OVER_PI), S::splat(SQRT_2_OVER_PI)));
    let e = exp::<S>(S::mul(z, S::splat(-2.0)));
    S::div(u, S::add(e, S::splat(1.0)))
}

/// Runs the body for every vector of `0..n` (`len < LANES` only on the last). A macro, not a
/// closure: a closure would be a function of its own, without the caller's target features.
macro_rules! each {
    ($S:ty, $n:expr, |$i:ident, $len:ident| $body:expr) => {{
        let n = $n;
        let mut $i = 0;
        while $i < n {
            let $len = (n - $i).min(<$S>::LANES);
            $body;
            $i += <$S>::LANES;
        }
    }};
}

#[inline(always)]
pub(crate) unsafe fn gelu<S: Simd>(x: &mut [f32]) {
    let p = x.as_mut_ptr();
    each!(S, x.len(), |i, n| S::store_part(p.add(i), n, gelu_v::<S>(S::load_part(p.add(i), n))));
}

#[inline(always)]
pub(crate) unsafe fn softmax<S: Simd>(x: &mut [f32]) {
    let (p, n) = (x.as_mut_ptr(), x.len());
    let mut vmax = S::splat(f32::NEG_INFINITY);
    let mut i = 0;
    while i + S::LANES <= n {
        vmax = S::max(vmax, S::load(p.add(i)));
        i += S::LANES;
    }
    let mut max = S::hmax(vmax);
    for j in i..n {
        max = max.max(*p.add(j));
    }
    let vmax = S::splat(max);
    let mut sum = S::zero();
    each!(S, n, |i, len| {
        let e = S::keep_first(exp::<S>(S::sub(S::load_part(p.add(i), len), vmax)), len);
        sum = S::add(sum, e);
        S::store_part(p.add(i), len, e);
    });
    let inv = S::splat(1.0 / S::hsum(sum));
    each!(S, n, |i, len| S::store_part(p.add(i), len, S::mul(S::load_part(p.add(i), len), inv)));
}

/// `out = (x - mean) / sqrt(var + eps) * w + b`; sums of `x - x[0]`, so that rows far from
/// zero keep their precision.
#[inline(always)]
pub(crate) unsafe fn layer_norm<S: Simd>(x: &[f32], w: &[f32], b: &[f32], eps: f32, out: &mut [f32]) {
    let n = x.len();
    debug_assert!(w.len() == n && b.len() == n && out.len() == n);
    let (xp, wp, bp, op) = (x.as_ptr(), w.as_ptr(), b.as_ptr(), out.as_mut_ptr());
    let pivot = S::splat(x[0]);
    let mut s = S::zero();
    each!(S, n, |i, len| s = S::add(s, S::keep_first(S::sub(S::load_part(xp.add(i), len), pivot), len)));
    let mean = x[0] + S::hsum(s) / n as f32;
    let vm = S::splat(mean);
    let mut v = S::zero();
    each!(S, n, |i, len| {
        let d = S::keep_first(S::sub(S::load_part(xp.add(i), len), vm), len);
        v = S::fma(d, d, v);
    });
    let inv = S::splat(1.0 / (S::hsum(v) / n as f32 + eps).sqrt());
    each!(S, n, |i, len| {
        let d = S::mul(S::sub(S::load_part(xp.add(i), len), vm), inv);
        S::store_part(op.add(i), len, S::fma(d, S::load_part(wp.add(i), len), S::load_part(bp.add(i), len)));
    });
}

#[inline(always)]
pub(crate) unsafe fn add_assign<S: Simd>(dst: &mut [f32], src: &[f32]) {
    let n = dst.len().min(src.len());
    let (d, s) = (dst.as_mut_ptr(), src.as_ptr());
    each!(S, n, |i, len| S::store_part(
        d.add(i),
        len,
        S::add(S::load_part(d.add(i), len), S::load_part(s.add(i), len))
    ));
}

#[inline(always)]
pub(crate) unsafe fn dot_f32<S: Simd>(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let mut acc = S::zero();
    each!(S, n, |i, len| acc = S::fma(S::load_part(a.as_ptr().add(i), len), S::load_part(b.as_ptr().add(i), len), acc));
    S::hsum(acc)
}
