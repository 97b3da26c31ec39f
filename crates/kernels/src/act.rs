//! Activations quantized once per matmul, and the two orders the SIMD kernels read them in.
//!
//! A row `x` is first quantized to ggml's activation blocks (Q8_0, Q8_1 or Q8_K, bit-exact with
//! `quill_quant`), then rearranged without changing any value:
//!
//! * **Lanes** (GEMV): per group of [`Lanes::group`] elements, the int8 codes in one or two
//!   64-byte registers in the order the weight format unpacks to, then four 64-byte vectors of
//!   16 lanes each (a lane = 4 bytes of each code register): the activation scale of the lane's
//!   block (`dx`, f32), `corr = -offset * (sum of the lane's codes)` (i32, added to the integer
//!   dot product so that unsigned weight codes need no sign fix-up), and for formats with a
//!   minimum `sx`, the lane's share of `d * sum(q)` (f32). Elements past the row's end are zero,
//!   with zero scales.
//! * **Blocks** (GEMM): every token's codes in natural order, and per weight scale block
//!   (`sblock` elements) of every token: `dx`, `corr` and `sx` as single values, which the
//!   micro-kernel broadcasts.

use gguf_file::GgmlType;
use quill_quant::{cast_blocks, BlockQ8_0, BlockQ8_1, BlockQ8_K, Q8_0, Q8_1, Q8_K};

use crate::formats::{Lanes, QuantSpec};
use quill_quant::fp16_to_fp32 as fp16;

/// 64 bytes aligned to 64: the unit of the lane layout (one SIMD register's worth).
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
pub(crate) struct A64(pub [u8; 64]);

impl A64 {
    pub const ZERO: A64 = A64([0; 64]);
}

/// Views aligned units as bytes.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) fn units_as_bytes(u: &[A64]) -> &[u8] {
    // SAFETY: A64 is repr(C) of [u8; 64] with no padding (size 64, align 64), so its units are
    // a contiguous run of initialised bytes of u.len() * 64 bytes.
    unsafe { std::slice::from_raw_parts(u.as_ptr().cast::<u8>(), u.len() * 64) }
}

/// Mutable version of [`units_as_bytes`].
pub(crate) fn units_as_bytes_mut(u: &mut [A64]) -> &mut [u8] {
    // SAFETY: as in units_as_bytes; every byte pattern is a valid A64, and the borrow is unique.
    unsafe { std::slice::from_raw_parts_mut(u.as_mut_ptr().cast::<u8>(), u.len() * 64) }
}

/// Grows `v` to at least `n` units (never shrinks, so that warm buffers do not reallocate).
pub(crate) fn grow(v: &mut Vec<A64>, n: usize) {
    if v.len() < n {
        v.resize(n, A64::ZERO);
    }
}

/// 64-byte units per lane group: code registers, `dx`, `corr`, and `sx` when there is a min.
pub(crate) fn group_units(spec: &QuantSpec) -> usize {
    spec.lanes.regs() + 2 + usize::from(spec.has_min)
}

/// Units of one row of `k` elements in the lane layout.
pub(crate) fn lane_units(spec: &QuantSpec, k: usize) -> usize {
    k.div_ceil(spec.lanes.group()) * group_units(spec)
}

/// One token's activation as each GEMV kernel kind reads it.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[derive(Clone, Copy)]
pub(crate) struct GemvAct<'a> {
    /// The f32 row (float weight kernels). For F16 weights it holds F16-rounded values, as
    /// ggml multiplies F16 weights by an F16 activation.
    pub x: &'a [f32],
    /// For F16 weights, the same row as F16 bits (half the cache footprint of `x`, which
    /// matters once a row has thousands of elements); empty otherwise.
    pub xh: &'a [u16],
    /// The row as ggml activation blocks (scalar quantized kernels).
    pub q: &'a [u8],
    /// The row in the lane layout (SIMD quantized kernels that ask for it).
    pub lanes: &'a [A64],
    /// The row in the GEMM block layout (SIMD quantized kernels that ask for it).
    pub blocks: Option<ActBlocks<'a>>,
    /// With `blocks`, for 32-element formats: the codes in block-pair order ([`pack_p32`]).
    pub p32: &'a [i8],
}

/// Codes of 32-element blocks in pair order: per pair of blocks, the first 16 codes of both,
/// then the last 16 of both (64 bytes; a missing last block reads as zeros). `out` holds
/// `qs.len()` rounded up to 64.
pub(crate) fn pack_p32(qs: &[i8], out: &mut [i8]) {
    debug_assert!(qs.len().is_multiple_of(32) && out.len() >= qs.len().next_multiple_of(64));
    for (pair, o) in qs.chunks(64).zip(out.chunks_exact_mut(64)) {
        let (b0, b1) = pair.split_at(32);
        o[..16].copy_from_slice(&b0[..16]);
        o[32..48].copy_from_slice(&b0[16..]);
        if b1.is_empty() {
            o[16..32].fill(0);
            o[48..].fill(0);
        } else {
            o[16..32].copy_from_slice(&b1[..16]);
            o[48..].copy_from_slice(&b1[16..]);
        }
    }
}

/// ggml activation blocks of one row, by type.
#[allow(non_camel_case_types)]
enum ActRow<'a> {
    Q8_0(&'a [BlockQ8_0]),
    Q8_1(&'a [BlockQ8_1]),
    Q8_K(&'a [BlockQ8_K]),
}

impl<'a> ActRow<'a> {
    fn new(ty: GgmlType, bytes: &'a [u8]) -> ActRow<'a> {
        match ty {
            GgmlType::Q8_0 => ActRow::Q8_0(cast_blocks::<Q8_0>(bytes).expect("aligned whole blocks")),
            GgmlType::Q8_1 => ActRow::Q8_1(cast_blocks::<Q8_1>(bytes).expect("aligned whole blocks")),
            GgmlType::Q8_K => ActRow::Q8_K(cast_blocks::<Q8_K>(bytes).expect("aligned whole blocks")),
            other => unreachable!("{other} is not an activation format"),
        }
    }

    /// The codes and scale of the 32 elements starting at `e` (a multiple of 32), and for Q8_1
    /// the block's stored `s`.
    #[inline]
    fn block32(&self, e: usize) -> (&'a [i8], f32, f32) {
        match *self {
            ActRow::Q8_0(b) => (&b[e / 32].qs, fp16(b[e / 32].d), 0.0),
            ActRow::Q8_1(b) => (&b[e / 32].qs, fp16(b[e / 32].d), fp16(b[e / 32].s)),
            ActRow::Q8_K(b) => {
                let blk = &b[e / 256];
                (&blk.qs[e % 256..e % 256 + 32], blk.d, 0.0)
            }
        }
    }
}

/// Rearranges one row of ggml activation blocks (`k` elements of `spec.act`) into the lane
/// layout: `out` holds exactly [`lane_units`] units.
pub(crate) fn pack_lanes(spec: &QuantSpec, k: usize, act: &[u8], out: &mut [A64]) {
    let row = ActRow::new(spec.act, act);
    let (group, regs, units) = (spec.lanes.group(), spec.lanes.regs(), group_units(spec));
    debug_assert_eq!(out.len(), lane_units(spec, k));
    debug_assert_eq!(k % 32, 0);
    // Lanes covering one 32-element block: P32 lanes hold 4 + 4 elements, Nat lanes 4.
    let lanes_per_block = match spec.lanes {
        Lanes::P32 => 4,
        Lanes::Nat => 8,
    };
    for (g, units_g) in out.chunks_exact_mut(units).enumerate() {
        let mut sums = [0i32; 16];
        let mut dx = [0f32; 16];
        let mut sx = [0f32; 16];
        for u in units_g[..regs].iter_mut() {
            *u = A64::ZERO;
        }
        let start = g * group;
        for e0 in (start..(start + group).min(k)).step_by(32) {
            let (qs, d, s) = row.block32(e0);
            for half in 0..2 {
                let (reg, byte) = spec.lanes.place(e0 - start + 16 * half);
                let dst = &mut units_g[reg].0[byte..byte + 16];
                for (j, (o, &q)) in dst.iter_mut().zip(&qs[16 * half..16 * half + 16]).enumerate() {
                    *o = q as u8;
                    sums[(byte + j) / 4] += i32::from(q);
                }
                for l in byte / 4..byte / 4 + 4 {
                    dx[l] = d;
                    sx[l] = s / lanes_per_block as f32;
                }
            }
        }
        let corr: [i32; 16] = std::array::from_fn(|l| -spec.offset * sums[l]);
        if spec.act == GgmlType::Q8_K {
            sx = std::array::from_fn(|l| dx[l] * sums[l] as f32);
        }
        units_g[regs].0 = bytemuck_f32(&dx);
        units_g[regs + 1].0 = bytemuck_i32(&corr);
        if spec.has_min {
            units_g[regs + 2].0 = bytemuck_f32(&sx);
        }
    }
}

fn bytemuck_f32(v: &[f32; 16]) -> [u8; 64] {
    let mut out = [0u8; 64];
    for (o, x) in out.chunks_exact_mut(4).zip(v) {
        o.copy_from_slice(&x.to_le_bytes());
    }
    out
}

fn bytemuck_i32(v: &[i32; 16]) -> [u8; 64] {
    let mut out = [0u8; 64];
    for (o, x) in out.chunks_exact_mut(4).zip(v) {
        o.copy_from_slice(&x.to_le_bytes());
    }
    out
}

/// All tokens' activations for the GEMM micro-kernel (see the module docs).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[derive(Clone, Copy)]
pub(crate) struct ActBlocks<'a> {
    pub n_tokens: usize,
    pub k: usize,
    /// Elements per weight scale block; `n_sb = k / sblock`.
    pub sblock: usize,
    pub n_sb: usize,
    /// `[n_tokens][k]` codes.
    pub qs: &'a [i8],
    /// `[n_tokens][n_sb]` activation scales.
    pub dx: &'a [f32],
    /// `[n_tokens][n_sb]` `-offset * sum(codes)`.
    pub corr: &'a [i32],
    /// `[n_tokens][n_sb]` minimum terms (`d * sum(q)`), empty unless the format has a min.
    pub sx: &'a [f32],
}

impl<'a> ActBlocks<'a> {
    /// Rearranges `n_tokens` rows of ggml activation blocks (`q`, rows of `q.len() / n_tokens`
    /// bytes, `k` elements) into the block layout in the given buffers (each at least
    /// `n_tokens` rows long), rows in parallel, and views them.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn pack(
        spec: &QuantSpec,
        k: usize,
        n_tokens: usize,
        q: &[u8],
        qs: &'a mut [i8],
        dx: &'a mut [f32],
        corr: &'a mut [i32],
        sx: &'a mut [f32],
    ) -> ActBlocks<'a> {
        use rayon::prelude::*;
        let n_sb = k / spec.sblock;
        let (qs, dx, corr, sx) = (
            &mut qs[..n_tokens * k],
            &mut dx[..n_tokens * n_sb],
            &mut corr[..n_tokens * n_sb],
            &mut sx[..n_tokens * n_sb],
        );
        let rows = |((((qt, qst), dxt), ct), sxt)| pack_blocks(spec, k, qt, qst, dxt, ct, sxt);
        let q_rb = q.len() / n_tokens;
        if n_tokens <= 4 {
            // A decode step: not worth a parallel split.
            q.chunks_exact(q_rb)
                .zip(qs.chunks_exact_mut(k))
                .zip(dx.chunks_exact_mut(n_sb))
                .zip(corr.chunks_exact_mut(n_sb))
                .zip(sx.chunks_exact_mut(n_sb))
                .for_each(rows);
        } else {
            q.par_chunks_exact(q_rb)
                .zip(qs.par_chunks_exact_mut(k))
                .zip(dx.par_chunks_exact_mut(n_sb))
                .zip(corr.par_chunks_exact_mut(n_sb))
                .zip(sx.par_chunks_exact_mut(n_sb))
                .for_each(rows);
        }
        ActBlocks { n_tokens, k, sblock: spec.sblock, n_sb, qs, dx, corr, sx: if spec.has_min { sx } else { &[] } }
    }
}

/// Rearranges one token's ggml activation blocks into its slices of the block layout: `qs`
/// (`k`), `dx`, `corr` and `sx` (`k / spec.sblock` each; `sx` may be empty).
pub(crate) fn pack_blocks(
    spec: &QuantSpec,
    k: usize,
    act: &[u8],
    qs: &mut [i8],
    dx: &mut [f32],
    corr: &mut [i32],
    sx: &mut [f32],
) {
    let row = ActRow::new(spec.act, act);
    let sb = spec.sblock;
    for e0 in (0..k).step_by(32) {
        let (q, d, s) = row.block32(e0);
        qs[e0..e0 + 32].copy_from_slice(q);
        for (h, part) in q.chunks_exact(sb).enumerate() {
            let j = e0 / sb + h;
            let sum: i32 = part.iter().map(|&v| i32::from(v)).sum();
            dx[j] = d;
            corr[j] = -spec.offset * sum;
            if spec.has_min {
                sx[j] = if spec.act == GgmlType::Q8_1 { s } else { d * sum as f32 };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::{quant_spec, SIMD_QUANT_TYPES};

    fn quantized(ty: GgmlType, x: &[f32]) -> (Vec<A64>, usize) {
        let n = quill_quant::row_bytes(ty, x.len()).unwrap();
        let mut buf = vec![A64::ZERO; n.div_ceil(64)];
        quill_quant::quantize(ty, x, x.len(), &mut units_as_bytes_mut(&mut buf)[..n]).unwrap();
        (buf, n)
    }

    /// Every code lands once in the lane layout, lane sums and scales agree with the blocks,
    /// and padding past the row is zero.
    #[test]
    fn lanes_hold_every_code_once() {
        for &ty in SIMD_QUANT_TYPES {
            let spec = quant_spec(ty).unwrap();
            for k in [256usize, 512, 768] {
                let x: Vec<f32> = (0..k).map(|i| ((i * 7919) % 255) as f32 - 127.0).collect();
                let (q, n) = quantized(spec.act, &x);
                let mut lanes = vec![A64::ZERO; lane_units(&spec, k)];
                pack_lanes(&spec, k, &units_as_bytes(&q)[..n], &mut lanes);
                let mut dq = vec![0f32; k];
                quill_quant::dequantize(spec.act, &units_as_bytes(&q)[..n], &mut dq).unwrap();
                let units = group_units(&spec);
                for (e, &want) in dq.iter().enumerate() {
                    let (g, i) = (e / spec.lanes.group(), e % spec.lanes.group());
                    let (reg, byte) = spec.lanes.place(i);
                    let code = lanes[g * units + reg].0[byte] as i8;
                    let dx = f32::from_le_bytes(
                        lanes[g * units + spec.lanes.regs()].0[byte / 4 * 4..byte / 4 * 4 + 4].try_into().unwrap(),
                    );
                    assert_eq!(f32::from(code) * dx, want, "{ty} k={k} e={e}");
                }
            }
        }
    }

    #[test]
    fn blocks_sum_and_scale_each_sub_block() {
        let spec = quant_spec(GgmlType::Q6_K).unwrap();
        let k = 512;
        let x: Vec<f32> = (0..k).map(|i| (i as f32 * 0.37).sin()).collect();
        let (q, n) = quantized(spec.act, &x);
        let (mut qs, mut dx, mut corr) = (vec![0i8; k], vec![0f32; k / 16], vec![0i32; k / 16]);
        pack_blocks(&spec, k, &units_as_bytes(&q)[..n], &mut qs, &mut dx, &mut corr, &mut []);
        let blocks = cast_blocks::<Q8_K>(&units_as_bytes(&q)[..n]).unwrap();
        for j in 0..k / 16 {
            assert_eq!(corr[j], -32 * i32::from(blocks[j / 16].bsums[j % 16]));
            assert_eq!(dx[j], blocks[j / 16].d);
        }
        assert_eq!(&qs[256..512], &blocks[1].qs[..]);
    }
}
