//! NEON GEMM (prefill): integer panels of 8 rows, `[k / 4][8 rows][4 codes]`, and a
//! micro-kernel of two row registers (4 rows x 4 codes each) x 8 tokens of `sdot` against each
//! token's 4 activation bytes broadcast to every lane (`ld1r`). `sdot` multiplies signed bytes:
//! every format's unsigned codes are below 128 (so they read as the same signed values) but
//! Q8_0's, whose panel keeps its signed codes and whose sums then need no offset correction.
//! Per scale block the integer sums (plus the activation's `-offset * sum(x)`) are converted
//! and scaled by `dw[row] * dx[token]` into four float accumulator chains per output, as on
//! AVX2. Float weights use the generic float micro-kernel (`crate::simd::float_mm`).

// Register tiles are indexed [row vector][token] in fully unrolled loops: indices read best.
#![allow(clippy::needless_range_loop)]

use std::arch::aarch64::*;

use gguf_file::GgmlType;

use super::aarch64_neon::sdot;
use crate::act::ActBlocks;
use crate::formats::quant_spec;
use crate::panel::{build_float, decode_rows, Panel, PanelKind};
use crate::CHAINS;

/// Rows per panel: two registers of 4 rows (the float panels: two registers of 4 lanes).
pub(crate) const NR: usize = 8;
/// Tokens per integer tile.
const TI: usize = 8;

/// Lays the decoded rows of an integer panel (`panel.rows`, `[8][k]`) out as `[k / 4][8][4]`;
/// Q8_0's codes (decoded as `q + 128`) go back to signed.
#[target_feature(enable = "neon,dotprod")]
#[inline]
unsafe fn lay_out_codes(panel: &mut Panel, signed: bool) {
    let k = panel.k;
    let flip = if signed { 0x80u32 * 0x0101_0101 } else { 0 };
    // SAFETY: `rows` holds 8 rows of k codes (prepare sized it), the panel data 8 * k bytes.
    unsafe {
        let (rows, data) = (panel.rows.as_ptr(), panel.bytes_mut().as_mut_ptr().cast::<u32>());
        for k4 in 0..k / 4 {
            for r in 0..NR {
                let w = rows.add(r * k + 4 * k4).cast::<u32>().read_unaligned();
                *data.add(k4 * NR + r) = w ^ flip;
            }
        }
    }
}

/// `unpack_<format>` for every format of [`crate::table::formats!`].
macro_rules! unpackers {
    (; $($ty:ident $gemv:ident $name:ident),*) => {$(
        #[target_feature(enable = "neon,dotprod")]
        pub(crate) unsafe fn $name(w: &[u8], row_bytes: usize, _k: usize, panel: &mut Panel) {
            debug_assert_eq!(panel.nr, NR);
            match quant_spec(GgmlType::$ty) {
                Some(spec) => {
                    decode_rows(&spec, w, row_bytes, panel);
                    // SAFETY: the CPU has NEON + dotprod (this function's contract), and
                    // decode_rows filled every row.
                    unsafe { lay_out_codes(panel, GgmlType::$ty == GgmlType::Q8_0) };
                }
                None => build_float(GgmlType::$ty, w, row_bytes, panel),
            }
        }
    )*};
}

// One unpacker for every format of the one list.
crate::table::formats!(unpackers!());

/// One tile of `T` tokens from token `t0` against the panel.
#[target_feature(enable = "neon,dotprod")]
#[inline]
unsafe fn tile<const T: usize, const MIN: bool, const SIGNED: bool>(
    panel: &Panel,
    act: &ActBlocks<'_>,
    t0: usize,
    out: *mut f32,
    out_stride: usize,
    n_rows: usize,
) {
    let (k, sb, n_sb) = (act.k, act.sblock, act.n_sb);
    // SAFETY: this function's contract (gemm_sdot's): the panel holds k / 4 steps of 8 rows,
    // `act` T tokens from t0 with n_sb scale blocks each, `out` T rows of out_stride from t0.
    unsafe {
        let codes = panel.bytes().as_ptr().cast::<i8>();
        let (dw, mw) = (panel.dw.as_ptr(), panel.mw.as_ptr());
        let qs = act.qs.as_ptr().add(t0 * k);
        let (dx, corr) = (act.dx.as_ptr().add(t0 * n_sb), act.corr.as_ptr().add(t0 * n_sb));
        let sx = act.sx.as_ptr().wrapping_add(t0 * n_sb);
        let mut chains = [[[vdupq_n_f32(0.0); T]; 2]; CHAINS];
        for s in 0..n_sb {
            let mut acc = [[vdupq_n_s32(0); T]; 2];
            if !SIGNED {
                for t in 0..T {
                    let c = vdupq_n_s32(*corr.add(t * n_sb + s));
                    acc[0][t] = c;
                    acc[1][t] = c;
                }
            }
            for k4 in s * sb / 4..(s + 1) * sb / 4 {
                let p = codes.add(k4 * 4 * NR);
                let w = [vld1q_s8(p), vld1q_s8(p.add(16))];
                for t in 0..T {
                    let xb = vreinterpretq_s8_s32(vdupq_n_s32(qs.add(t * k + 4 * k4).cast::<i32>().read_unaligned()));
                    acc[0][t] = sdot(acc[0][t], w[0], xb);
                    acc[1][t] = sdot(acc[1][t], w[1], xb);
                }
            }
            let accf = &mut chains[s % CHAINS];
            let dw = [vld1q_f32(dw.add(s * NR)), vld1q_f32(dw.add(s * NR + 4))];
            for t in 0..T {
                let d = *dx.add(t * n_sb + s);
                for r in 0..2 {
                    accf[r][t] = vfmaq_f32(accf[r][t], vcvtq_f32_s32(acc[r][t]), vmulq_n_f32(dw[r], d));
                }
            }
            if MIN {
                let mw = [vld1q_f32(mw.add(s * NR)), vld1q_f32(mw.add(s * NR + 4))];
                for t in 0..T {
                    let m = vdupq_n_f32(*sx.add(t * n_sb + s));
                    for r in 0..2 {
                        accf[r][t] = vfmaq_f32(accf[r][t], mw[r], m);
                    }
                }
            }
        }
        for t in 0..T {
            let mut v = [0f32; NR];
            for r in 0..2 {
                let c = &chains;
                let sum = vaddq_f32(vaddq_f32(c[0][r][t], c[1][r][t]), vaddq_f32(c[2][r][t], c[3][r][t]));
                vst1q_f32(v.as_mut_ptr().add(4 * r), sum);
            }
            std::ptr::copy_nonoverlapping(v.as_ptr(), out.add((t0 + t) * out_stride), n_rows.min(NR));
        }
    }
}

#[target_feature(enable = "neon,dotprod")]
unsafe fn tiles<const MIN: bool, const SIGNED: bool>(
    panel: &Panel,
    act: &ActBlocks<'_>,
    out: *mut f32,
    stride: usize,
    n_rows: usize,
) {
    let mut t = 0;
    while t < act.n_tokens {
        let nt = (act.n_tokens - t).min(TI);
        // SAFETY: as for gemm_sdot; each tile stays within the tokens of `act`.
        unsafe {
            match nt {
                8 => tile::<8, MIN, SIGNED>(panel, act, t, out, stride, n_rows),
                7 => tile::<7, MIN, SIGNED>(panel, act, t, out, stride, n_rows),
                6 => tile::<6, MIN, SIGNED>(panel, act, t, out, stride, n_rows),
                5 => tile::<5, MIN, SIGNED>(panel, act, t, out, stride, n_rows),
                4 => tile::<4, MIN, SIGNED>(panel, act, t, out, stride, n_rows),
                3 => tile::<3, MIN, SIGNED>(panel, act, t, out, stride, n_rows),
                2 => tile::<2, MIN, SIGNED>(panel, act, t, out, stride, n_rows),
                _ => tile::<1, MIN, SIGNED>(panel, act, t, out, stride, n_rows),
            }
        }
        t += nt;
    }
}

/// The integer micro-kernel over every token (see the module docs).
#[target_feature(enable = "neon,dotprod")]
pub(crate) unsafe fn gemm_sdot(panel: &Panel, act: &ActBlocks<'_>, out: *mut f32, stride: usize, n_rows: usize) {
    debug_assert_eq!(panel.nr, NR);
    debug_assert_eq!(panel.k, act.k);
    debug_assert_eq!(panel.kind, PanelKind::U8);
    // SAFETY: this function's contract (the table's): the CPU has NEON + dotprod, the panel
    // and `act` describe the same k, `out` holds every token's row of `stride`.
    unsafe {
        match (panel.has_min, panel.max_code == 255) {
            (_, true) => tiles::<false, true>(panel, act, out, stride, n_rows),
            (true, false) => tiles::<true, false>(panel, act, out, stride, n_rows),
            (false, false) => tiles::<false, false>(panel, act, out, stride, n_rows),
        }
    }
}
