//! Float weights (F32, F16, BF16): GEMV rows as dot products with four accumulators, and the
//! GEMM micro-kernel over `F32` panels (`[k][2 * LANES]`, see `crate::panel`): two row
//! registers x up to `GEMM_TOKENS` tokens of FMAs with broadcast activations.

// Register tiles are indexed [row vector][token] in fully unrolled loops: indices read best.
#![allow(clippy::needless_range_loop)]

use half::f16;

use super::Simd;
use crate::act::GemvAct;
use crate::panel::Panel;

/// A float weight (or activation) element as the GEMV reads it from bytes.
pub(crate) trait FloatElem {
    const BYTES: usize;
    /// `LANES` elements from `p`, widened.
    unsafe fn load<S: Simd>(p: *const u8) -> S::V;
    /// One element.
    unsafe fn one(p: *const u8) -> f32;
}

impl FloatElem for f32 {
    const BYTES: usize = 4;
    #[inline(always)]
    unsafe fn load<S: Simd>(p: *const u8) -> S::V {
        // SAFETY: within this function's contract: the CPU has the target features it (or its
        // caller) names, and the caller's pointers and lengths are valid for what it touches.
        unsafe { S::load(p.cast()) }
    }
    #[inline(always)]
    unsafe fn one(p: *const u8) -> f32 {
        // SAFETY: within this function's contract: the CPU has the target features it (or its
        // caller) names, and the caller's pointers and lengths are valid for what it touches.
        unsafe { p.cast::<f32>().read_unaligned() }
    }
}

impl FloatElem for f16 {
    const BYTES: usize = 2;
    #[inline(always)]
    unsafe fn load<S: Simd>(p: *const u8) -> S::V {
        // SAFETY: within this function's contract: the CPU has the target features it (or its
        // caller) names, and the caller's pointers and lengths are valid for what it touches.
        unsafe { S::load_f16(p.cast()) }
    }
    #[inline(always)]
    unsafe fn one(p: *const u8) -> f32 {
        // SAFETY: within this function's contract: the CPU has the target features it (or its
        // caller) names, and the caller's pointers and lengths are valid for what it touches.
        unsafe { f16::from_bits(p.cast::<u16>().read_unaligned()).to_f32() }
    }
}

/// bfloat16 weights (as bits).
pub(crate) struct Bf16;

impl FloatElem for Bf16 {
    const BYTES: usize = 2;
    #[inline(always)]
    unsafe fn load<S: Simd>(p: *const u8) -> S::V {
        // SAFETY: within this function's contract: the CPU has the target features it (or its
        // caller) names, and the caller's pointers and lengths are valid for what it touches.
        unsafe { S::load_bf16(p.cast()) }
    }
    #[inline(always)]
    unsafe fn one(p: *const u8) -> f32 {
        // SAFETY: within this function's contract: the CPU has the target features it (or its
        // caller) names, and the caller's pointers and lengths are valid for what it touches.
        unsafe { f32::from_bits(u32::from(p.cast::<u16>().read_unaligned()) << 16) }
    }
}

/// `out[r] = dot(row r of w, x)` for `W` weights and `X` activations (`k` elements): one
/// token of [`dot_tokens`], whose order is the float GEMV's.
#[inline(always)]
unsafe fn gemv_rows<S: Simd, W: FloatElem, X: FloatElem>(w: &[u8], rb: usize, k: usize, x: *const u8, out: &mut [f32]) {
    // SAFETY: within this function's contract: the CPU has the target features it (or its
    // caller) names, and the caller's pointers and lengths are valid for what it touches.
    unsafe {
        for (r, o) in out.iter_mut().enumerate() {
            dot_tokens::<S, W, X, 1>(w.as_ptr().add(r * rb), k, x, o, 0);
        }
    }
}

/// Tokens of `x` whose rows stay in L2 while every weight row of a task passes over them.
const STEP_TOKEN_BLOCK: usize = 24;
/// Weight rows that pass over one group of tokens before the next group.
const STEP_ROW_BLOCK: usize = 4;

/// `T` tokens of `X` activations from `xs` (rows `k` elements apart) against one weight row
/// at `p`, the weight loaded once for all `T`: `out[t * stride]`. The float GEMV's order, for
/// every (row, token): `LANES`-wide steps into four chains in turn, their sum
/// `(c0 + c1) + (c2 + c3)` summed across lanes, then the tail one element at a time.
#[inline(always)]
unsafe fn dot_tokens<S: Simd, W: FloatElem, X: FloatElem, const T: usize>(
    p: *const u8,
    k: usize,
    xs: *const u8,
    out: *mut f32,
    stride: usize,
) {
    // SAFETY: within this function's contract: the CPU has the target features it (or its
    // caller) names, and the caller's pointers and lengths are valid for what it touches.
    unsafe {
        let step = 4 * S::LANES;
        let full = k / step;
        let mut acc = [[S::zero(); 4]; T];
        for i in 0..full {
            super::prefetch_ahead::<S>(p.add(step * i * W::BYTES), step * W::BYTES);
            for j in 0..4 {
                let e = step * i + S::LANES * j;
                let w = W::load::<S>(p.add(e * W::BYTES));
                for t in 0..T {
                    acc[t][j] = S::fma(w, X::load::<S>(xs.add((t * k + e) * X::BYTES)), acc[t][j]);
                }
            }
        }
        for t in 0..T {
            let a = acc[t];
            let mut sum = S::hsum(S::add(S::add(a[0], a[1]), S::add(a[2], a[3])));
            for e in step * full..k {
                sum += W::one(p.add(e * W::BYTES)) * X::one(xs.add((t * k + e) * X::BYTES));
            }
            *out.add(t * stride) = sum;
        }
    }
}

/// Float rows `w` against `n_tokens` rows of `x` without a panel, every (row, token) summed by
/// [`dot_tokens`] as the GEMV sums it: bit for bit the one-token product whatever `n_tokens` is (row-invariant
/// by construction), each weight loaded once per three tokens. `x` is the activation the GEMV
/// multiplies (F16-rounded for F16 weights). Writes `out[t * stride + r]`.
#[inline(always)]
pub(crate) unsafe fn gemv_tokens<S: Simd, W: FloatElem>(
    w: &[u8],
    rb: usize,
    k: usize,
    x: &[f32],
    n_tokens: usize,
    out: *mut f32,
    stride: usize,
) {
    // SAFETY: within this function's contract: the CPU has the target features it (or its
    // caller) names, and the caller's pointers and lengths are valid for what it touches.
    unsafe {
        debug_assert!(x.len() >= n_tokens * k);
        let n_rows = w.len() / rb;
        for b0 in (0..n_tokens).step_by(STEP_TOKEN_BLOCK) {
            let b1 = (b0 + STEP_TOKEN_BLOCK).min(n_tokens);
            // A few rows at a time, so that both they and a group's activations stay in L1
            // while every group of the block passes over them.
            for r0 in (0..n_rows).step_by(STEP_ROW_BLOCK) {
                let r1 = (r0 + STEP_ROW_BLOCK).min(n_rows);
                let mut t = b0;
                while t < b1 {
                    let nt = (b1 - t).min(3);
                    for r in r0..r1 {
                        let p = w.as_ptr().add(r * rb);
                        let (xs, o) = (x.as_ptr().add(t * k).cast::<u8>(), out.add(t * stride + r));
                        match nt {
                            3 => dot_tokens::<S, W, f32, 3>(p, k, xs, o, stride),
                            2 => dot_tokens::<S, W, f32, 2>(p, k, xs, o, stride),
                            _ => dot_tokens::<S, W, f32, 1>(p, k, xs, o, stride),
                        }
                    }
                    t += nt;
                }
            }
        }
    }
}

/// Float rows against the f32 activation.
#[inline(always)]
pub(crate) unsafe fn gemv<S: Simd, W: FloatElem>(w: &[u8], rb: usize, k: usize, x: &[f32], out: &mut [f32]) {
    // SAFETY: within this function's contract: the CPU has the target features it (or its
    // caller) names, and the caller's pointers and lengths are valid for what it touches.
    unsafe {
        debug_assert!(x.len() >= k);
        gemv_rows::<S, W, f32>(w, rb, k, x.as_ptr().cast(), out)
    }
}

/// F16 rows against the activation as F16 (the same values as `act.x`): a 6400-element row in
/// f32 (25.6 KB) plus the weight stream overflow L1 and halve the loop's bandwidth; in F16 it
/// fits.
#[inline(always)]
pub(crate) unsafe fn gemv_f16<S: Simd>(w: &[u8], rb: usize, k: usize, act: &GemvAct<'_>, out: &mut [f32]) {
    // SAFETY: within this function's contract: the CPU has the target features it (or its
    // caller) names, and the caller's pointers and lengths are valid for what it touches.
    unsafe {
        assert!(act.xh.len() >= k, "F16 GEMV without the F16 activation row");
        gemv_rows::<S, f16, f16>(w, rb, k, act.xh.as_ptr().cast(), out)
    }
}

/// Stores one token's `2 * LANES` row lanes into `out` (its first `n_rows`).
#[inline(always)]
unsafe fn store_rows<S: Simd>(out: *mut f32, acc: [S::V; 2], n_rows: usize) {
    // SAFETY: within this function's contract: the CPU has the target features it (or its
    // caller) names, and the caller's pointers and lengths are valid for what it touches.
    unsafe {
        let l = S::LANES;
        if n_rows >= 2 * l {
            S::store(out, acc[0]);
            S::store(out.add(l), acc[1]);
        } else {
            S::store_part(out, n_rows.min(l), acc[0]);
            if n_rows > l {
                S::store_part(out.add(l), n_rows - l, acc[1]);
            }
        }
    }
}

#[inline(always)]
unsafe fn tile<S: Simd, const T: usize>(
    panel: &Panel,
    x: &[f32],
    k: usize,
    t0: usize,
    out: *mut f32,
    stride: usize,
    n_rows: usize,
) {
    // SAFETY: within this function's contract: the CPU has the target features it (or its
    // caller) names, and the caller's pointers and lengths are valid for what it touches.
    unsafe {
        let (nr, l) = (2 * S::LANES, S::LANES);
        let p = panel.f32s().as_ptr();
        let xs = x.as_ptr().add(t0 * k);
        let mut acc = [[S::zero(); T]; 2];
        for i in 0..k {
            let w0 = S::load(p.add(i * nr));
            let w1 = S::load(p.add(i * nr + l));
            for t in 0..T {
                let xb = S::splat(*xs.add(t * k + i));
                acc[0][t] = S::fma(w0, xb, acc[0][t]);
                acc[1][t] = S::fma(w1, xb, acc[1][t]);
            }
        }
        for t in 0..T {
            store_rows::<S>(out.add((t0 + t) * stride), [acc[0][t], acc[1][t]], n_rows);
        }
    }
}

/// The float micro-kernel over every token of `x` (`[n_tokens][k]`): writes
/// `out[t * stride + r]` for the panel's first `n_rows` rows.
#[inline(always)]
pub(crate) unsafe fn gemm<S: Simd>(
    panel: &Panel,
    x: &[f32],
    n_tokens: usize,
    out: *mut f32,
    stride: usize,
    n_rows: usize,
) {
    // SAFETY: within this function's contract: the CPU has the target features it (or its
    // caller) names, and the caller's pointers and lengths are valid for what it touches.
    unsafe {
        debug_assert_eq!(panel.nr, 2 * S::LANES);
        let k = panel.k;
        debug_assert!(x.len() >= n_tokens * k);
        let mut t = 0;
        while t < n_tokens {
            let nt = (n_tokens - t).min(S::GEMM_TOKENS);
            match nt {
                12.. => tile::<S, 12>(panel, x, k, t, out, stride, n_rows),
                11 => tile::<S, 11>(panel, x, k, t, out, stride, n_rows),
                10 => tile::<S, 10>(panel, x, k, t, out, stride, n_rows),
                9 => tile::<S, 9>(panel, x, k, t, out, stride, n_rows),
                8 => tile::<S, 8>(panel, x, k, t, out, stride, n_rows),
                7 => tile::<S, 7>(panel, x, k, t, out, stride, n_rows),
                6 => tile::<S, 6>(panel, x, k, t, out, stride, n_rows),
                5 => tile::<S, 5>(panel, x, k, t, out, stride, n_rows),
                4 => tile::<S, 4>(panel, x, k, t, out, stride, n_rows),
                3 => tile::<S, 3>(panel, x, k, t, out, stride, n_rows),
                2 => tile::<S, 2>(panel, x, k, t, out, stride, n_rows),
                _ => tile::<S, 1>(panel, x, k, t, out, stride, n_rows),
            }
            t += nt;
        }
    }
}
