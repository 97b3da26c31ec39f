//! AVX2 GEMM kernels: panel builders and micro-kernels.
//!
//! Integer micro-kernel: 16 weight rows (two registers of 8 rows x 4 unsigned codes, the `U8`
//! panel) x up to 6 tokens. Per step of 4 elements each token's 4 activation bytes are
//! broadcast and multiplied with `vpmaddubsw` (unsigned codes x signed activations, adjacent
//! pairs summed to i16) against both row registers. The i16 sums run on for as many steps as
//! the format's largest code allows without overflow (8 steps = 32 elements for 4-bit codes,
//! 4 for 5-bit, 2 for 6-bit), so that one `vpmaddwd` widens 8 to 32 products to i32: integer
//! multiplies run on two pipes of Zen 3 (measured: two `vpmaddubsw` or two `vpmaddwd` a cycle,
//! against four `vpaddw`), so nearly one multiply instruction per 32 multiply-adds is twice the
//! rate of `vpmaddubsw` + `vpmaddwd` per step. Q8_0's signed codes
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

use super::x86_gemv as v;
use crate::act::ActBlocks;
use crate::formats::k_layout::*;
use crate::formats::LegacyBlock;
use crate::panel::{build_float, Panel, PanelKind};
use crate::CHAINS;

/// Rows per panel.
pub(crate) const NR: usize = 16;
/// Tokens per integer tile.
const TI: usize = 4;

/// A weight format as the panel builder reads it: 32 codes at a time in element order, and
/// each row's scales (and minimums) per scale block.
trait PanelFmt {
    /// The 32 codes of elements `32c..32c + 32` of the row at `row`.
    unsafe fn codes32(row: *const u8, c: usize) -> __m256i;
    /// Elements `32c..32c + 32` of 8 rows in panel order: register `j` holds codes
    /// `4j..4j + 4` of every row (rows on dwords).
    #[inline(always)]
    unsafe fn steps8(rows: &[*const u8; 8], c: usize) -> [__m256i; 8] {
        // SAFETY: the caller's contract (AVX2; valid rows).
        unsafe { v::transpose8(std::array::from_fn(|i| Self::codes32(rows[i], c))) }
    }

    /// The scales (and minimums) of 8 rows, scale block `s` of all 8 at `dw[s * NR]` (and
    /// `mw[s * NR]`); `tmp_dw` and `tmp_mw` hold `8 * n_sb` values for formats that need them.
    unsafe fn scales8(
        rows: &[*const u8; 8],
        n_sb: usize,
        dw: *mut f32,
        mw: *mut f32,
        tmp_dw: &mut [f32],
        tmp_mw: &mut [f32],
    );
}

/// A K-quant's scales one row at a time.
trait RowScales {
    /// The row's `n_sb` scales into `dw` and minimums into `mw` (formats with one).
    unsafe fn scales(row: *const u8, n_sb: usize, dw: &mut [f32], mw: &mut [f32]);
}

/// [`PanelFmt::scales8`] from each row's own [`RowScales::scales`], then 8x8 transposes
/// (`n_sb` a multiple of 8, as for K-quants).
#[inline(always)]
unsafe fn scales8_by_rows<F: RowScales>(
    rows: &[*const u8; 8],
    n_sb: usize,
    dw: *mut f32,
    mw: *mut f32,
    tmp_dw: &mut [f32],
    tmp_mw: &mut [f32],
) {
    // SAFETY: the caller's contract (AVX2; valid rows; dw and mw hold n_sb * NR values).
    unsafe {
        debug_assert!(n_sb.is_multiple_of(8));
        for (i, &row) in rows.iter().enumerate() {
            F::scales(row, n_sb, &mut tmp_dw[i * n_sb..(i + 1) * n_sb], &mut tmp_mw[i * n_sb..(i + 1) * n_sb]);
        }
        for (tmp, dst) in [(&*tmp_dw, dw), (&*tmp_mw, mw)] {
            for s0 in (0..n_sb).step_by(8) {
                let t = v::transpose8(std::array::from_fn(|i| v::ld(tmp.as_ptr().add(i * n_sb + s0).cast())));
                for (j, r) in t.into_iter().enumerate() {
                    _mm256_storeu_si256(dst.add((s0 + j) * NR).cast(), r);
                }
            }
        }
    }
}

/// `f16` fields of 8 rows (at byte `at` of each) as 8 f32 lanes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn f16x8(rows: &[*const u8; 8], at: usize) -> __m256 {
    // SAFETY: within this function's contract: the caller's rows are valid at `at`.
    unsafe {
        let h = |i: usize| v::rd16(rows[i].add(at)) as i16;
        _mm256_cvtph_ps(_mm_setr_epi16(h(0), h(1), h(2), h(3), h(4), h(5), h(6), h(7)))
    }
}

/// Legacy 32-element blocks (their byte layout from [`LegacyBlock`]); Q8_0's signed codes are
/// flipped to `q + 128`.
struct LegacyPanel<B>(PhantomData<B>);

impl<B: LegacyBlock> PanelFmt for LegacyPanel<B> {
    #[inline(always)]
    unsafe fn codes32(row: *const u8, c: usize) -> __m256i {
        // SAFETY: within this function's contract: the CPU has the target features it (or its
        // caller) names, and the caller's pointers and lengths are valid for what it touches.
        unsafe {
            let b = row.add(c * B::BYTES);
            if B::SIGNED {
                _mm256_xor_si256(v::ld(b.add(B::QS)), _mm256_set1_epi8(-128))
            } else {
                v::legacy_codes::<B>(b)
            }
        }
    }

    /// 4-bit codes: the 16 code bytes of 8 rows transposed as dwords (rows 0-3 and 4-7 in the
    /// two 128-bit lanes), then split into nibbles: byte `4j + b` of a row holds elements
    /// `4j + b` (low nibble) and `16 + 4j + b` (high), so the low nibbles are steps 0-3 and the
    /// high ones steps 4-7. Other formats decode each row and transpose.
    #[inline(always)]
    unsafe fn steps8(rows: &[*const u8; 8], c: usize) -> [__m256i; 8] {
        // SAFETY: the caller's contract (AVX2; valid rows).
        unsafe {
            if B::SIGNED || B::QH.is_some() {
                return v::transpose8(std::array::from_fn(|i| Self::codes32(rows[i], c)));
            }
            let q = |i: usize| _mm_loadu_si128(rows[i].add(c * B::BYTES + B::QS).cast());
            // Register i: row i (low lane) and row i + 4 (high lane).
            let p: [__m256i; 4] =
                std::array::from_fn(|i| _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(q(i)), q(i + 4)));
            let (a01, b01) = (_mm256_unpacklo_epi32(p[0], p[1]), _mm256_unpackhi_epi32(p[0], p[1]));
            let (a23, b23) = (_mm256_unpacklo_epi32(p[2], p[3]), _mm256_unpackhi_epi32(p[2], p[3]));
            // Dword j of rows (0, 1, 2, 3 | 4, 5, 6, 7).
            let d = [
                _mm256_unpacklo_epi64(a01, a23),
                _mm256_unpackhi_epi64(a01, a23),
                _mm256_unpacklo_epi64(b01, b23),
                _mm256_unpackhi_epi64(b01, b23),
            ];
            let m = _mm256_set1_epi8(0x0f);
            std::array::from_fn(|j| {
                if j < 4 {
                    _mm256_and_si256(d[j], m)
                } else {
                    _mm256_and_si256(_mm256_srli_epi16::<4>(d[j - 4]), m)
                }
            })
        }
    }

    /// One f16 scale (and minimum) per block: 8 rows gathered into one conversion.
    #[inline(always)]
    unsafe fn scales8(rows: &[*const u8; 8], n_sb: usize, dw: *mut f32, mw: *mut f32, _: &mut [f32], _: &mut [f32]) {
        // SAFETY: the caller's contract (AVX2; valid rows; dw and mw hold n_sb * NR values).
        unsafe {
            for s in 0..n_sb {
                _mm256_storeu_ps(dw.add(s * NR), f16x8(rows, s * B::BYTES + B::D));
                if let Some(m) = B::M {
                    _mm256_storeu_ps(mw.add(s * NR), f16x8(rows, s * B::BYTES + m));
                }
            }
        }
    }
}

/// Q4_K (`FIVE = false`) and Q5_K.
struct K4Panel<const FIVE: bool>;

impl<const FIVE: bool> PanelFmt for K4Panel<FIVE> {
    #[inline(always)]
    unsafe fn codes32(row: *const u8, c: usize) -> __m256i {
        // SAFETY: within this function's contract: the CPU has the target features it (or its
        // caller) names, and the caller's pointers and lengths are valid for what it touches.
        unsafe {
            let bp = row.add(c / 8 * k4_bytes(FIVE));
            let (lo, hi) = v::k4_codes::<FIVE>(bp, c % 8 / 2);
            if c.is_multiple_of(2) {
                lo
            } else {
                hi
            }
        }
    }

    #[inline(always)]
    unsafe fn scales8(
        rows: &[*const u8; 8],
        n_sb: usize,
        dw: *mut f32,
        mw: *mut f32,
        tmp_dw: &mut [f32],
        tmp_mw: &mut [f32],
    ) {
        // SAFETY: the caller's contract, which scales8_by_rows shares.
        unsafe { scales8_by_rows::<Self>(rows, n_sb, dw, mw, tmp_dw, tmp_mw) }
    }
}

impl<const FIVE: bool> RowScales for K4Panel<FIVE> {
    #[inline(always)]
    unsafe fn scales(row: *const u8, n_sb: usize, dw: &mut [f32], mw: &mut [f32]) {
        // SAFETY: within this function's contract: the CPU has the target features it (or its
        // caller) names, and the caller's pointers and lengths are valid for what it touches.
        unsafe {
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
}

/// Q6_K.
struct Q6KPanel;

impl PanelFmt for Q6KPanel {
    #[inline(always)]
    unsafe fn codes32(row: *const u8, c: usize) -> __m256i {
        // SAFETY: within this function's contract: the CPU has the target features it (or its
        // caller) names, and the caller's pointers and lengths are valid for what it touches.
        unsafe { v::q6k_codes(row.add(c / 8 * Q6K_BYTES), c % 8 / 4, c % 4) }
    }

    #[inline(always)]
    unsafe fn scales8(
        rows: &[*const u8; 8],
        n_sb: usize,
        dw: *mut f32,
        mw: *mut f32,
        tmp_dw: &mut [f32],
        tmp_mw: &mut [f32],
    ) {
        // SAFETY: the caller's contract, which scales8_by_rows shares.
        unsafe { scales8_by_rows::<Self>(rows, n_sb, dw, mw, tmp_dw, tmp_mw) }
    }
}

impl RowScales for Q6KPanel {
    #[inline(always)]
    unsafe fn scales(row: *const u8, n_sb: usize, dw: &mut [f32], _mw: &mut [f32]) {
        // SAFETY: within this function's contract: the CPU has the target features it (or its
        // caller) names, and the caller's pointers and lengths are valid for what it touches.
        unsafe {
            for b in 0..n_sb / 16 {
                let bp = row.add(b * Q6K_BYTES);
                let d = _mm256_set1_ps(v::f16_to_f32(v::rd16(bp.add(Q6K_D))));
                for h in 0..2 {
                    let sc =
                        _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(bp.add(Q6K_SCALES + 8 * h).cast())));
                    _mm256_storeu_ps(dw.as_mut_ptr().add(16 * b + 8 * h), _mm256_mul_ps(d, sc));
                }
            }
        }
    }
}

/// Builds a `U8` panel, 8 rows at a time: `[k / 4][16 rows][4 codes]` codes and `[n_sb][16
/// rows]` scales. Rows past the matrix repeat its last row (their results are never stored).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn unpack_int<F: PanelFmt>(w: &[u8], row_bytes: usize, panel: &mut Panel) {
    // SAFETY: within this function's contract: the CPU has the target features it (or its
    // caller) names, and the caller's pointers and lengths are valid for what it touches.
    unsafe {
        let (k, n_sb) = (panel.k, panel.n_sb);
        debug_assert_eq!(k % 32, 0);
        let n_rows = w.len() / row_bytes;
        debug_assert!(n_rows >= 1);
        let data = panel.bytes_mut().as_mut_ptr();
        let (dw, mw) = (panel.dw.as_mut_ptr(), panel.mw.as_mut_ptr());
        // The next panel's rows (the same thread's next task, mostly) stream in while this one
        // is built: read here 8 rows at a time, block by block, the rows would come from memory
        // as scattered misses. Prefetches never fault, past the matrix's end too.
        let next = w.as_ptr().wrapping_add(w.len());
        for off in (0..w.len()).step_by(64) {
            _mm_prefetch::<_MM_HINT_T0>(next.wrapping_add(off).cast());
        }
        for half in 0..2 {
            let rows: [*const u8; 8] =
                std::array::from_fn(|i| w.as_ptr().add((8 * half + i).min(n_rows - 1) * row_bytes));
            for c in 0..k / 32 {
                for (j, t) in F::steps8(&rows, c).into_iter().enumerate() {
                    _mm256_storeu_si256(data.add((8 * c + j) * 4 * NR + 32 * half).cast(), t);
                }
            }
            F::scales8(&rows, n_sb, dw.add(8 * half), mw.add(8 * half), &mut panel.row_dw, &mut panel.row_mw);
        }
    }
}

macro_rules! unpackers {
    ($($name:ident => $fmt:ty),* $(,)?) => {$(
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(crate) unsafe fn $name(w: &[u8], row_bytes: usize, _k: usize, panel: &mut Panel) {
            debug_assert_eq!(panel.nr, NR);
            // SAFETY: this function's contract (the table's): the CPU has AVX2, whole rows.
            unsafe { unpack_int::<$fmt>(w, row_bytes, panel) }
        }
    )*};
}

/// Q4_0 interleaved by 8 rows: the panel's rows de-interleaved, then built as Q4_0.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn unpack_q4_0_8_8(w: &[u8], row_bytes: usize, _k: usize, panel: &mut Panel) {
    debug_assert_eq!(panel.nr, NR);
    let q4 = panel.take_q4_0_rows(w);
    // SAFETY: this function's contract (the table's): the CPU has AVX2; `q4` holds the same
    // whole rows as Q4_0.
    unsafe { unpack_int::<LegacyPanel<BlockQ4_0>>(&q4[..w.len()], row_bytes, panel) };
    panel.put_back_q4_0(q4);
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
    // SAFETY: within this function's contract: the CPU has the target features it (or its
    // caller) names, and the caller's pointers and lengths are valid for what it touches.
    unsafe {
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
}

/// Float panel `[k][16 rows]` f32: 8x8 transposes of widened rows, the last columns (a k that
/// is not a multiple of 8) by the portable builder.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn unpack_float(ty: GgmlType, w: &[u8], row_bytes: usize, panel: &mut Panel) {
    // SAFETY: within this function's contract: the CPU has the target features it (or its
    // caller) names, and the caller's pointers and lengths are valid for what it touches.
    unsafe {
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
}

macro_rules! float_unpackers {
    ($($name:ident => $ty:ident),* $(,)?) => {$(
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(crate) unsafe fn $name(w: &[u8], row_bytes: usize, _k: usize, panel: &mut Panel) {
            debug_assert_eq!(panel.nr, NR);
            // SAFETY: this function's contract (the table's): the CPU has AVX2, whole rows.
            unsafe { unpack_float(GgmlType::$ty, w, row_bytes, panel) }
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
    // SAFETY: within this function's contract: the CPU has the target features it (or its
    // caller) names, and the caller's pointers and lengths are valid for what it touches.
    unsafe {
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
}

/// The exact integer sums `isum_s + corr_s` (`crate::order`) of one scale block for the 16
/// rows of a panel and `T` tokens: the instruction set's byte dot product.
trait BlockSums {
    /// Scale block `s` (panel steps `s * steps..`, 4 elements each) against tokens whose codes
    /// start at `qs` (`k` apart) and whose corrections start at `corr` (`n_sb` apart).
    unsafe fn sums<const T: usize>(
        codes: *const u8,
        qs: *const i8,
        k: usize,
        corr: *const i32,
        n_sb: usize,
        s: usize,
        steps: usize,
    ) -> [[__m256i; T]; 2];
}

/// Integer sums that start at each token's correction of scale block `s` (`corr` `n_sb` apart).
#[inline(always)]
unsafe fn corr_start<const T: usize>(corr: *const i32, n_sb: usize, s: usize) -> [[__m256i; T]; 2] {
    // SAFETY: the caller's contract: AVX2, `corr` holds T tokens' corrections of n_sb blocks.
    let c: [__m256i; T] = std::array::from_fn(|t| unsafe { _mm256_set1_epi32(*corr.add(t * n_sb + s)) });
    [c, c]
}

/// AVX2: `vpmaddubsw` products summed in i16 for `CHUNK` steps, widened once by `vpmaddwd`;
/// Q8_0 (`SIGN`) by ggml's sign trick, whose sums need no correction.
struct Maddubs<const CHUNK: usize, const SIGN: bool>;

impl<const CHUNK: usize, const SIGN: bool> BlockSums for Maddubs<CHUNK, SIGN> {
    #[inline(always)]
    unsafe fn sums<const T: usize>(
        codes: *const u8,
        qs: *const i8,
        k: usize,
        corr: *const i32,
        n_sb: usize,
        s: usize,
        steps: usize,
    ) -> [[__m256i; T]; 2] {
        // SAFETY: the caller's contract: AVX2, and a panel and activations of these sizes.
        unsafe {
            let ones = _mm256_set1_epi16(1);
            let flip = _mm256_set1_epi8(-128);
            let mut acci = if SIGN { [[_mm256_setzero_si256(); T]; 2] } else { corr_start::<T>(corr, n_sb, s) };
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
            acci
        }
    }
}

/// AVX-VNNI: `vpdpbusd` adds 4 products per i32 lane straight into the sums, which start at the
/// correction; every format, Q8_0 included (its panel codes are `q + 128`, its correction
/// `-128 * sum(x)`).
struct Dpbusd;

impl BlockSums for Dpbusd {
    #[inline(always)]
    unsafe fn sums<const T: usize>(
        codes: *const u8,
        qs: *const i8,
        k: usize,
        corr: *const i32,
        n_sb: usize,
        s: usize,
        steps: usize,
    ) -> [[__m256i; T]; 2] {
        // SAFETY: the caller's contract: AVX2 and AVX-VNNI, and a panel and activations of these
        // sizes.
        unsafe {
            let mut acci = corr_start::<T>(corr, n_sb, s);
            for k4 in s * steps..(s + 1) * steps {
                let p = codes.add(k4 * 4 * NR);
                let w = [_mm256_loadu_si256(p.cast()), _mm256_loadu_si256(p.add(32).cast())];
                for t in 0..T {
                    let xb = _mm256_set1_epi32(qs.add(t * k + 4 * k4).cast::<i32>().read_unaligned());
                    for r in 0..2 {
                        acci[r][t] = _mm256_dpbusd_avx_epi32(acci[r][t], w[r], xb);
                    }
                }
            }
            acci
        }
    }
}

/// One tile of `T` tokens from token `t0` against the `U8` panel: integer sums per scale block
/// by `I`, then the float order of `crate::order`.
#[inline(always)]
unsafe fn tile_u8<const T: usize, const MIN: bool, I: BlockSums>(
    panel: &Panel,
    act: &ActBlocks<'_>,
    t0: usize,
    out: *mut f32,
    out_stride: usize,
    n_rows: usize,
) {
    // SAFETY: within this function's contract: the CPU has the target features its caller
    // names, and the caller's pointers and lengths are valid for what it touches.
    unsafe {
        let (k, sb, n_sb) = (act.k, act.sblock, act.n_sb);
        let codes = panel.bytes().as_ptr();
        let (dw, mw) = (panel.dw.as_ptr(), panel.mw.as_ptr());
        let qs = act.qs.as_ptr().add(t0 * k);
        let (dx, corr) = (act.dx.as_ptr().add(t0 * n_sb), act.corr.as_ptr().add(t0 * n_sb));
        let sx = act.sx.as_ptr().wrapping_add(t0 * n_sb);
        // CHAINS float accumulators per output, scale block s adding into chain s % CHAINS (the
        // GEMV's order too, where independent chains hide the FMA latency).
        let mut chains = [[[_mm256_setzero_ps(); T]; 2]; CHAINS];
        for s in 0..n_sb {
            let accf = &mut chains[s % CHAINS];
            let acci = I::sums::<T>(codes, qs, k, corr, n_sb, s, sb / 4);
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
            let acc: [__m256; 2] = std::array::from_fn(|r| v::sum_chains(std::array::from_fn(|c| chains[c][r][t])));
            store_rows(out.add((t0 + t) * out_stride), acc, n_rows);
        }
    }
}

/// Every token of `act` in tiles of up to [`TI`] tokens.
#[inline(always)]
unsafe fn gemm_tiles<const MIN: bool, I: BlockSums>(
    panel: &Panel,
    act: &ActBlocks<'_>,
    out: *mut f32,
    stride: usize,
    n_rows: usize,
) {
    // SAFETY: within this function's contract: the CPU has the target features its caller
    // names, and the caller's pointers and lengths are valid for what it touches.
    unsafe {
        let mut t = 0;
        while t < act.n_tokens {
            let nt = (act.n_tokens - t).min(TI);
            match nt {
                4 => tile_u8::<4, MIN, I>(panel, act, t, out, stride, n_rows),
                3 => tile_u8::<3, MIN, I>(panel, act, t, out, stride, n_rows),
                2 => tile_u8::<2, MIN, I>(panel, act, t, out, stride, n_rows),
                _ => tile_u8::<1, MIN, I>(panel, act, t, out, stride, n_rows),
            }
            t += nt;
        }
    }
}

/// The AVX-VNNI integer micro-kernel over every token: [`gemm_u8`]'s tiles and float order with
/// `vpdpbusd` sums (the same integers, so the same bits).
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
pub(crate) unsafe fn gemm_u8_vnni(panel: &Panel, act: &ActBlocks<'_>, out: *mut f32, stride: usize, n_rows: usize) {
    // SAFETY: within this function's contract: the CPU has the target features it (or its
    // caller) names, and the caller's pointers and lengths are valid for what it touches.
    unsafe {
        debug_assert_eq!((panel.nr, panel.k, panel.kind), (NR, act.k, PanelKind::U8));
        if panel.has_min {
            gemm_tiles::<true, Dpbusd>(panel, act, out, stride, n_rows)
        } else {
            gemm_tiles::<false, Dpbusd>(panel, act, out, stride, n_rows)
        }
    }
}

/// The integer micro-kernel over every token (see the module docs).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn gemm_u8(panel: &Panel, act: &ActBlocks<'_>, out: *mut f32, stride: usize, n_rows: usize) {
    // SAFETY: within this function's contract: the CPU has the target features it (or its
    // caller) names, and the caller's pointers and lengths are valid for what it touches.
    unsafe {
        debug_assert_eq!(panel.nr, NR);
        debug_assert_eq!(panel.k, act.k);
        debug_assert_eq!(panel.kind, PanelKind::U8);
        let steps = act.sblock / 4;
        // Steps whose i16 sums cannot overflow: |pair| <= 2 * max_code * 128.
        let chunk = (32767 / (256 * usize::from(panel.max_code))).min(steps);
        match (panel.has_min, panel.max_code, chunk) {
            (_, 255, _) => gemm_tiles::<false, Maddubs<1, true>>(panel, act, out, stride, n_rows),
            (false, _, 8) => gemm_tiles::<false, Maddubs<8, false>>(panel, act, out, stride, n_rows),
            (true, _, 8) => gemm_tiles::<true, Maddubs<8, false>>(panel, act, out, stride, n_rows),
            (false, _, 4) => gemm_tiles::<false, Maddubs<4, false>>(panel, act, out, stride, n_rows),
            (true, _, 4) => gemm_tiles::<true, Maddubs<4, false>>(panel, act, out, stride, n_rows),
            (false, _, 2) => gemm_tiles::<false, Maddubs<2, false>>(panel, act, out, stride, n_rows),
            (true, _, 2) => gemm_tiles::<true, Maddubs<2, false>>(panel, act, out, stride, n_rows),
            _ => unreachable!("no format has codes above 63 but Q8_0 (max {})", panel.max_code),
        }
    }
}
