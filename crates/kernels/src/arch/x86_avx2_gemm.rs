//! AVX2 GEMM kernels: panel builders and micro-kernels.
//!
//! Integer micro-kernel: 16 weight rows (two registers of 8 rows x 2 i16 values) x 3 tokens,
//! `vpmaddwd` of the signed values against broadcast pairs of activations (exact: no saturating
//! byte products), integer sums per scale block converted and scaled by `dw * dx` into float
//! accumulators whose lanes are output rows. Float micro-kernel: 16 rows x 6 tokens of FMAs.

#![allow(clippy::missing_safety_doc)]
// Register tiles are indexed [row vector][token] in fully unrolled loops: indices read best.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use gguf_file::GgmlType;

use crate::act::ActBlocks;
use crate::formats::quant_spec;
use crate::panel::{build_float, build_int, Panel};

/// Rows per panel.
pub(crate) const NR: usize = 16;
/// Tokens per integer tile.
const TI: usize = 3;
/// Tokens per float tile.
const TF: usize = 6;

macro_rules! unpackers {
    ($($name:ident => $ty:ident),* $(,)?) => {$(
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(crate) unsafe fn $name(w: &[u8], row_bytes: usize, _k: usize, panel: &mut Panel) {
            match quant_spec(GgmlType::$ty) {
                Some(spec) => build_int(&spec, w, row_bytes, panel),
                None => build_float(GgmlType::$ty, w, row_bytes, panel),
            }
        }
    )*};
}

unpackers! {
    unpack_f32 => F32,
    unpack_f16 => F16,
    unpack_bf16 => BF16,
    unpack_q4_0 => Q4_0,
    unpack_q4_1 => Q4_1,
    unpack_q5_0 => Q5_0,
    unpack_q5_1 => Q5_1,
    unpack_q8_0 => Q8_0,
    unpack_q4_k => Q4_K,
    unpack_q5_k => Q5_K,
    unpack_q6_k => Q6_K,
}

/// Stores one token's 16 row lanes into `out` (its first `n_rows`).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn store_rows(out: *mut f32, acc: [__m256; 2], n_rows: usize) {
    if n_rows >= NR {
        _mm256_storeu_ps(out, acc[0]);
        _mm256_storeu_ps(out.add(8), acc[1]);
    } else {
        let mut tmp = [0f32; NR];
        _mm256_storeu_ps(tmp.as_mut_ptr(), acc[0]);
        _mm256_storeu_ps(tmp.as_mut_ptr().add(8), acc[1]);
        std::ptr::copy_nonoverlapping(tmp.as_ptr(), out, n_rows);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn tile_i16<const T: usize, const MIN: bool>(
    panel: &Panel,
    act: &ActBlocks<'_>,
    t0: usize,
    out: *mut f32,
    out_stride: usize,
    n_rows: usize,
) {
    let (k, sb, n_sb) = (act.k, act.sblock, act.n_sb);
    let codes = panel.bytes().as_ptr();
    let (dw, mw) = (panel.dw.as_ptr(), panel.mw.as_ptr());
    let qs = act.qs.as_ptr().add(t0 * k);
    let dx = act.dx.as_ptr().add(t0 * n_sb);
    let sx = act.sx.as_ptr().wrapping_add(t0 * n_sb);
    let mut accf = [[_mm256_setzero_ps(); T]; 2];
    for s in 0..n_sb {
        let mut acci = [[_mm256_setzero_si256(); T]; 2];
        for k4 in s * sb / 4..(s + 1) * sb / 4 {
            // Two steps of 2 elements: [k2][16 rows][2] i16, 64 bytes each.
            let p = codes.add(k4 * 128);
            let w = [
                _mm256_loadu_si256(p.cast()),
                _mm256_loadu_si256(p.add(32).cast()),
                _mm256_loadu_si256(p.add(64).cast()),
                _mm256_loadu_si256(p.add(96).cast()),
            ];
            for t in 0..T {
                let x4 = _mm_cvtsi32_si128(qs.add(t * k + 4 * k4).cast::<i32>().read_unaligned());
                let x16 = _mm_cvtepi8_epi16(x4);
                let xa = _mm256_broadcastd_epi32(x16);
                let xb = _mm256_broadcastd_epi32(_mm_srli_si128::<4>(x16));
                let a0 = _mm256_add_epi32(_mm256_madd_epi16(w[0], xa), _mm256_madd_epi16(w[2], xb));
                let a1 = _mm256_add_epi32(_mm256_madd_epi16(w[1], xa), _mm256_madd_epi16(w[3], xb));
                acci[0][t] = _mm256_add_epi32(acci[0][t], a0);
                acci[1][t] = _mm256_add_epi32(acci[1][t], a1);
            }
        }
        let dw0 = _mm256_loadu_ps(dw.add(s * NR));
        let dw1 = _mm256_loadu_ps(dw.add(s * NR + 8));
        for t in 0..T {
            let d = _mm256_set1_ps(*dx.add(t * n_sb + s));
            accf[0][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acci[0][t]), _mm256_mul_ps(dw0, d), accf[0][t]);
            accf[1][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acci[1][t]), _mm256_mul_ps(dw1, d), accf[1][t]);
        }
        if MIN {
            let mw0 = _mm256_loadu_ps(mw.add(s * NR));
            let mw1 = _mm256_loadu_ps(mw.add(s * NR + 8));
            for t in 0..T {
                let m = _mm256_set1_ps(*sx.add(t * n_sb + s));
                accf[0][t] = _mm256_fmadd_ps(mw0, m, accf[0][t]);
                accf[1][t] = _mm256_fmadd_ps(mw1, m, accf[1][t]);
            }
        }
    }
    for t in 0..T {
        store_rows(out.add((t0 + t) * out_stride), [accf[0][t], accf[1][t]], n_rows);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn gemm_i16_min<const MIN: bool>(
    panel: &Panel,
    act: &ActBlocks<'_>,
    out: *mut f32,
    stride: usize,
    n_rows: usize,
) {
    let mut t = 0;
    while t < act.n_tokens {
        let nt = (act.n_tokens - t).min(TI);
        match nt {
            3 => tile_i16::<3, MIN>(panel, act, t, out, stride, n_rows),
            2 => tile_i16::<2, MIN>(panel, act, t, out, stride, n_rows),
            _ => tile_i16::<1, MIN>(panel, act, t, out, stride, n_rows),
        }
        t += nt;
    }
}

/// The integer micro-kernel over every token (see the module docs).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn gemm_i16(panel: &Panel, act: &ActBlocks<'_>, out: *mut f32, stride: usize, n_rows: usize) {
    debug_assert_eq!(panel.nr, NR);
    debug_assert_eq!(panel.k, act.k);
    if panel.has_min {
        gemm_i16_min::<true>(panel, act, out, stride, n_rows)
    } else {
        gemm_i16_min::<false>(panel, act, out, stride, n_rows)
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn tile_f32<const T: usize>(
    panel: &Panel,
    x: &[f32],
    k: usize,
    t0: usize,
    out: *mut f32,
    stride: usize,
    n_rows: usize,
) {
    let p = panel.f32s().as_ptr();
    let xs = x.as_ptr().add(t0 * k);
    let mut acc = [[_mm256_setzero_ps(); T]; 2];
    for i in 0..k {
        let w0 = _mm256_loadu_ps(p.add(i * NR));
        let w1 = _mm256_loadu_ps(p.add(i * NR + 8));
        for t in 0..T {
            let xb = _mm256_set1_ps(*xs.add(t * k + i));
            acc[0][t] = _mm256_fmadd_ps(w0, xb, acc[0][t]);
            acc[1][t] = _mm256_fmadd_ps(w1, xb, acc[1][t]);
        }
    }
    for t in 0..T {
        store_rows(out.add((t0 + t) * stride), [acc[0][t], acc[1][t]], n_rows);
    }
}

/// The float micro-kernel over every token.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn gemm_f32(panel: &Panel, x: &[f32], n_tokens: usize, out: *mut f32, stride: usize, n_rows: usize) {
    debug_assert_eq!(panel.nr, NR);
    let k = panel.k;
    debug_assert!(x.len() >= n_tokens * k);
    let mut t = 0;
    while t < n_tokens {
        let nt = (n_tokens - t).min(TF);
        match nt {
            6 => tile_f32::<6>(panel, x, k, t, out, stride, n_rows),
            5 => tile_f32::<5>(panel, x, k, t, out, stride, n_rows),
            4 => tile_f32::<4>(panel, x, k, t, out, stride, n_rows),
            3 => tile_f32::<3>(panel, x, k, t, out, stride, n_rows),
            2 => tile_f32::<2>(panel, x, k, t, out, stride, n_rows),
            _ => tile_f32::<1>(panel, x, k, t, out, stride, n_rows),
        }
        t += nt;
    }
}
