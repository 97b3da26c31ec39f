//! Matrix products `out[t][r] = sum_c W[r][c] * x[t][c]` for weights in any supported format:
//! the weight view, the reusable scratch, and the choice between GEMV (decode) and GEMM
//! (prefill).

use gguf_file::GgmlType;
use half::{bf16, f16};

use crate::act::{grow, units_as_bytes_mut, A64};
use crate::formats::{is_float, quant_spec};
use crate::{KernelError, Kernels};

/// A weight matrix viewed in place: `rows` rows of `cols` elements (`cols` contiguous, ggml's
/// `ne[0]`), stored as `ty`.
#[derive(Clone, Copy, Debug)]
pub struct Matrix<'a> {
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    pub data: &'a [u8],
    row_bytes: usize,
}

impl<'a> Matrix<'a> {
    pub fn new(ty: GgmlType, rows: usize, cols: usize, data: &'a [u8]) -> Result<Matrix<'a>, KernelError> {
        let row_bytes = ty.row_bytes(cols as u64).ok_or(KernelError::PartialBlock { ty, cols })? as usize;
        let expected = row_bytes * rows;
        if data.len() != expected {
            return Err(KernelError::WrongSize { ty, rows, cols, expected, found: data.len() });
        }
        if quill_quant::dot_type(ty).is_err() {
            return Err(KernelError::Unsupported(ty));
        }
        let group = ty.row_group() as usize;
        if !rows.is_multiple_of(group) {
            return Err(KernelError::PartialGroup { ty, rows, group });
        }
        Ok(Matrix { ty, rows, cols, data, row_bytes })
    }

    /// The bytes of row `r` (for an interleaved type, `Q4_0_8_8`, the `r`-th row-sized slice of
    /// its groups: use [`Matrix::dequantize_row`] for its values).
    pub fn row(&self, r: usize) -> &'a [u8] {
        &self.data[r * self.row_bytes..(r + 1) * self.row_bytes]
    }

    /// Bytes per row.
    pub fn row_bytes(&self) -> usize {
        self.row_bytes
    }

    /// Writes row `r` as f32 into `out` (`cols` long): embedding lookups.
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let row = self.row(r);
        match self.ty {
            GgmlType::Q4_0_8_8 => {
                let g = quill_quant::interleave::GROUP_ROWS;
                let group = &self.data[r / g * g * self.row_bytes..][..g * self.row_bytes];
                for (b, o) in out.chunks_exact_mut(32).enumerate() {
                    let blk = quill_quant::interleave::row_block(group, r % g, b);
                    quill_quant::dequantize(GgmlType::Q4_0, &blk, o).expect("Matrix::new checked the sizes");
                }
            }
            GgmlType::F32 => {
                for (o, b) in out.iter_mut().zip(row.chunks_exact(4)) {
                    *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
            }
            GgmlType::F16 => {
                for (o, b) in out.iter_mut().zip(row.chunks_exact(2)) {
                    *o = f16::from_le_bytes([b[0], b[1]]).to_f32();
                }
            }
            GgmlType::BF16 => {
                for (o, b) in out.iter_mut().zip(row.chunks_exact(2)) {
                    *o = bf16::from_le_bytes([b[0], b[1]]).to_f32();
                }
            }
            ty => quill_quant::dequantize(ty, row, out).expect("Matrix::new checked the type and sizes"),
        }
    }
}

/// Reusable buffers for [`matmul`]: the activation quantized to the weights' dot-product format
/// and its rearrangements (see `act.rs`). Buffers only grow; size them up front with
/// [`MatmulScratch::with_capacity`] so that no matmul allocates.
#[derive(Default)]
pub struct MatmulScratch {
    /// `[n_tokens]` rows of ggml activation blocks.
    pub(crate) q: Vec<A64>,
    /// GEMM block layout: `[n_tokens][k]` codes, `[n_tokens][k / sblock]` scales, corrections
    /// and minimum terms.
    pub(crate) qs: Vec<i8>,
    pub(crate) dx: Vec<f32>,
    pub(crate) corr: Vec<i32>,
    pub(crate) sx: Vec<f32>,
    /// `[n_tokens]` rows of codes in block-pair order (GEMV and decode steps of 32-element
    /// formats, `act::pack_p32`; rows `k` rounded up to 64 apart).
    pub(crate) p32: Vec<i8>,
    /// F16 weights: the activation rounded to F16, as bits (one row, GEMV) and as f32
    /// (`[n_tokens][k]`); grown on first use by an F16 matrix only.
    pub(crate) xh: Vec<u16>,
    pub(crate) xr: Vec<f32>,
    /// GEMM weight panels, one per pool thread.
    pub(crate) panels: Vec<std::sync::Mutex<crate::panel::Panel>>,
    /// See [`MatmulScratch::set_row_invariant`].
    pub(crate) row_invariant: bool,
}

impl MatmulScratch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Scratch large enough for any matmul of up to `max_tokens` rows of `max_cols` elements,
    /// whatever the weight format.
    pub fn with_capacity(max_tokens: usize, max_cols: usize) -> Self {
        let mut s = Self::new();
        s.reserve(max_tokens, max_cols);
        crate::gemv::f16_rows(&mut s, max_tokens, max_cols);
        s
    }

    /// Makes every [`matmul`] with this scratch *row-invariant*: row `t` of the output depends
    /// only on the weights and row `t` of `x`, bit for bit, whatever the number of rows in the
    /// call and the number of threads. A multi-sequence engine needs this so that a sequence's
    /// tokens do not depend on which other sequences share its batch.
    ///
    /// Quantized weights: every kernel (GEMV, step, GEMM) gives each token the same sequence of
    /// float operations (`crate::order`) whatever tile it lands in, and rows are split across
    /// threads whole, so this changes nothing for them. Float weights: every width runs the
    /// panel-free kernel in the float GEMV's order (`GemmKernels::step_f32`), so one token's
    /// product is the plain GEMV's.
    pub fn set_row_invariant(&mut self, on: bool) {
        self.row_invariant = on;
    }

    /// Grows the buffers for `n_tokens` rows of `cols` elements of every format.
    pub fn reserve(&mut self, n_tokens: usize, cols: usize) {
        let cols = cols.next_multiple_of(256);
        let q_bytes = [GgmlType::Q8_0, GgmlType::Q8_1, GgmlType::Q8_K]
            .iter()
            .map(|&t| quill_quant::row_bytes(t, cols).expect("whole blocks"))
            .max()
            .unwrap_or(0);
        grow(&mut self.q, (q_bytes * n_tokens).div_ceil(64));
        // The pair-order codes serve the GEMV and the step kernel only (a few tokens), not a
        // whole prompt.
        let p32 = n_tokens.min(STEP_MAX_TOKENS) * cols;
        if self.p32.len() < p32 {
            self.p32.resize(p32, 0);
        }
        let n = n_tokens * cols;
        if self.qs.len() < n {
            self.qs.resize(n, 0);
        }
        let n_sb = n / 16;
        if self.dx.len() < n_sb {
            self.dx.resize(n_sb, 0.0);
            self.corr.resize(n_sb, 0);
            self.sx.resize(n_sb, 0.0);
        }
    }

    /// The first `n_tokens` rows of `row_bytes` bytes of activation blocks (grown as needed).
    pub(crate) fn q_rows(&mut self, n_tokens: usize, row_bytes: usize) -> &mut [u8] {
        grow(&mut self.q, (n_tokens * row_bytes).div_ceil(64));
        &mut units_as_bytes_mut(&mut self.q)[..n_tokens * row_bytes]
    }
}

/// The most tokens a backend's step kernel (`QuantKernels::step`) runs before its GEMM takes
/// over: [`MatmulScratch::reserve`] sizes the step's buffers for this many, so that it allocates
/// nothing per step (every backend's measured crossover is below it).
pub(crate) const STEP_MAX_TOKENS: usize = 16;

/// Token count from which a float-weight matmul runs as GEMM (weights decoded once into panels
/// and reused across tokens) rather than as one GEMV per token; quantized weights switch at
/// their backend's measured count (`GemmKernels::min_tokens`).
pub const GEMM_MIN_TOKENS: usize = 4;

impl Kernels {
    /// Whether this table's GEMV gives every row of `ty` weights bit for bit what its GEMM gives
    /// it (the same float operations in the same order): the quantized formats on every table
    /// (`crate::order`), and everything on tables without GEMM (every product is one GEMV per
    /// token). Float weights' plain GEMV and GEMM sum differently.
    pub fn gemv_matches_gemm(&self, ty: GgmlType) -> bool {
        self.gemm.is_none() || quant_spec(ty).is_some()
    }

    /// Whether a one-token product gives the same bits row-invariant (a server's decode step)
    /// as plain (`quill generate`'s decode): where the GEMV matches the GEMM, and for float
    /// weights on every table (their row-invariant kernel sums in the GEMV's order; their plain
    /// prompt products, GEMMs over panels, do not).
    pub fn one_token_matches(&self, ty: GgmlType) -> bool {
        self.gemv_matches_gemm(ty) || is_float(ty)
    }

    /// [`matmul`] with this table's kernels.
    pub fn matmul(&self, w: &Matrix<'_>, x: &[f32], n_tokens: usize, out: &mut [f32], scratch: &mut MatmulScratch) {
        assert_eq!(x.len(), n_tokens * w.cols, "matmul: x has the wrong length");
        assert_eq!(out.len(), n_tokens * w.rows, "matmul: out has the wrong length");
        if n_tokens == 0 || w.rows == 0 {
            return;
        }
        // Row-invariant float products: the panel-free kernel in the GEMV's order, at every width.
        if let Some(g) = self.gemm.as_ref().filter(|_| is_float(w.ty) && scratch.row_invariant) {
            return crate::gemm::run_float_step(g, g.step_f32, w, x, n_tokens, out, scratch);
        }
        let gemm_ok = (is_float(w.ty) || quant_spec(w.ty).is_some()) && self.gemm.is_some();
        let gemm_min = match &self.gemm {
            Some(g) if quant_spec(w.ty).is_some() => g.min_tokens.get(w.ty).unwrap_or(GEMM_MIN_TOKENS),
            _ => GEMM_MIN_TOKENS,
        };
        if n_tokens >= gemm_min && gemm_ok {
            crate::gemm::run(self, w, x, n_tokens, out, scratch);
        } else if let Some(step) = self.quant.step.filter(|_| n_tokens > 1 && quant_spec(w.ty).is_some()) {
            crate::gemv::run_step(self, step, w, x, n_tokens, out, scratch);
        } else {
            crate::gemv::run(self, w, x, n_tokens, out, scratch);
        }
    }
}

/// `out[t][r] = sum_c w[r][c] * x[t][c]` for `n_tokens` rows of `x` (`[n_tokens][w.cols]`) into
/// `out` (`[n_tokens][w.rows]`), with the process-wide kernels ([`Kernels::active`]). Quantized
/// weights multiply `x` quantized to their ggml activation format, F16 weights `x` rounded to
/// F16 (both as llama.cpp does); F32 and BF16 weights multiply `x` as is.
pub fn matmul(w: &Matrix<'_>, x: &[f32], n_tokens: usize, out: &mut [f32], scratch: &mut MatmulScratch) {
    Kernels::active().matmul(w, x, n_tokens, out, scratch)
}
