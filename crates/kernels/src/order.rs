//! The one order of float operations of every quantized matrix product, on every backend and
//! for every number of token rows (GEMV, decode step, prefill GEMM), so that a row's result
//! never depends on the other rows of its call nor on the thread count.
//!
//! For an output (weight row `r`, token `t`), with `isum_s` the exact integer dot product of
//! scale block `s` of the row's codes and the token's activation codes (integers are exact in
//! any order, so each kernel gets them its own way), `corr_s` the activation's
//! `-offset * sum(codes)` of the block (not added by Q8_0's signed path, whose sums already hold
//! the sign), `dw_s`, `mw_s` the weight block's scale and minimum and `dx_s`, `sx_s` the
//! activation's scale and minimum term:
//!
//! ```text
//! for s in 0..n_sb:                       (in order)
//!     c = s % CHAINS
//!     acc[c] = fma(f32(isum_s + corr_s), dw_s * dx_s, acc[c])
//!     if the format has a minimum: acc[c] = fma(mw_s, sx_s, acc[c])
//! out = (acc[0] + acc[1]) + (acc[2] + acc[3])
//! ```
//!
//! Four chains hide the FMA latency. Every SIMD kernel follows it: on x86 the GEMV and step
//! kernels over `Dot`, the interleaved Q4_0 kernel and the AVX2 and AVX-512 GEMMs; on NEON the
//! GEMV and step kernel (four rows per register) and the GEMM.

/// Independent float accumulator chains per output.
pub(crate) const CHAINS: usize = 4;
