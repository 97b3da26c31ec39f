//! Activations quantized once per matmul, and the two orders the SIMD kernels read them in.
//!
//! A row `x` is first quantized to ggml's activation blocks (Q8_0, Q8_1 or Q8_K, bit-exact with
//! `quill_quant`), then rearranged without changing any value into the **block layout** every
//! SIMD kernel reads (GEMV, decode step, GEMM): every token's codes in natural order, and per
//! weight scale block (`sblock` elements) of every token the activation scale `dx`,
//! `corr = -offset * (sum of the block's codes)` (i32, added to the integer dot product so that
//! unsigned weight codes need no sign fix-up) and, for formats with a minimum, `sx` (the
//! block's share of `d * sum(q)`), as single values the kernels broadcast. The x86 GEMV and step
//! kernels of the formats with 32-element scale blocks (legacy blocks, K-quant sub-blocks) also
//! read the codes in block-pair order ([`pack_p32`]).

use gguf_file::GgmlType;
use quill_quant::{cast_blocks, BlockQ8_0, BlockQ8_1, BlockQ8_K, Q8_0, Q8_1, Q8_K};

use crate::formats::QuantSpec;
use quill_quant::fp16_to_fp32 as fp16;

/// 64 bytes aligned to 64: the unit of the activation buffers (one AVX-512 register's worth).
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
    use crate::formats::quant_spec;

    fn quantized(ty: GgmlType, x: &[f32]) -> (Vec<A64>, usize) {
        let n = quill_quant::row_bytes(ty, x.len()).unwrap();
        let mut buf = vec![A64::ZERO; n.div_ceil(64)];
        quill_quant::quantize(ty, x, x.len(), &mut units_as_bytes_mut(&mut buf)[..n]).unwrap();
        (buf, n)
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
