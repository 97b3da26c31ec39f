//! NEON quantized GEMV and decode step (1 to a few token rows per weight read), in the one float
//! order of every quantized product (`crate::order`), so that a one-token product gives the bits
//! the GEMM (`super::aarch64_neon_gemm`) gives that token: a server's lone request runs this
//! GEMV, not a GEMM over panels.
//!
//! Four weight rows at a time, one f32 lane each. Per scale block and row, `sdot` of the codes
//! against each token's activation codes (natural order, `crate::act::ActBlocks`) leaves four
//! partial i32 lanes; two rounds of pairwise adds (`addp`) give the four rows' exact block sums
//! in one register, which then takes the activation's `corr` (not Q8_0's signed codes), is
//! converted and scaled by `dw * dx` into chain `s % CHAINS`, as the GEMM does. Q4_0 and Q8_0
//! decode their blocks in registers; the other formats are decoded a chunk of a row at a time by
//! the portable decoder (`crate::decode`), as the GEMM's panels are. Each group of rows is read
//! from memory once for every token: tokens go in tiles of [`TT`] over the same (cached) rows.

use std::arch::aarch64::*;
use std::marker::PhantomData;

use gguf_file::GgmlType;
use quill_quant::{fp16_to_fp32, BlockQ4_0, BlockQ8_0};

use super::aarch64_neon::sdot;
pub(crate) use super::aarch64_neon::{gemv_bf16, gemv_f16, gemv_f32};
use crate::act::{ActBlocks, GemvAct};
use crate::decode::decode_row;
use crate::formats::{quant_spec, LegacyBlock};
use crate::CHAINS;

/// Weight rows per group: one f32 lane each.
const RG: usize = 4;
/// Tokens per tile: per token two activation registers, four partial sums and [`CHAINS`]
/// accumulators stay in the 32 vector registers.
const TT: usize = 2;
/// Elements a [`Decoded`] source decodes at a time (a multiple of every block size).
const CHUNK: usize = 2048;

/// The f32 value of the f16 at `p`.
#[inline(always)]
unsafe fn rd_f16(p: *const u8) -> f32 {
    // SAFETY: the caller's pointer is valid for two bytes.
    unsafe { fp16_to_fp32(half::f16::from_bits(p.cast::<u16>().read_unaligned())) }
}

/// Where a group of [`RG`] rows' codes, scales and minimums come from.
trait Source {
    /// Elements per scale block: 32, or 16 (Q6_K).
    const SB: usize;
    /// Signed codes (Q8_0): the sums take no activation correction.
    const SIGNED: bool;
    /// Whether the format adds a per-block minimum.
    const MIN: bool;
    /// Makes elements `e0..e0 + n` of `rows` (block-aligned) ready to read.
    unsafe fn prepare(&mut self, rows: &[*const u8; RG], e0: usize, n: usize);
    /// Row `r`'s codes of scale block `s` (the second half unused when `SB` is 16).
    unsafe fn codes(&self, rows: &[*const u8; RG], r: usize, s: usize) -> [int8x16_t; 2];
    /// The four rows' scales of block `s`.
    unsafe fn scales(&self, rows: &[*const u8; RG], s: usize) -> float32x4_t;
    /// The four rows' minimums of block `s` (formats with one).
    unsafe fn mins(&self, rows: &[*const u8; RG], s: usize) -> float32x4_t;
}

/// Q4_0 (low nibbles are elements 0..16, high ones 16..32) or Q8_0 (signed codes) blocks read
/// in place.
struct InPlace<B>(PhantomData<B>);

impl<B: LegacyBlock> Source for InPlace<B> {
    const SB: usize = 32;
    const SIGNED: bool = B::SIGNED;
    const MIN: bool = false;

    #[inline(always)]
    unsafe fn prepare(&mut self, _: &[*const u8; RG], _: usize, _: usize) {}

    #[inline(always)]
    unsafe fn codes(&self, rows: &[*const u8; RG], r: usize, s: usize) -> [int8x16_t; 2] {
        // SAFETY: the caller's row `r` holds block `s`.
        unsafe {
            let qs = rows[r].add(s * B::BYTES + B::QS);
            if B::SIGNED {
                return [vld1q_s8(qs.cast()), vld1q_s8(qs.add(16).cast())];
            }
            let q = vld1q_u8(qs);
            [vreinterpretq_s8_u8(vandq_u8(q, vdupq_n_u8(0x0f))), vreinterpretq_s8_u8(vshrq_n_u8::<4>(q))]
        }
    }

    #[inline(always)]
    unsafe fn scales(&self, rows: &[*const u8; RG], s: usize) -> float32x4_t {
        // SAFETY: as for `codes`.
        unsafe {
            let d: [f32; RG] = std::array::from_fn(|r| rd_f16(rows[r].add(s * B::BYTES + B::D)));
            vld1q_f32(d.as_ptr())
        }
    }

    #[inline(always)]
    unsafe fn mins(&self, _: &[*const u8; RG], _: usize) -> float32x4_t {
        unreachable!("Q4_0 and Q8_0 have no minimum")
    }
}

/// Any other format: [`CHUNK`] elements of each row decoded by `crate::decode` into unsigned
/// codes (all below 128, so they read as the same signed bytes) and f32 scales and minimums.
struct Decoded<const SB: usize, const MIN: bool> {
    ty: GgmlType,
    /// Bytes of a row's block, elements per block.
    bb: usize,
    bs: usize,
    /// The first element decoded.
    e0: usize,
    codes: [[u8; CHUNK]; RG],
    dw: [[f32; CHUNK / 16]; RG],
    mw: [[f32; CHUNK / 16]; RG],
}

impl<const SB: usize, const MIN: bool> Decoded<SB, MIN> {
    fn new(ty: GgmlType) -> Self {
        let spec = quant_spec(ty).expect("a quantized format");
        debug_assert!(spec.sblock == SB && spec.has_min == MIN && spec.max_code < 128);
        let (bb, bs) = (ty.block_bytes() as usize, ty.block_size() as usize);
        Self { ty, bb, bs, e0: 0, codes: [[0; CHUNK]; RG], dw: [[0.0; CHUNK / 16]; RG], mw: [[0.0; CHUNK / 16]; RG] }
    }

    /// Row `r`'s values of scale block `s` in `v` (`dw` or `mw`) as one register of the rows.
    #[inline(always)]
    fn gather(&self, v: &[[f32; CHUNK / 16]; RG], s: usize) -> float32x4_t {
        let i = s - self.e0 / SB;
        let d: [f32; RG] = std::array::from_fn(|r| v[r][i]);
        // SAFETY: NEON is part of every AArch64 CPU; `d` holds four f32.
        unsafe { vld1q_f32(d.as_ptr()) }
    }
}

impl<const SB: usize, const MIN: bool> Source for Decoded<SB, MIN> {
    const SB: usize = SB;
    const SIGNED: bool = false;
    const MIN: bool = MIN;

    #[inline(always)]
    unsafe fn prepare(&mut self, rows: &[*const u8; RG], e0: usize, n: usize) {
        self.e0 = e0;
        for (r, &row) in rows.iter().enumerate() {
            // SAFETY: the caller's rows hold elements e0..e0 + n, in whole blocks.
            let w = unsafe { std::slice::from_raw_parts(row.add(e0 / self.bs * self.bb), n / self.bs * self.bb) };
            decode_row(self.ty, w, n, &mut self.codes[r], &mut self.dw[r], &mut self.mw[r]);
        }
    }

    #[inline(always)]
    unsafe fn codes(&self, _: &[*const u8; RG], r: usize, s: usize) -> [int8x16_t; 2] {
        // SAFETY: block `s` lies in the decoded chunk (the kernel's loop), SB codes from
        // s * SB - e0 < CHUNK.
        unsafe {
            let c = self.codes[r].as_ptr().add(s * SB - self.e0).cast::<i8>();
            [vld1q_s8(c), if SB == 32 { vld1q_s8(c.add(16)) } else { vdupq_n_s8(0) }]
        }
    }

    #[inline(always)]
    unsafe fn scales(&self, _: &[*const u8; RG], s: usize) -> float32x4_t {
        self.gather(&self.dw, s)
    }

    #[inline(always)]
    unsafe fn mins(&self, _: &[*const u8; RG], s: usize) -> float32x4_t {
        self.gather(&self.mw, s)
    }
}

/// `T` tokens from `t0` against one group of rows (`rows`, the last ones repeated past
/// `n_rows`): outputs `out[(t0 + t) * stride + r]` for `r < n_rows`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn group<S: Source, const T: usize>(
    src: &mut S,
    rows: &[*const u8; RG],
    k: usize,
    a: &ActBlocks<'_>,
    t0: usize,
    out: *mut f32,
    stride: usize,
    n_rows: usize,
) {
    let n_sb = a.n_sb;
    debug_assert_eq!(n_sb * S::SB, k);
    // SAFETY: the caller's contract (`product`'s): `a` holds tokens t0..t0 + T of k elements
    // and n_sb scale blocks each, the rows whole blocks of k elements, `out` the outputs.
    unsafe {
        let qs = a.qs.as_ptr().add(t0 * k);
        let (dx, corr, sx) = (a.dx.as_ptr().add(t0 * n_sb), a.corr.as_ptr().add(t0 * n_sb), a.sx.as_ptr());
        let mut chains = [[vdupq_n_f32(0.0); T]; CHAINS];
        let mut e0 = 0;
        while e0 < k {
            let n = CHUNK.min(k - e0);
            src.prepare(rows, e0, n);
            for s in e0 / S::SB..(e0 + n) / S::SB {
                let x: [[int8x16_t; 2]; T] = std::array::from_fn(|t| {
                    let p = qs.add(t * k + s * S::SB);
                    [vld1q_s8(p), if S::SB == 32 { vld1q_s8(p.add(16)) } else { vdupq_n_s8(0) }]
                });
                let mut part = [[vdupq_n_s32(0); T]; RG];
                for (r, pr) in part.iter_mut().enumerate() {
                    let c = src.codes(rows, r, s);
                    for t in 0..T {
                        pr[t] = sdot(pr[t], c[0], x[t][0]);
                        if S::SB == 32 {
                            pr[t] = sdot(pr[t], c[1], x[t][1]);
                        }
                    }
                }
                let dw = src.scales(rows, s);
                let ch = &mut chains[s % CHAINS];
                for t in 0..T {
                    let p = &part;
                    let mut i = vpaddq_s32(vpaddq_s32(p[0][t], p[1][t]), vpaddq_s32(p[2][t], p[3][t]));
                    if !S::SIGNED {
                        i = vaddq_s32(i, vdupq_n_s32(*corr.add(t * n_sb + s)));
                    }
                    ch[t] = vfmaq_f32(ch[t], vcvtq_f32_s32(i), vmulq_n_f32(dw, *dx.add(t * n_sb + s)));
                    if S::MIN {
                        let m = vdupq_n_f32(*sx.add((t0 + t) * n_sb + s));
                        ch[t] = vfmaq_f32(ch[t], src.mins(rows, s), m);
                    }
                }
            }
            e0 += n;
        }
        for t in 0..T {
            let c = &chains;
            let sum = vaddq_f32(vaddq_f32(c[0][t], c[1][t]), vaddq_f32(c[2][t], c[3][t]));
            let mut v = [0f32; RG];
            vst1q_f32(v.as_mut_ptr(), sum);
            std::ptr::copy_nonoverlapping(v.as_ptr(), out.add((t0 + t) * stride), n_rows);
        }
    }
}

/// Rows `w` (whole rows of `rb` bytes, `k` elements) against every token of `a`, into
/// `out[t * stride + r]`.
#[inline(always)]
unsafe fn product<S: Source>(
    src: &mut S,
    w: &[u8],
    rb: usize,
    k: usize,
    a: &ActBlocks<'_>,
    out: *mut f32,
    stride: usize,
) {
    let n = w.len() / rb;
    debug_assert_eq!(n * rb, w.len());
    for g0 in (0..n).step_by(RG) {
        let nr = (n - g0).min(RG);
        // SAFETY: rows g0..g0 + nr are inside `w`; the group repeats its last row past nr.
        let rows: [*const u8; RG] = std::array::from_fn(|r| unsafe { w.as_ptr().add((g0 + r.min(nr - 1)) * rb) });
        let mut t0 = 0;
        while t0 < a.n_tokens {
            let nt = (a.n_tokens - t0).min(TT);
            // SAFETY: the caller's contract, for this group's rows and outputs g0..g0 + nr.
            unsafe {
                match nt {
                    2 => group::<S, 2>(src, &rows, k, a, t0, out.add(g0), stride, nr),
                    _ => group::<S, 1>(src, &rows, k, a, t0, out.add(g0), stride, nr),
                }
            }
            t0 += nt;
        }
    }
}

/// The GEMV entry points (`gemv_<format>`) and the step entry (`step_quant`) over their
/// [`Source`]s.
macro_rules! neon_fns {
    ($($name:ident $ty:ident => $src:expr),* $(,)?) => {
        $(
            #[target_feature(enable = "neon,dotprod")]
            pub(crate) unsafe fn $name(w: &[u8], rb: usize, k: usize, act: &GemvAct<'_>, out: &mut [f32]) {
                let a = act.blocks.as_ref().expect("the NEON table asks for the block layout");
                debug_assert_eq!(a.n_tokens, 1);
                debug_assert_eq!(w.len(), out.len() * rb);
                // SAFETY: this function's contract (the table's): the CPU has NEON and
                // dotprod, valid rows, one output per row.
                unsafe { product(&mut $src, w, rb, k, a, out.as_mut_ptr(), out.len()) }
            }
        )*

        /// The decode step of a few tokens (`crate::table::StepQFn`): every weight row read
        /// once for all tokens of `a`, in the GEMV's (and the GEMM's) float order; Q4_0_8_8
        /// de-interleaved a group of 8 rows at a time, then Q4_0's kernel.
        #[target_feature(enable = "neon,dotprod")]
        #[allow(clippy::too_many_arguments)]
        pub(crate) unsafe fn step_quant(
            ty: GgmlType,
            w: &[u8],
            rb: usize,
            k: usize,
            a: &ActBlocks<'_>,
            _p32: &[i8],
            out: *mut f32,
            stride: usize,
        ) {
            // SAFETY: this function's contract (the table's): the CPU has NEON and dotprod,
            // valid rows, `out` holds every token's outputs of these rows.
            unsafe {
                match ty {
                    $(GgmlType::$ty => product(&mut $src, w, rb, k, a, out, stride),)*
                    GgmlType::Q4_0_8_8 => crate::interleaved::for_each_group(w, rb, |rows, r0| {
                        product(&mut InPlace::<BlockQ4_0>(PhantomData), rows, rb, k, a, out.add(r0), stride)
                    }),
                    other => unreachable!("{other} has no quantized step kernel"),
                }
            }
        }
    };
}

neon_fns! {
    gemv_q4_0 Q4_0 => InPlace::<BlockQ4_0>(PhantomData),
    gemv_q4_1 Q4_1 => Decoded::<32, true>::new(GgmlType::Q4_1),
    gemv_q5_0 Q5_0 => Decoded::<32, false>::new(GgmlType::Q5_0),
    gemv_q5_1 Q5_1 => Decoded::<32, true>::new(GgmlType::Q5_1),
    gemv_q8_0 Q8_0 => InPlace::<BlockQ8_0>(PhantomData),
    gemv_q4_k Q4_K => Decoded::<32, true>::new(GgmlType::Q4_K),
    gemv_q5_k Q5_K => Decoded::<32, true>::new(GgmlType::Q5_K),
    gemv_q6_k Q6_K => Decoded::<16, false>::new(GgmlType::Q6_K),
}

/// Q4_0 interleaved by 8 rows: each group de-interleaved, then [`gemv_q4_0`] (the bits of the
/// Q4_0 file on this backend).
pub(crate) unsafe fn gemv_q4_0_8_8(w: &[u8], rb: usize, k: usize, act: &GemvAct<'_>, out: &mut [f32]) {
    // SAFETY: this function's contract (the table's): the CPU has NEON and dotprod, `act` is
    // in the block layout gemv_q4_0 reads, whole groups of rows.
    unsafe { crate::interleaved::gemv_groups(gemv_q4_0, w, rb, k, act, out) }
}
