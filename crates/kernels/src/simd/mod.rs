//! The float algorithms of every SIMD backend, written once.
//!
//! [`Simd`] is the vocabulary they are written in: a vector of `LANES` f32 and a few dozen
//! operations, each an `#[inline(always)]` wrapper of one instruction (or a short fixed
//! sequence) of one instruction set. `Avx2`, `Avx512` and `Neon` (zero-sized types in the
//! `arch` files) implement it; a backend instantiates an algorithm inside a thin
//! `#[target_feature]` function (the [`float_kernels!`] macro writes them), where everything
//! inlines into the same machine code a hand-written version would be (the model of the
//! `pulp` crate and of candle's `trait Cpu`). What really differs between instruction sets,
//! the integer dot products (`vpdpbusd`, `vpmaddubsw`, `sdot`) and the register-tile shapes
//! built on them, stays in the per-ISA files.
//!
//! Every function here is `unsafe`: it must run inside a function with the backend's target
//! features (which the dispatcher guarantees by handing out a table only for a CPU that has
//! them), and the caller passes valid lengths as each one documents.

pub(crate) mod attn;
pub(crate) mod float_mm;
pub(crate) mod ops;
pub(crate) mod quant;

use half::f16;
use quill_quant::BlockQ8_0;

/// How far ahead of the kernel a decode product's weight stream is prefetched, in bytes. The
/// hardware prefetchers alone leave the memory bus idle while the kernel computes (on a Zen 3,
/// 2 threads, a one-token step took about its memory time plus its compute time); asking for the
/// line this far ahead keeps enough reads in flight to overlap the two. Measured with `quill
/// bench` on GPT-2 1558M (mapped files, 2 threads, AVX2 on Zen 3): 1024 and 2048 bytes tied and
/// cut Q8_0's token time from 78-100 ms to 67-79 ms, 4096 helped less. The larger of the two
/// suits cores that stream faster.
pub(crate) const STREAM_AHEAD: usize = 2048;

/// Prefetches every cache line of the `len` bytes that start [`STREAM_AHEAD`] bytes past `p`:
/// called once per block a kernel reads in stream order, it keeps the stream's lines coming
/// (consecutive calls cover consecutive ranges, at most a line apart).
#[inline(always)]
pub(crate) unsafe fn prefetch_ahead<S: Simd>(p: *const u8, len: usize) {
    let q = p.wrapping_add(STREAM_AHEAD);
    for off in (0..len).step_by(64) {
        // SAFETY: prefetching is a hint that never faults, whatever the address.
        unsafe { S::prefetch(q.wrapping_add(off)) }
    }
}

/// A SIMD instruction set's f32 vectors (see the module docs).
pub(crate) trait Simd: Copy + 'static {
    /// f32 lanes per vector.
    const LANES: usize;
    /// Tokens per float GEMM register tile (rows are two vectors).
    const GEMM_TOKENS: usize;
    /// The clamp of [`ops::exp`]'s argument: below `EXP_LO` the result is 0 (or what
    /// [`Simd::exp_scale`] makes of it), above `EXP_HI` it saturates.
    const EXP_LO: f32;
    const EXP_HI: f32;

    type V: Copy;
    type I: Copy;
    type M: Copy;

    unsafe fn zero() -> Self::V;
    unsafe fn splat(x: f32) -> Self::V;
    unsafe fn load(p: *const f32) -> Self::V;
    unsafe fn store(p: *mut f32, v: Self::V);
    /// Lanes `0..n` (`n <= LANES`) from `p`, the others zero; nothing past `p + n` is read.
    unsafe fn load_part(p: *const f32, n: usize) -> Self::V;
    /// Stores lanes `0..n`; nothing past `p + n` is written.
    unsafe fn store_part(p: *mut f32, n: usize, v: Self::V);
    /// `LANES` f16 values widened to f32.
    unsafe fn load_f16(p: *const f16) -> Self::V;
    /// `LANES` bf16 values (as bits) widened to f32.
    unsafe fn load_bf16(p: *const u16) -> Self::V;
    /// `LANES` i8 values widened to f32.
    unsafe fn load_i8(p: *const i8) -> Self::V;
    /// The f16 value at `p` widened to f32 in every lane.
    unsafe fn splat_f16(p: *const f16) -> Self::V;
    /// Asks for the cache line holding `p` ahead of its use (any address: it never faults).
    /// The default does nothing (NEON: not measured yet, see [`STREAM_AHEAD`]).
    #[inline(always)]
    unsafe fn prefetch(_p: *const u8) {}
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn sub(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn mul(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn div(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn max(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn min(a: Self::V, b: Self::V) -> Self::V;
    /// `a * b + c`, fused.
    unsafe fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// `c - a * b`, fused.
    unsafe fn fnma(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// Round to the nearest integer, ties to even.
    unsafe fn round(v: Self::V) -> Self::V;
    /// `y * 2^n` for integral `n` within the clamp; `x` is the unclamped argument of `exp`.
    unsafe fn exp_scale(x: Self::V, y: Self::V, n: Self::V) -> Self::V;
    unsafe fn hsum(v: Self::V) -> f32;
    unsafe fn hmax(v: Self::V) -> f32;
    /// Lane `j` of the result is the sum of `v[j]`'s lanes (`v.len() == LANES`).
    unsafe fn hsums(v: &[Self::V]) -> Self::V;
    /// Lanes `n..` set to zero.
    unsafe fn keep_first(v: Self::V, n: usize) -> Self::V;
    unsafe fn abs(v: Self::V) -> Self::V;
    /// Round half away from zero (C's `roundf`).
    unsafe fn round_away(v: Self::V) -> Self::V;
    /// Stores `LANES` integral values in `-128..=127` as i8.
    unsafe fn store_i8(p: *mut i8, v: Self::V);
    /// `[base, base + 1, ...]`.
    unsafe fn iota(base: i32) -> Self::I;
    unsafe fn splat_i(x: i32) -> Self::I;
    unsafe fn min_i(a: Self::I, b: Self::I) -> Self::I;
    /// Lanes where `a > b`.
    unsafe fn gt_i(a: Self::I, b: Self::I) -> Self::M;
    /// `b` where `m`, else `a`.
    unsafe fn select(m: Self::M, a: Self::V, b: Self::V) -> Self::V;
}

/// The one-instruction methods of a [`Simd`] impl: `simd_basics!(V; zero = .., splat = .., load = ..,
/// store = ..; add = .., sub = .., ...)` writes `zero`, `splat`, `load`, `store` and the binary
/// operations, each an `#[inline(always)]` call of the named intrinsic.
macro_rules! simd_basics {
    ($V:ty; zero = $zero:path, splat = $splat:path, load = $load:path, store = $store:path;
     $($op:ident = $f:path),* $(,)?) => {
        #[inline(always)]
        unsafe fn zero() -> $V {
            // SAFETY: within this function's contract: the CPU has the target features it (or its
            // caller) names, and the caller's pointers and lengths are valid for what it touches.
            unsafe {
            $zero()
            }
        }
        #[inline(always)]
        unsafe fn splat(x: f32) -> $V {
            // SAFETY: within this function's contract: the CPU has the target features it (or its
            // caller) names, and the caller's pointers and lengths are valid for what it touches.
            unsafe {
            $splat(x)
            }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> $V {
            // SAFETY: within this function's contract: the CPU has the target features it (or its
            // caller) names, and the caller's pointers and lengths are valid for what it touches.
            unsafe {
            $load(p)
            }
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: $V) {
            // SAFETY: within this function's contract: the CPU has the target features it (or its
            // caller) names, and the caller's pointers and lengths are valid for what it touches.
            unsafe {
            $store(p, v)
            }
        }
        $(
            #[inline(always)]
            unsafe fn $op(a: $V, b: $V) -> $V {
                // SAFETY: the Simd contract: called only where this backend's target features are on.
                unsafe { $f(a, b) }
            }
        )*
    };
}
pub(crate) use simd_basics;

/// A KV-cache or weight element that widens to f32 vectors.
pub(crate) trait Widen: crate::attention::KvElem {
    /// Elements `e..e + LANES` of the row that starts at `row` as f32 (`e` a multiple of
    /// `LANES`; `LANES` divides [`crate::attention::KvElem::BLOCK`] or is a multiple of it).
    unsafe fn widen<S: Simd>(row: *const Self, e: usize) -> S::V;

    /// Lane partial sums of `q . row` (`q` as vectors, one per `LANES` elements).
    #[inline(always)]
    unsafe fn dot<S: Simd>(q: &[S::V], row: *const Self) -> S::V {
        // SAFETY: within this function's contract: the CPU has the target features it (or its
        // caller) names, and the caller's pointers and lengths are valid for what it touches.
        unsafe {
            let mut a = S::mul(q[0], Self::widen::<S>(row, 0));
            for (c, &qc) in q.iter().enumerate().skip(1) {
                a = S::fma(qc, Self::widen::<S>(row, S::LANES * c), a);
            }
            a
        }
    }

    /// `acc[c] += w * (elements of vector c of row)` for every `c < acc.len()`.
    #[inline(always)]
    unsafe fn axpy<S: Simd>(w: f32, row: *const Self, acc: &mut [S::V]) {
        // SAFETY: within this function's contract: the CPU has the target features it (or its
        // caller) names, and the caller's pointers and lengths are valid for what it touches.
        unsafe {
            let ws = S::splat(w);
            for (c, ac) in acc.iter_mut().enumerate() {
                *ac = S::fma(ws, Self::widen::<S>(row, S::LANES * c), *ac);
            }
        }
    }
}

impl Widen for f32 {
    #[inline(always)]
    unsafe fn widen<S: Simd>(row: *const f32, e: usize) -> S::V {
        // SAFETY: within this function's contract: the CPU has the target features it (or its
        // caller) names, and the caller's pointers and lengths are valid for what it touches.
        unsafe { S::load(row.add(e)) }
    }
}

impl Widen for f16 {
    #[inline(always)]
    unsafe fn widen<S: Simd>(row: *const f16, e: usize) -> S::V {
        // SAFETY: within this function's contract: the CPU has the target features it (or its
        // caller) names, and the caller's pointers and lengths are valid for what it touches.
        unsafe { S::load_f16(row.add(e)) }
    }
}

/// The codes and the scale of block `b`.
#[inline(always)]
unsafe fn q8_parts(b: *const BlockQ8_0) -> (*const i8, *const f16) {
    // SAFETY: the caller's `b` points to a block; only its fields' addresses are taken.
    unsafe { ((&raw const (*b).qs).cast::<i8>(), &raw const (*b).d) }
}

impl Widen for BlockQ8_0 {
    /// The codes times the block's scale: exact, as [`crate::attention::KvElem::at`].
    #[inline(always)]
    unsafe fn widen<S: Simd>(row: *const BlockQ8_0, e: usize) -> S::V {
        // SAFETY: within this function's contract: the CPU has the target features it (or its
        // caller) names, and the caller's pointers and lengths are valid for what it touches;
        // LANES divides 32, so the lanes lie in block e / 32.
        unsafe {
            let (codes, d) = q8_parts(row.add(e / 32));
            S::mul(S::load_i8(codes.add(e % 32)), S::splat_f16(d))
        }
    }

    /// Per block, the codes' dot product with `q`, then times the scale (one multiply per
    /// block instead of one per vector).
    #[inline(always)]
    unsafe fn dot<S: Simd>(q: &[S::V], row: *const BlockQ8_0) -> S::V {
        // SAFETY: within this function's contract: the CPU has the target features it (or its
        // caller) names, and the caller's pointers and lengths are valid for what it touches
        // (q.len() * LANES elements: whole blocks).
        unsafe {
            let per = 32 / S::LANES;
            let mut a = S::zero();
            for (i, qb) in q.chunks_exact(per).enumerate() {
                let (codes, d) = q8_parts(row.add(i));
                let mut s = S::mul(qb[0], S::load_i8(codes));
                for (j, &qj) in qb.iter().enumerate().skip(1) {
                    s = S::fma(qj, S::load_i8(codes.add(S::LANES * j)), s);
                }
                a = S::fma(s, S::splat_f16(d), a);
            }
            a
        }
    }

    /// Per block, `w` times the scale once, then the codes.
    #[inline(always)]
    unsafe fn axpy<S: Simd>(w: f32, row: *const BlockQ8_0, acc: &mut [S::V]) {
        // SAFETY: as for `dot` (acc.len() * LANES elements: whole blocks).
        unsafe {
            let per = 32 / S::LANES;
            let ws = S::splat(w);
            for (i, ab) in acc.chunks_exact_mut(per).enumerate() {
                let (codes, d) = q8_parts(row.add(i));
                let wd = S::mul(ws, S::splat_f16(d));
                for (j, aj) in ab.iter_mut().enumerate() {
                    *aj = S::fma(wd, S::load_i8(codes.add(S::LANES * j)), *aj);
                }
            }
        }
    }
}

/// Writes a backend's float kernels: `float_kernels!(Avx2, "avx2,fma,f16c")` defines, in the
/// calling module, `#[target_feature]` instantiations of every algorithm of this module (the
/// activation quantizers too) and `FLOAT_OPS`, the [`crate::table::OpsKernels`] that lists the
/// row kernels.
macro_rules! float_kernels {
    ($S:ty, $features:literal) => {
        mod float_kernels {
            use half::f16;

            use super::*;
            use crate::attention::{AttnFns, AttnKernels, FlashJob};
            use crate::simd::{attn, float_mm, ops, quant, Widen};
            use crate::table::OpsKernels;
            use quill_quant::{BlockQ8_0, BlockQ8_1, BlockQ8_K};

            type S = $S;

            #[target_feature(enable = $features)]
            pub(crate) unsafe fn quantize_q8_0(x: &[f32], out: &mut [BlockQ8_0]) {
                // SAFETY: within this function's contract: the CPU has the target features it (or its
                // caller) names, and the caller's pointers and lengths are valid for what it touches.
                unsafe { quant::q8_0::<S>(x, out) }
            }
            #[target_feature(enable = $features)]
            pub(crate) unsafe fn quantize_q8_1(x: &[f32], out: &mut [BlockQ8_1]) {
                // SAFETY: within this function's contract: the CPU has the target features it (or its
                // caller) names, and the caller's pointers and lengths are valid for what it touches.
                unsafe { quant::q8_1::<S>(x, out) }
            }
            #[target_feature(enable = $features)]
            pub(crate) unsafe fn quantize_q8_k(x: &[f32], out: &mut [BlockQ8_K]) {
                // SAFETY: within this function's contract: the CPU has the target features it (or its
                // caller) names, and the caller's pointers and lengths are valid for what it touches.
                unsafe { quant::q8_k::<S>(x, out) }
            }
            #[target_feature(enable = $features)]
            pub(crate) unsafe fn layer_norm(x: &[f32], w: &[f32], b: &[f32], eps: f32, out: &mut [f32]) {
                // SAFETY: within this function's contract: the CPU has the target features it (or its
                // caller) names, and the caller's pointers and lengths are valid for what it touches.
                unsafe { ops::layer_norm::<S>(x, w, b, eps, out) }
            }
            #[target_feature(enable = $features)]
            pub(crate) unsafe fn gelu(x: &mut [f32]) {
                // SAFETY: within this function's contract: the CPU has the target features it (or its
                // caller) names, and the caller's pointers and lengths are valid for what it touches.
                unsafe { ops::gelu::<S>(x) }
            }
            #[target_feature(enable = $features)]
            pub(crate) unsafe fn softmax(x: &mut [f32]) {
                // SAFETY: within this function's contract: the CPU has the target features it (or its
                // caller) names, and the caller's pointers and lengths are valid for what it touches.
                unsafe { ops::softmax::<S>(x) }
            }
            #[target_feature(enable = $features)]
            pub(crate) unsafe fn add_assign(dst: &mut [f32], src: &[f32]) {
                // SAFETY: within this function's contract: the CPU has the target features it (or its
                // caller) names, and the caller's pointers and lengths are valid for what it touches.
                unsafe { ops::add_assign::<S>(dst, src) }
            }
            #[target_feature(enable = $features)]
            pub(crate) unsafe fn scores<T: Widen>(q: &[f32], k: &[T], stride: usize, scale: f32, out: &mut [f32]) {
                // SAFETY: within this function's contract: the CPU has the target features it (or its
                // caller) names, and the caller's pointers and lengths are valid for what it touches.
                unsafe { attn::scores::<S, T>(q, k, stride, scale, out) }
            }
            #[target_feature(enable = $features)]
            pub(crate) unsafe fn accum<T: Widen>(w: &[f32], v: &[T], stride: usize, out: &mut [f32]) {
                // SAFETY: within this function's contract: the CPU has the target features it (or its
                // caller) names, and the caller's pointers and lengths are valid for what it touches.
                unsafe { attn::accum::<S, T>(w, v, stride, out) }
            }
            #[target_feature(enable = $features)]
            pub(crate) unsafe fn flash<T: Widen>(job: &mut FlashJob<'_, T>) {
                // SAFETY: within this function's contract: the CPU has the target features it (or its
                // caller) names, and the caller's pointers and lengths are valid for what it touches.
                unsafe { attn::flash::<S, T>(job) }
            }
            /// The attention kernels for one KV element type.
            const fn attn_fns<T: Widen>() -> AttnFns<T> {
                AttnFns { scores: scores::<T>, accum: accum::<T>, flash: flash::<T> }
            }
            #[target_feature(enable = $features)]
            pub(crate) unsafe fn gemv_f32(
                w: &[u8],
                rb: usize,
                k: usize,
                act: &crate::act::GemvAct<'_>,
                out: &mut [f32],
            ) {
                // SAFETY: within this function's contract: the CPU has the target features it (or its
                // caller) names, and the caller's pointers and lengths are valid for what it touches.
                unsafe { float_mm::gemv::<S, f32>(w, rb, k, act.x, out) }
            }
            #[target_feature(enable = $features)]
            pub(crate) unsafe fn gemv_f16(
                w: &[u8],
                rb: usize,
                k: usize,
                act: &crate::act::GemvAct<'_>,
                out: &mut [f32],
            ) {
                // SAFETY: within this function's contract: the CPU has the target features it (or its
                // caller) names, and the caller's pointers and lengths are valid for what it touches.
                unsafe { float_mm::gemv_f16::<S>(w, rb, k, act, out) }
            }
            #[target_feature(enable = $features)]
            pub(crate) unsafe fn gemv_bf16(
                w: &[u8],
                rb: usize,
                k: usize,
                act: &crate::act::GemvAct<'_>,
                out: &mut [f32],
            ) {
                // SAFETY: within this function's contract: the CPU has the target features it (or its
                // caller) names, and the caller's pointers and lengths are valid for what it touches.
                unsafe { float_mm::gemv::<S, float_mm::Bf16>(w, rb, k, act.x, out) }
            }
            /// Float weights against many tokens in the GEMV's order ([`crate::table::StepF32Fn`]).
            #[allow(clippy::too_many_arguments)]
            #[target_feature(enable = $features)]
            pub(crate) unsafe fn step_float(
                ty: quill_quant::GgmlType,
                w: &[u8],
                rb: usize,
                k: usize,
                x: &[f32],
                n_tokens: usize,
                out: *mut f32,
                stride: usize,
            ) {
                use quill_quant::GgmlType as G;
                // SAFETY: within this function's contract: the CPU has the target features it (or its
                // caller) names, and the caller's pointers and lengths are valid for what it touches.
                unsafe {
                    match ty {
                        G::F32 => float_mm::gemv_tokens::<S, f32>(w, rb, k, x, n_tokens, out, stride),
                        G::F16 => float_mm::gemv_tokens::<S, f16>(w, rb, k, x, n_tokens, out, stride),
                        G::BF16 => float_mm::gemv_tokens::<S, float_mm::Bf16>(w, rb, k, x, n_tokens, out, stride),
                        _ => unreachable!("step_float: {ty:?} is not a float type"),
                    }
                }
            }
            #[target_feature(enable = $features)]
            pub(crate) unsafe fn gemm_f32(
                panel: &crate::panel::Panel,
                x: &[f32],
                n_tokens: usize,
                out: *mut f32,
                stride: usize,
                n_rows: usize,
            ) {
                // SAFETY: within this function's contract: the CPU has the target features it (or its
                // caller) names, and the caller's pointers and lengths are valid for what it touches.
                unsafe { float_mm::gemm::<S>(panel, x, n_tokens, out, stride, n_rows) }
            }

            /// `exp` of every element (tests measure its error).
            #[cfg(test)]
            #[target_feature(enable = $features)]
            pub(crate) unsafe fn exp_in_place(x: &mut [f32]) {
                // SAFETY: within this function's contract: the CPU has the target features it (or its
                // caller) names, and the caller's pointers and lengths are valid for what it touches.
                unsafe {
                    for c in x.chunks_exact_mut(<S as crate::simd::Simd>::LANES) {
                        <S as crate::simd::Simd>::store(
                            c.as_mut_ptr(),
                            ops::exp::<S>(<S as crate::simd::Simd>::load(c.as_ptr())),
                        );
                    }
                }
            }

            pub(crate) const FLOAT_OPS: OpsKernels = OpsKernels {
                layer_norm,
                gelu,
                softmax,
                add_assign,
                attn: AttnKernels { f32: attn_fns(), f16: attn_fns(), q8_0: attn_fns() },
            };
        }
    };
}

pub(crate) use float_kernels;
