//! The K-quants: 256-element super-blocks with quantized per-sub-block scales. Q4_K, Q5_K and
//! Q6_K are weight formats; Q8_K is their activation format.
//!
//! The shared helpers below port ggml-quants.c's scale searches. They run in f32 in the C
//! source's operation order: ggml-base (where llama-quantize's quantizers live) is compiled
//! without `-march=native`, so x86-64 gcc neither fuses `a*b + c` nor reorders sums, and the
//! same f32 operations here give the same bytes (checked against llama-quantize output).

// The loops keep ggml's index arithmetic (several arrays indexed together), which makes the
// port easy to check line by line against ggml-quants.c.
#![allow(clippy::needless_range_loop)]

mod q4_k;
mod q5_k;
mod q6_k;
mod q8_k;

pub use q4_k::{BlockQ4_K, Q4_K};
pub use q5_k::{BlockQ5_K, Q5_K};
pub use q6_k::{BlockQ6_K, Q6_K};
pub use q8_k::{BlockQ8_K, Q8_K};

/// Elements per super-block (ggml-common.h `QK_K`).
pub const QK_K: usize = 256;

/// Bytes of packed 6-bit scales and mins in Q4_K / Q5_K (ggml-common.h `K_SCALE_SIZE`).
pub const K_SCALE_SIZE: usize = 12;

/// Groups whose largest magnitude is below this are all zero (ggml-quants.c `GROUP_MAX_EPS`).
const GROUP_MAX_EPS: f32 = 1e-15;

/// Rounds to the nearest integer, ties to even, by adding 1.5 * 2^23 and reading the mantissa
/// bits (ggml-quants.c `nearest_int`). Exact for |x| <= 4194303; beyond that (or for NaN) the
/// result is the same garbage ggml computes, which keeps the bytes identical even then.
#[inline]
pub(crate) fn nearest_int(fval: f32) -> i32 {
    let val = fval + 12_582_912.0;
    let i = val.to_bits() as i32;
    (i & 0x007f_ffff) - 0x0040_0000
}

/// Unpacks the 6-bit scale and min of sub-block `j` (0..8) from the 12 packed bytes of a Q4_K /
/// Q5_K block (ggml-quants.c `get_scale_min_k4`).
///
/// Layout: bytes 0..4 hold scales 0..4 in their low 6 bits, bytes 4..8 mins 0..4; bytes 8..12
/// hold the low 4 bits of scales 4..8 (low nibble) and mins 4..8 (high nibble), whose top 2 bits
/// sit in the top 2 bits of bytes 0..4 (scales) and 4..8 (mins).
#[inline]
pub fn get_scale_min_k4(j: usize, q: &[u8; K_SCALE_SIZE]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        let d = (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4);
        let m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
        (d, m)
    }
}

/// Packs eight 6-bit scales and mins into 12 bytes, the inverse of [`get_scale_min_k4`]
/// (ggml-quants.c quantize_row_q4_K_ref, the `if (j < 4)` packing loop).
#[inline]
pub(crate) fn pack_scale_min_k4(ls: &[u8; 8], lm: &[u8; 8]) -> [u8; K_SCALE_SIZE] {
    let mut s = [0u8; K_SCALE_SIZE];
    for j in 0..8 {
        if j < 4 {
            s[j] = ls[j];
            s[j + 4] = lm[j];
        } else {
            s[j + 4] = (ls[j] & 0x0f) | ((lm[j] & 0x0f) << 4);
            s[j - 4] |= (ls[j] >> 4) << 6;
            s[j] |= (lm[j] >> 4) << 6;
        }
    }
    s
}

/// Searches a signed scale for `x` with codes `L[i] = l + nmax`, `l` in `-nmax..nmax`, weighting
/// each element by `x^2` (ggml-quants.c `make_qx_quants` with `rmse_type = 1` and no importance
/// weights, the only way the reference quantizers call it). Returns the scale; `l_out` gets the
/// codes.
pub(crate) fn make_qx_quants_rmse1(nmax: i32, x: &[f32], l_out: &mut [i8]) -> f32 {
    // ggml-quants.c make_qx_quants
    let mut max = 0.0f32;
    let mut amax = 0.0f32;
    for &v in x {
        let ax = v.abs();
        if ax > amax {
            amax = ax;
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        l_out.fill(0);
        return 0.0;
    }
    let clamp = |l: i32| (-nmax).max((nmax - 1).min(l));
    let mut iscale = -(nmax as f32) / max;
    let mut sumlx = 0.0f32;
    let mut suml2 = 0.0f32;
    for (li, &v) in l_out.iter_mut().zip(x) {
        let l = clamp(nearest_int(iscale * v));
        *li = (l + nmax) as i8;
        let w = v * v;
        sumlx += w * v * l as f32;
        suml2 += w * l as f32 * l as f32;
    }
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in -9i32..=9 {
        if is == 0 {
            continue;
        }
        iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        sumlx = 0.0;
        suml2 = 0.0;
        for &v in x {
            let l = clamp(nearest_int(iscale * v));
            let w = v * v;
            sumlx += w * v * l as f32;
            suml2 += w * l as f32 * l as f32;
        }
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for (li, &v) in l_out.iter_mut().zip(x) {
                let l = nearest_int(iscale * v);
                *li = (nmax + clamp(l)) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// Searches a scale and a non-positive offset for `x` with codes `0..=nmax`, minimizing the
/// weighted squared error over `nstep + 1` trial scales (ggml-quants.c `make_qkx2_quants` with
/// `use_mad = false`, as the reference Q4_K / Q5_K quantizers call it). Returns
/// `(scale, the_min)` where `the_min = -offset >= 0`; `l_out` gets the codes.
#[allow(clippy::too_many_arguments)]
pub(crate) fn make_qkx2_quants(
    nmax: i32,
    x: &[f32],
    weights: &[f32],
    l_out: &mut [u8],
    laux: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
) -> (f32, f32) {
    // ggml-quants.c make_qkx2_quants
    let n = x.len();
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l_out[..n].fill(0);
        return (0.0, -min);
    }
    let nmax_f = nmax as f32;
    let mut iscale = nmax_f / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for i in 0..n {
        let l = nearest_int(iscale * (x[i] - min));
        let l = 0.max(nmax.min(l));
        l_out[i] = l as u8;
        let diff = scale * l as f32 + min - x[i];
        let diff = diff * diff;
        best_error += weights[i] * diff;
    }
    if nstep < 1 {
        return (scale, -min);
    }
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmax_f) / (max - min);
        let mut sum_l = 0.0f32;
        let mut sum_l2 = 0.0f32;
        let mut sum_xl = 0.0f32;
        for i in 0..n {
            let l = nearest_int(iscale * (x[i] - min));
            let l = 0.max(nmax.min(l));
            laux[i] = l as u8;
            let w = weights[i];
            let lf = l as f32;
            sum_l += w * lf;
            sum_l2 += w * lf * lf;
            sum_xl += w * lf * x[i];
        }
        let d = sum_w * sum_l2 - sum_l * sum_l;
        if d > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / d;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / d;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0.0f32;
            for i in 0..n {
                let diff = this_scale * f32::from(laux[i]) + this_min - x[i];
                let diff = diff * diff;
                cur_error += weights[i] * diff;
            }
            if cur_error < best_error {
                l_out[..n].copy_from_slice(&laux[..n]);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// The Q4_K / Q5_K super-block quantizer shared by both (ggml-quants.c quantize_row_q4_K_ref and
/// quantize_row_q5_K_ref differ only in `nmax` and the search parameters): returns the f16 `d`,
/// `dmin`, the packed scales, and the codes `0..=nmax` of all 256 elements.
pub(crate) fn quantize_qkx_super_block(
    x: &[f32],
    nmax: i32,
    rmin: f32,
    rdelta: f32,
    nstep: i32,
) -> (half::f16, half::f16, [u8; K_SCALE_SIZE], [u8; QK_K]) {
    use crate::float::{fp16_to_fp32, fp32_to_fp16};

    let mut l = [0u8; QK_K];
    let mut laux = [0u8; 32];
    let mut weights = [0.0f32; 32];
    let mut mins = [0.0f32; QK_K / 32];
    let mut scales = [0.0f32; QK_K / 32];

    let mut max_scale = 0.0f32; // as the min is subtracted, scales are never negative
    let mut max_min = 0.0f32;
    for j in 0..QK_K / 32 {
        let xs = &x[32 * j..32 * j + 32];
        let mut sum_x2 = 0.0f32;
        for &v in xs {
            sum_x2 += v * v;
        }
        let av_x = (sum_x2 / 32.0).sqrt();
        for (w, &v) in weights.iter_mut().zip(xs) {
            *w = av_x + v.abs();
        }
        let (scale, the_min) =
            make_qkx2_quants(nmax, xs, &weights, &mut l[32 * j..32 * j + 32], &mut laux, rmin, rdelta, nstep);
        scales[j] = scale;
        mins[j] = the_min;
        if scale > max_scale {
            max_scale = scale;
        }
        if the_min > max_min {
            max_min = the_min;
        }
    }

    let inv_scale = if max_scale > 0.0 { 63.0 / max_scale } else { 0.0 };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut ls = [0u8; 8];
    let mut lm = [0u8; 8];
    for j in 0..QK_K / 32 {
        // `uint8_t ls = nearest_int(...)`: the int is truncated to a byte before MIN(63, ls).
        ls[j] = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        lm[j] = (nearest_int(inv_min * mins[j]) as u8).min(63);
    }
    let packed = pack_scale_min_k4(&ls, &lm);
    let d = fp32_to_fp16(max_scale / 63.0);
    let dmin = fp32_to_fp16(max_min / 63.0);

    // Requantize every element against the quantized scales; sub-blocks whose scale rounded to
    // zero keep the codes of the search (ggml's `if (!d) continue;`).
    for j in 0..QK_K / 32 {
        let (sc, m) = get_scale_min_k4(j, &packed);
        let dj = fp16_to_fp32(d) * f32::from(sc);
        if dj == 0.0 {
            continue;
        }
        let dm = fp16_to_fp32(dmin) * f32::from(m);
        for ii in 0..32 {
            let q = nearest_int((x[32 * j + ii] + dm) / dj);
            l[32 * j + ii] = 0.max(nmax.min(q)) as u8;
        }
    }
    (d, dmin, packed, l)
}

#[cfg(test)]
pub(crate) mod test_util {
    use crate::BlockFormat;
    use bytemuck::Zeroable;

    pub fn quant<F: BlockFormat>(x: &[f32]) -> Vec<F::Block> {
        let mut q = vec![F::Block::zeroed(); x.len() / F::BLOCK_SIZE];
        F::quantize_row(x, &mut q);
        q
    }

    pub fn dequant<F: BlockFormat>(q: &[F::Block]) -> Vec<f32> {
        let mut y = vec![0.0; q.len() * F::BLOCK_SIZE];
        F::dequantize_row(q, &mut y);
        y
    }

    /// Round-trip bound of Q4_K (`nmax` 15) and Q5_K (`nmax` 31) for one super-block `x`.
    ///
    /// Each 32-element sub-block spans R_j = max(x) - min(min(x), 0) and is shifted by an
    /// offset up to M_j = -min(min(x), 0); R and M are the largest over the sub-blocks. The
    /// search picks a step s_j ~ R_j/nmax and the offset. Quantizing the steps to 6 bits against
    /// the largest (~R/nmax) moves each by at most R/(126 nmax), which the top code multiplies
    /// by nmax: R/126. Quantizing the offsets to 6 bits against the largest moves each by at
    /// most M/126, and f16 storage of the two super-scales adds relative 2^-11 to both. An
    /// element is then within half a step of a code: about R/(2 nmax) + R/126 + M/126. The
    /// bound asserted is a whole step R/nmax (covering the search's least-squares slack and
    /// the clamp at the top code) + R/63 + M/63, plus 2^-14 absolute for f16 subnormal scales.
    pub fn kquant_error_bound(x: &[f32], nmax: i32) -> f32 {
        let (mut r, mut m) = (0.0f32, 0.0f32);
        for c in x.chunks(32) {
            let hi = c.iter().fold(f32::MIN, |a, &v| a.max(v));
            let lo = c.iter().fold(0.0f32, |a, &v| a.min(v));
            r = r.max(hi - lo);
            m = m.max(-lo);
        }
        r / nmax as f32 + r / 63.0 + m / 63.0 + 2f32.powi(-14)
    }

    /// Super-blocks in the shapes that break quantizers.
    pub fn tricky_superblocks() -> Vec<Vec<f32>> {
        let wave = |i: usize| ((i as f32 * 0.731).sin() + (i as f32 * 0.117).cos()) * 0.5;
        vec![
            vec![0.0; 256],
            vec![0.25; 256],
            vec![-3.0; 256],
            (0..256).map(|i| wave(i) * 1e-30).collect(),
            (0..256).map(|i| wave(i) * 1e3).collect(),
            (0..256).map(|i| if i % 37 == 3 { 40.0 } else { wave(i) }).collect(),
            (0..256).map(|i| wave(i).abs() + 0.01).collect(),
            (0..256).map(|i| -wave(i).abs() - 0.5).collect(),
            (0..256).map(|i| if i < 32 { wave(i) * 100.0 } else { wave(i) * 0.01 }).collect(),
            (0..256).map(|i| if i / 16 % 2 == 0 { 0.0 } else { wave(i) }).collect(),
            (0..256).map(|i| i as f32 - 128.0).collect(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_int_rounds_ties_to_even() {
        let cases =
            [(0.5f32, 0), (1.5, 2), (2.5, 2), (-0.5, 0), (-1.5, -2), (3.49, 3), (-3.51, -4), (4194303.0, 4194303)];
        for (x, want) in cases {
            assert_eq!(nearest_int(x), want, "{x}");
        }
        assert_eq!(nearest_int(-4194303.0), -4194303);
    }

    #[test]
    fn scale_min_packing_round_trips() {
        let ls = [0u8, 1, 17, 63, 32, 45, 5, 63];
        let lm = [63u8, 0, 9, 31, 16, 2, 60, 1];
        let packed = pack_scale_min_k4(&ls, &lm);
        for j in 0..8 {
            assert_eq!(get_scale_min_k4(j, &packed), (ls[j], lm[j]), "sub-block {j}");
        }
    }

    #[test]
    fn make_qkx2_quants_recovers_an_exact_grid() {
        // x on the grid 0.5*l - 1 for l in 0..=15: a scale of 0.5 and min of 1 reproduce it.
        let x: Vec<f32> = (0..32).map(|i| 0.5 * (i % 16) as f32 - 1.0).collect();
        let w: Vec<f32> = x.iter().map(|v| 1.0 + v.abs()).collect();
        let (mut l, mut aux) = ([0u8; 32], [0u8; 32]);
        let (scale, min) = make_qkx2_quants(15, &x, &w, &mut l, &mut aux, -1.0, 0.1, 20);
        assert!((scale - 0.5).abs() < 1e-6 && (min - 1.0).abs() < 1e-6, "{scale} {min}");
        assert!(l.iter().enumerate().all(|(i, &q)| usize::from(q) == i % 16));
    }

    #[test]
    fn make_qx_quants_all_zero_and_grid() {
        let mut l = [7i8; 16];
        assert_eq!(make_qx_quants_rmse1(32, &[0.0; 16], &mut l), 0.0);
        assert_eq!(l, [0; 16]);
        let x: Vec<f32> = (0..16).map(|i| (i as f32 - 8.0) * 0.25).collect();
        let scale = make_qx_quants_rmse1(32, &x, &mut l);
        for (v, &q) in x.iter().zip(&l) {
            assert!((scale * f32::from(q - 32) - v).abs() <= scale.abs() * 0.5 + 1e-6, "{v} {q} {scale}");
        }
    }
}
