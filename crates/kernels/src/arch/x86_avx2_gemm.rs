//! AVX2 GEMM kernels: panel builders and micro-kernels.
//!
//! Integer micro-kernel: 16 weight rows (two registers of 8 rows x 4 unsigned codes, the `U8`
//! panel) x up to 6 tokens. Per step of 4 elements each token's 4 activation bytes are
//! broadcast and multiplied with `vpmaddubsw` (unsigned codes x signed activations, adjacent
//! pairs summed to i16) against both row registers. The i16 sums run on for as many steps as
//! the format's largest code allows without overflow (8 steps = 32 elements for 4-bit codes,
//! 4 for 5-bit, 2 for 6-bit), so that one `vpmaddwd` widens 8 to 32 products to i32: on CPUs
//! with one integer multiplier (Zen 3) that is nearly one multiply instruction per 32
//! multiply-adds, twice the rate of `vpmaddubsw` + `vpmaddwd` per step. Q8_0's signed codes
//! take ggml's sign trick (`|w|` x `sign(x, w)`), widened every step. The integer sum of each
//! scale block (plus the activation's `-offset * sum(x)`) is converted and scaled by
//! `dw[row] * dx[token]` into float accumulators whose lanes are output rows, scale block `s`
//! into the `s % 4`th of four chains per output, summed at the end.
//!
//! Float micro-kernel: 16 rows x 6 tokens of FMAs.

#![allow(clippy::missing_safety_doc)]
// Register tiles are indexed [row vector][token] in fully unrolled loops: indices read best.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;
use std::marker::PhantomData;

use gguf_file::GgmlType;

use quill_quant::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0};

use super::x86_avx2_gemv as v;
use crate::act::ActBlocks;
use crate::formats::k_layout::*;
use crate::formats::LegacyBlock;
use crate::panel::{build_float, Panel, PanelKind};

/// Rows per panel.
pub(crate) const NR: usize = 16;
/// Tokens per integer tile.
const TI: usize = 4;

/// A weight format as the panel builder reads it: 32 codes at a time in element order, and
/// each row's scales (and minimums) per scale block.
trait PanelFmt {
    /// The 32 codes of elements `32c..32c + 32` of the row at `row`.
    unsafe fn codes32(row: *const u8, c: usize) -> __m256i;
    /// The row's `n_sb` scales into `dw` and minimums into `mw` (formats with one).
    unsafe fn scales(row: *const u8, n_sb: usize, dw: &mut [f32], mw: &mut [f32]);
}

/// Legacy 32-element blocks (their byte layout from [`LegacyBlock`]); Q8_0's signed codes are
/// flipped to `q + 128`.
struct LegacyPanel<B>(PhantomData<B>);

impl<B: LegacyBlock> PanelFmt for LegacyPanel<B> {
    #[inline(always)]
    unsafe fn codes32(row: *const u8, c: usize) -> __m256i {
        let b = row.add(c * B::BYTES);
        if B::SIGNED {
            _mm256_xor_si256(v::ld(b.add(B::QS)), _mm256_set1_epi8(-128))
        } else {
            v::legacy_codes::<B>(b)
        }
    }

    #[inline(always)]
    unsafe fn scales(row: *const u8, n_sb: usize, dw: &mut [f32], mw: &mut [f32]) {
        for s in 0..n_sb {
            let b = row.add(s * B::BYTES);
            dw[s] = v::f16_to_f32(v::rd16(b.add(B::D)));
            if let Some(m) = B::M {
                mw[s] = v::f16_to_f32(v::rd16(b.add(m)));
            }
        }
    }
}

/// Q4_K (`FIVE = false`) and Q5_K.
struct K4Panel<const FIVE: bool>;

impl<const FIVE: bool> PanelFmt for K4Panel<FIVE> {
    #[inline(always)]
    unsafe fn codes32(row: *const u8, c: usize) -> __m256i {
        let bp = row.add(c / 8 * k4_bytes(FIVE));
        let (lo, hi) = v::k4_codes::<FIVE>(bp, c % 8 / 2);
        if c.is_multiple_of(2) {
            lo
        } else {
            hi
        }
    }

    #[inline(always)]
    unsafe fn scales(row: *const u8, n_sb: usize, dw: &mut [f32], mw: &mut [f32]) {
        for b in 0..n_sb / 8 {
            let bp = row.add(b * k4_bytes(FIVE));
            let (d, dmin) = (v::f16_to_f32(v::rd16(bp.add(K4_D))), v::f16_to_f32(v::rd16(bp.add(K4_DMIN))));
            let (sc, m) = v::k4_scales_mins(bp.add(K4_SCALES));
            _mm256_storeu_ps(dw.as_mut_ptr().add(8 * b), _mm256_mul_ps(_mm256_set1_ps(d), sc));
            let mv = _mm256_mul_ps(_mm256_set1_ps(dmin), m);
            _mm256_storeu_ps(mw.as_mut_ptr().add(8 * b), _mm256_xor_ps(mv, _mm256_set1_ps(-0.0)));
        }
    }
}

/// Q6_K.
struct Q6KPanel;

impl PanelFmt for Q6KPanel {
    #[inline(always)]
    unsafe fn codes32(row: *const u8, c: usize) -> __m256i {
        v::q6k_codes(row.add(c / 8 * Q6K_BYTES), c % 8 / 4, c % 4)
    }

    #[inline(always)]
    unsafe fn scales(row: *const u8, n_sb: usize, dw: &mut [f32], _mw: &mut [f32]) {
        for b in 0..n_sb / 16 {
            let bp = row.add(b * Q6K_BYTES);
            let d = _mm256_set1_ps(v::f16_to_f32(v::rd16(bp.add(Q6K_D))));
            for h in 0..2 {
                let sc = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(bp.add(Q6K_SCALES + 8 * h).cast())));
                _mm256_storeu_ps(dw.as_mut_ptr().add(16 * b + 8 * h), _mm256_mul_ps(d, sc));
            }
        }
    }
}

/// Builds a `U8` panel: 8 rows' 32-code registers at a time, 8x8 dword transposes into
/// `[k / 4][16 rows][4 codes]`, then the scales. Rows past the matrix get zero codes and
/// scales.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn unpack_int<F: PanelFmt>(w: &[u8], row_bytes: usize, panel: &mut Panel) {
    let (k, n_sb) = (panel.k, panel.n_sb);
    debug_assert_eq!(k % 32, 0);
    let n_rows = w.len() / row_bytes;
    let data = panel.bytes_mut().as_mut_ptr();
    for half in 0..2 {
        for c in 0..k / 32 {
            let r8: [__m256i; 8] = std::array::from_fn(|i| {
                let r = 8 * half + i;
                if r < n_rows {
                    F::codes32(w.as_ptr().add(r * row_bytes), c)
                } else {
                    _mm256_setzero_si256()
                }
            });
            for (j, t) in v::transpose8(r8).into_iter().enumerate() {
                _mm256_storeu_si256(data.add((8 * c + j) * 4 * NR + 32 * half).cast(), t);
            }
        }
    }
    for r in 0..NR {
        if r < n_rows {
            F::scales(w.as_ptr().add(r * row_bytes), n_sb, &mut panel.row_dw, &mut panel.row_mw);
        } else {
            panel.row_dw[..n_sb].fill(0.0);
            panel.row_mw[..n_sb].fill(0.0);
        }
        for s in 0..n_sb {
            panel.dw[s * NR + r] = panel.row_dw[s];
            panel.mw[s * NR + r] = if panel.has_min { panel.row_mw[s] } else { 0.0 };
        }
    }
}

macro_rules! unpackers {
    ($($name:ident => $fmt:ty),* $(,)?) => {$(
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(crate) unsafe fn $name(w: &[u8], row_bytes: usize, _k: usize, panel: &mut Panel) {
            debug_assert_eq!(panel.nr, NR);
            unpack_int::<$fmt>(w, row_bytes, panel)
        }
    )*};
}

unpackers! {
    unpack_q4_0 => LegacyPanel<BlockQ4_0>,
    unpack_q4_1 => LegacyPanel<BlockQ4_1>,
    unpack_q5_0 => LegacyPanel<BlockQ5_0>,
    unpack_q5_1 => LegacyPanel<BlockQ5_1>,
    unpack_q8_0 => LegacyPanel<BlockQ8_0>,
    unpack_q4_k => K4Panel<false>,
    unpack_q5_k => K4Panel<true>,
    unpack_q6_k => Q6KPanel,
}

/// 8 weights of row `r` from column `c` as f32 (zero past the matrix's rows).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn float8(ty: GgmlType, w: &[u8], row_bytes: usize, n_rows: usize, r: usize, c: usize) -> __m256i {
    if r >= n_rows {
        return _mm256_setzero_si256();
    }
    let p = w.as_ptr().add(r * row_bytes);
    match ty {
        GgmlType::F32 => _mm256_loadu_si256(p.add(4 * c).cast()),
        GgmlType::F16 => _mm256_castps_si256(_mm256_cvtph_ps(_mm_loadu_si128(p.add(2 * c).cast()))),
        _ => _mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(_mm_loadu_si128(p.add(2 * c).cast()))),
    }
}

/// Float panel `[k][16 rows]` f32: 8x8 transposes of widened rows, the last columns (a k that
/// is not a multiple of 8) by the portable builder.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn unpack_float(ty: GgmlType, w: &[u8], row_bytes: usize, panel: &mut Panel) {
    let k = panel.k;
    let n_rows = w.len() / row_bytes;
    let full = k / 8;
    if full * 8 < k {
        // The portable builder writes every column; the transposes below overwrite most.
        build_float(ty, w, row_bytes, panel);
    }
    let data = panel.f32s_mut().as_mut_ptr();
    for half in 0..2 {
        for c in 0..full {
            let r: [__m256i; 8] = std::array::from_fn(|i| float8(ty, w, row_bytes, n_rows, 8 * half + i, 8 * c));
            for (j, t) in v::transpose8(r).into_iter().enumerate() {
                _mm256_storeu_si256(data.add((8 * c + j) * NR + 8 * half).cast(), t);
            }
        }
    }
}

macro_rules! float_unpackers {
    ($($name:ident => $ty:ident),* $(,)?) => {$(
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(crate) unsafe fn $name(w: &[u8], row_bytes: usize, _k: usize, panel: &mut Panel) {
            debug_assert_eq!(panel.nr, NR);
            unpack_float(GgmlType::$ty, w, row_bytes, panel)
        }
    )*};
}

float_unpackers! {
    unpack_f32 => F32,
    unpack_f16 => F16,
    unpack_bf16 => BF16,
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

/// Independent float accumulators per output of the integer kernels (see [`sum_chains`]).
pub(crate) const CHAINS: usize = 4;

/// The final sum of an output's accumulator chains: `(c0 + c1) + (c2 + c3)`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) fn sum_chains(c: [__m256; CHAINS]) -> __m256 {
    _mm256_add_ps(_mm256_add_ps(c[0], c[1]), _mm256_add_ps(c[2], c[3]))
}

/// One tile of `T` tokens from token `t0` against the `U8` panel. `CHUNK` steps of 4 elements
/// are summed in i16 before widening (see the module docs); `SIGN` is Q8_0's signed path.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn tile_u8<const T: usize, const MIN: bool, const CHUNK: usize, const SIGN: bool>(
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
    let (dx, corr) = (act.dx.as_ptr().add(t0 * n_sb), act.corr.as_ptr().add(t0 * n_sb));
    let sx = act.sx.as_ptr().wrapping_add(t0 * n_sb);
    let ones = _mm256_set1_epi16(1);
    let flip = _mm256_set1_epi8(-128);
    let steps = sb / 4;
    // CHAINS float accumulators per output, scale block s adding into chain s % CHAINS (the
    // GEMV's order too, where independent chains hide the FMA latency).
    let mut chains = [[[_mm256_setzero_ps(); T]; 2]; CHAINS];
    for s in 0..n_sb {
        let accf = &mut chains[s % CHAINS];
        let mut acci = [[_mm256_setzero_si256(); T]; 2];
        if !SIGN {
            for t in 0..T {
                let c = _mm256_set1_epi32(*corr.add(t * n_sb + s));
                acci[0][t] = c;
                acci[1][t] = c;
            }
        }
        for k4 in (s * steps..(s + 1) * steps).step_by(CHUNK) {
            let mut a16 = [[_mm256_setzero_si256(); T]; 2];
            // Long chunks get a run-time trip count: fully unrolled, the compiler hoists the
            // weight loads of every step and spills the accumulators.
            let steps = if CHUNK >= 4 { std::hint::black_box(CHUNK) } else { CHUNK };
            for c in 0..steps {
                let p = codes.add((k4 + c) * 4 * NR);
                let mut w = [_mm256_loadu_si256(p.cast()), _mm256_loadu_si256(p.add(32).cast())];
                let mut ws = w;
                if SIGN {
                    ws = [_mm256_xor_si256(w[0], flip), _mm256_xor_si256(w[1], flip)];
                    w = [_mm256_abs_epi8(ws[0]), _mm256_abs_epi8(ws[1])];
                }
                for t in 0..T {
                    let xb = _mm256_set1_epi32(qs.add(t * k + 4 * (k4 + c)).cast::<i32>().read_unaligned());
                    for r in 0..2 {
                        let x = if SIGN { _mm256_sign_epi8(xb, ws[r]) } else { xb };
                        a16[r][t] = _mm256_add_epi16(a16[r][t], _mm256_maddubs_epi16(w[r], x));
                    }
                }
            }
            for r in 0..2 {
                for t in 0..T {
                    acci[r][t] = _mm256_add_epi32(acci[r][t], _mm256_madd_epi16(a16[r][t], ones));
                }
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
        let acc: [__m256; 2] = std::array::from_fn(|r| sum_chains(std::array::from_fn(|c| chains[c][r][t])));
        store_rows(out.add((t0 + t) * out_stride), acc, n_rows);
    }
}

/// Every token of `act` in tiles of up to [`TI`] tokens.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn gemm_tiles<const MIN: bool, const CHUNK: usize, const SIGN: bool>(
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
            4 => tile_u8::<4, MIN, CHUNK, SIGN>(panel, act, t, out, stride, n_rows),
            3 => tile_u8::<3, MIN, CHUNK, SIGN>(panel, act, t, out, stride, n_rows),
            2 => tile_u8::<2, MIN, CHUNK, SIGN>(panel, act, t, out, stride, n_rows),
            _ => tile_u8::<1, MIN, CHUNK, SIGN>(panel, act, t, out, stride, n_rows),
        }
        t += nt;
    }
}

/// The integer micro-kernel over every token (see the module docs).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn gemm_u8(panel: &Panel, act: &ActBlocks<'_>, out: *mut f32, stride: usize, n_rows: usize) {
    debug_assert_eq!(panel.nr, NR);
    debug_assert_eq!(panel.k, act.k);
    debug_assert_eq!(panel.kind, PanelKind::U8);
    let steps = act.sblock / 4;
    // Steps whose i16 sums cannot overflow: |pair| <= 2 * max_code * 128.
    let chunk = (32767 / (256 * usize::from(panel.max_code))).min(steps);
    match (panel.has_min, panel.max_code, chunk) {
        (_, 255, _) => gemm_tiles::<false, 1, true>(panel, act, out, stride, n_rows),
        (false, _, 8) => gemm_tiles::<false, 8, false>(panel, act, out, stride, n_rows),
        (true, _, 8) => gemm_tiles::<true, 8, false>(panel, act, out, stride, n_rows),
        (false, _, 4) => gemm_tiles::<false, 4, false>(panel, act, out, stride, n_rows),
        (true, _, 4) => gemm_tiles::<true, 4, false>(panel, act, out, stride, n_rows),
        (false, _, 2) => gemm_tiles::<false, 2, false>(panel, act, out, stride, n_rows),
        (true, _, 2) => gemm_tiles::<true, 2, false>(panel, act, out, stride, n_rows),
        _ => unreachable!("no format has codes above 63 but Q8_0 (max {})", panel.max_code),
    }
}
