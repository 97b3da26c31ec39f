//! AVX-512 GEMM kernels: panel builders and the register-tiled micro-kernels.
//!
//! Integer micro-kernel: 32 weight rows (two registers of 16 rows x 4 codes) x 6 tokens. Per
//! step of 4 elements, each token's 4 activation bytes are broadcast and `vpdpbusd`-ed against
//! both row registers, so every weight byte loaded serves 6 tokens and every activation byte
//! 32 rows. The 12 integer sums start at the block's `-offset * sum(x)` and, per scale block,
//! are converted and scaled by `dw[row] * dx[token]` into float accumulators whose lanes are
//! output rows, scale block `s` into the `s % 4`th of four chains per output (the one order of
//! `crate::order`, so that these sums equal the AVX2 GEMV's bit for bit): results are stored
//! straight into `out`, no horizontal sums.
//!
//! Float micro-kernel: 32 rows x 12 tokens of f32 FMAs with broadcast activations.

#![allow(clippy::missing_safety_doc)]
// Register tiles are indexed [row vector][token] in fully unrolled loops: indices read best.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use gguf_file::GgmlType;

use crate::act::ActBlocks;
use crate::formats::quant_spec;
use crate::panel::{decode_rows, Panel};
use crate::CHAINS;

/// Rows per panel.
pub(crate) const NR: usize = 32;
/// Tokens per integer tile.
const TI: usize = 6;

/// Transposes 16 rows of 16 dwords: output `j` holds dword `j` of every input row (64 shuffles;
/// see the module docs for the panel layouts it writes).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
fn transpose16(r: [__m512i; 16]) -> [__m512i; 16] {
    let t: [__m512i; 16] = std::array::from_fn(|i| {
        let (a, b) = (r[2 * (i / 2)], r[2 * (i / 2) + 1]);
        if i % 2 == 0 {
            _mm512_unpacklo_epi32(a, b)
        } else {
            _mm512_unpackhi_epi32(a, b)
        }
    });
    // Per row group g (4 rows) and element e of each 128-bit lane.
    let u: [__m512i; 16] = std::array::from_fn(|i| {
        let (g, e) = (i / 4, i % 4);
        let (a, b) = (t[4 * g + e / 2], t[4 * g + 2 + e / 2]);
        if e % 2 == 0 {
            _mm512_unpacklo_epi64(a, b)
        } else {
            _mm512_unpackhi_epi64(a, b)
        }
    });
    let mut out = [_mm512_setzero_si512(); 16];
    for e in 0..4 {
        let (a, b, c, d) = (u[e], u[4 + e], u[8 + e], u[12 + e]);
        let x0 = _mm512_shuffle_i32x4::<0x44>(a, b);
        let x1 = _mm512_shuffle_i32x4::<0xee>(a, b);
        let y0 = _mm512_shuffle_i32x4::<0x44>(c, d);
        let y1 = _mm512_shuffle_i32x4::<0xee>(c, d);
        out[e] = _mm512_shuffle_i32x4::<0x88>(x0, y0);
        out[4 + e] = _mm512_shuffle_i32x4::<0xdd>(x0, y0);
        out[8 + e] = _mm512_shuffle_i32x4::<0x88>(x1, y1);
        out[12 + e] = _mm512_shuffle_i32x4::<0xdd>(x1, y1);
    }
    out
}

/// Lays the decoded rows of an integer panel out as `[k / 4][32 rows][4 codes]` by 16x16
/// dword transposes.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
unsafe fn lay_out_codes(panel: &mut Panel) {
    // SAFETY: within this function's contract: the CPU has the target features it (or its
    // caller) names, and the caller's pointers and lengths are valid for what it touches.
    unsafe {
        let k = panel.k;
        let (rows, data) = (panel.rows.as_ptr(), panel.bytes_mut().as_mut_ptr());
        let full = k / 64;
        for half in 0..2 {
            for c in 0..full {
                let r: [__m512i; 16] =
                    std::array::from_fn(|i| _mm512_loadu_si512(rows.add((16 * half + i) * k + 64 * c).cast()));
                for (j, v) in transpose16(r).into_iter().enumerate() {
                    _mm512_storeu_si512(data.add(((16 * c + j) * NR + 16 * half) * 4).cast(), v);
                }
            }
            // A k that is not a multiple of 64: the last dwords one by one.
            for k4 in 16 * full..k / 4 {
                for i in 0..16 {
                    let row = 16 * half + i;
                    std::ptr::copy_nonoverlapping(rows.add(row * k + 4 * k4), data.add((k4 * NR + row) * 4), 4);
                }
            }
        }
    }
}

/// 16 weights of row `r` from column `c` as f32 (zero past the matrix's rows).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
unsafe fn float16(ty: GgmlType, w: &[u8], row_bytes: usize, n_rows: usize, r: usize, c: usize) -> __m512 {
    // SAFETY: within this function's contract: the CPU has the target features it (or its
    // caller) names, and the caller's pointers and lengths are valid for what it touches.
    unsafe {
        if r >= n_rows {
            return _mm512_setzero_ps();
        }
        let p = w.as_ptr().add(r * row_bytes);
        match ty {
            GgmlType::F32 => _mm512_loadu_ps(p.add(4 * c).cast()),
            GgmlType::F16 => _mm512_cvtph_ps(_mm256_loadu_si256(p.add(2 * c).cast())),
            _ => _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(_mm256_loadu_si256(
                p.add(2 * c).cast(),
            )))),
        }
    }
}

/// Float panel `[k][32 rows]` f32: 16x16 transposes of widened rows, the last columns (a k
/// that is not a multiple of 16) by the portable builder's rule.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
unsafe fn unpack_float(ty: GgmlType, w: &[u8], row_bytes: usize, panel: &mut Panel) {
    // SAFETY: within this function's contract: the CPU has the target features it (or its
    // caller) names, and the caller's pointers and lengths are valid for what it touches.
    unsafe {
        let k = panel.k;
        let n_rows = w.len() / row_bytes;
        let full = k / 16;
        let data = panel.f32s_mut().as_mut_ptr();
        for half in 0..2 {
            for c in 0..full {
                let r: [__m512i; 16] = std::array::from_fn(|i| {
                    _mm512_castps_si512(float16(ty, w, row_bytes, n_rows, 16 * half + i, 16 * c))
                });
                for (j, v) in transpose16(r).into_iter().enumerate() {
                    _mm512_storeu_si512(data.add((16 * c + j) * NR + 16 * half).cast(), v);
                }
            }
        }
        if full * 16 < k {
            let f = panel.f32s_mut();
            for r in 0..NR {
                for i in full * 16..k {
                    f[i * NR + r] = if r < n_rows {
                        let row = &w[r * row_bytes..(r + 1) * row_bytes];
                        match ty {
                            GgmlType::F32 => f32::from_le_bytes(row[4 * i..4 * i + 4].try_into().unwrap()),
                            GgmlType::F16 => half::f16::from_le_bytes([row[2 * i], row[2 * i + 1]]).to_f32(),
                            _ => f32::from_bits(u32::from(u16::from_le_bytes([row[2 * i], row[2 * i + 1]])) << 16),
                        }
                    } else {
                        0.0
                    };
                }
            }
        }
    }
}

/// `unpack_<format>` for every format of [`crate::table::formats!`].
macro_rules! unpackers {
    (; $($ty:ident $gemv:ident $name:ident),*) => {$(
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
        pub(crate) unsafe fn $name(w: &[u8], row_bytes: usize, _k: usize, panel: &mut Panel) {
            debug_assert_eq!(panel.nr, NR);
            // SAFETY: this function's contract (the table's): the CPU has AVX-512, whole rows.
            unsafe {
                match quant_spec(GgmlType::$ty) {
                    // Rows decoded by the portable decoder, specialised here for the format and
                    // vectorised by the compiler, then transposed into place.
                    Some(spec) => {
                        decode_rows(&spec, w, row_bytes, panel);
                        lay_out_codes(panel);
                    }
                    None => unpack_float(GgmlType::$ty, w, row_bytes, panel),
                }
            }
        }
    )*};
}

// One unpacker for every format of the one list.
crate::table::formats!(unpackers!());

/// Stores the 32 lanes of one token's accumulators into `out` (its first `n_rows`).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
unsafe fn store_rows(out: *mut f32, acc: [__m512; 2], n_rows: usize) {
    // SAFETY: within this function's contract: the CPU has the target features it (or its
    // caller) names, and the caller's pointers and lengths are valid for what it touches.
    unsafe {
        if n_rows >= NR {
            _mm512_storeu_ps(out, acc[0]);
            _mm512_storeu_ps(out.add(16), acc[1]);
        } else {
            let m0 = if n_rows >= 16 { 0xffff } else { (1u32 << n_rows) as u16 - 1 };
            let m1 = if n_rows <= 16 { 0 } else { (1u32 << (n_rows - 16)) as u16 - 1 };
            _mm512_mask_storeu_ps(out, m0, acc[0]);
            _mm512_mask_storeu_ps(out.add(16), m1, acc[1]);
        }
    }
}

/// One tile of `T` tokens from token `t0` against the integer panel.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
unsafe fn tile_i8<const T: usize, const MIN: bool>(
    panel: &Panel,
    act: &ActBlocks<'_>,
    t0: usize,
    out: *mut f32,
    out_stride: usize,
    n_rows: usize,
) {
    // SAFETY: within this function's contract: the CPU has the target features it (or its
    // caller) names, and the caller's pointers and lengths are valid for what it touches.
    unsafe {
        let (k, sb, n_sb) = (act.k, act.sblock, act.n_sb);
        let codes = panel.bytes().as_ptr();
        let (dw, mw) = (panel.dw.as_ptr(), panel.mw.as_ptr());
        let qs = act.qs.as_ptr().add(t0 * k);
        let (dx, corr) = (act.dx.as_ptr().add(t0 * n_sb), act.corr.as_ptr().add(t0 * n_sb));
        let sx = act.sx.as_ptr().wrapping_add(t0 * n_sb);
        // The one float order of every backend (`crate::order`): scale block s into chain s % 4.
        let mut chains = [[[_mm512_setzero_ps(); T]; 2]; CHAINS];
        for s in 0..n_sb {
            let accf = &mut chains[s % CHAINS];
            let mut acci = [[_mm512_setzero_si512(); T]; 2];
            for t in 0..T {
                let c = _mm512_set1_epi32(*corr.add(t * n_sb + s));
                acci[0][t] = c;
                acci[1][t] = c;
            }
            for k4 in s * sb / 4..(s + 1) * sb / 4 {
                let w0 = _mm512_loadu_si512(codes.add(k4 * 4 * NR).cast());
                let w1 = _mm512_loadu_si512(codes.add(k4 * 4 * NR + 64).cast());
                for t in 0..T {
                    let xb = _mm512_set1_epi32(qs.add(t * k + 4 * k4).cast::<i32>().read_unaligned());
                    acci[0][t] = _mm512_dpbusd_epi32(acci[0][t], w0, xb);
                    acci[1][t] = _mm512_dpbusd_epi32(acci[1][t], w1, xb);
                }
            }
            let dw0 = _mm512_loadu_ps(dw.add(s * NR));
            let dw1 = _mm512_loadu_ps(dw.add(s * NR + 16));
            for t in 0..T {
                let d = _mm512_set1_ps(*dx.add(t * n_sb + s));
                accf[0][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acci[0][t]), _mm512_mul_ps(dw0, d), accf[0][t]);
                accf[1][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acci[1][t]), _mm512_mul_ps(dw1, d), accf[1][t]);
            }
            if MIN {
                let mw0 = _mm512_loadu_ps(mw.add(s * NR));
                let mw1 = _mm512_loadu_ps(mw.add(s * NR + 16));
                for t in 0..T {
                    let m = _mm512_set1_ps(*sx.add(t * n_sb + s));
                    accf[0][t] = _mm512_fmadd_ps(mw0, m, accf[0][t]);
                    accf[1][t] = _mm512_fmadd_ps(mw1, m, accf[1][t]);
                }
            }
        }
        for t in 0..T {
            let acc: [__m512; 2] = std::array::from_fn(|r| {
                let c = |i: usize| chains[i][r][t];
                _mm512_add_ps(_mm512_add_ps(c(0), c(1)), _mm512_add_ps(c(2), c(3)))
            });
            store_rows(out.add((t0 + t) * out_stride), acc, n_rows);
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn gemm_i8_min<const MIN: bool>(
    panel: &Panel,
    act: &ActBlocks<'_>,
    out: *mut f32,
    stride: usize,
    n_rows: usize,
) {
    // SAFETY: within this function's contract: the CPU has the target features it (or its
    // caller) names, and the caller's pointers and lengths are valid for what it touches.
    unsafe {
        let mut t = 0;
        while t < act.n_tokens {
            let nt = (act.n_tokens - t).min(TI);
            match nt {
                6 => tile_i8::<6, MIN>(panel, act, t, out, stride, n_rows),
                5 => tile_i8::<5, MIN>(panel, act, t, out, stride, n_rows),
                4 => tile_i8::<4, MIN>(panel, act, t, out, stride, n_rows),
                3 => tile_i8::<3, MIN>(panel, act, t, out, stride, n_rows),
                2 => tile_i8::<2, MIN>(panel, act, t, out, stride, n_rows),
                _ => tile_i8::<1, MIN>(panel, act, t, out, stride, n_rows),
            }
            t += nt;
        }
    }
}

/// The integer micro-kernel over every token (see the module docs).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) unsafe fn gemm_i8(panel: &Panel, act: &ActBlocks<'_>, out: *mut f32, stride: usize, n_rows: usize) {
    // SAFETY: within this function's contract: the CPU has the target features it (or its
    // caller) names, and the caller's pointers and lengths are valid for what it touches.
    unsafe {
        debug_assert_eq!(panel.nr, NR);
        debug_assert_eq!(panel.k, act.k);
        if panel.has_min {
            gemm_i8_min::<true>(panel, act, out, stride, n_rows)
        } else {
            gemm_i8_min::<false>(panel, act, out, stride, n_rows)
        }
    }
}
