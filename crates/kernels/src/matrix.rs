//! Matrix products `out[t][r] = sum_c W[r][c] * x[t][c]` for weights in any supported format.

use gguf_file::GgmlType;
use half::{bf16, f16};
use rayon::prelude::*;

use crate::KernelError;

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
        Ok(Matrix { ty, rows, cols, data, row_bytes })
    }

    /// The bytes of row `r`.
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

/// Reusable buffers for [`matmul`] (the activation in the weights' dot-product format).
#[derive(Default)]
pub struct MatmulScratch {
    xq: Vec<u8>,
}

impl MatmulScratch {
    pub fn new() -> Self {
        Self::default()
    }
}

fn dot_row(w: &Matrix<'_>, r: usize, x: &[f32]) -> f32 {
    let row = w.row(r);
    match w.ty {
        GgmlType::F32 => {
            row.chunks_exact(4).zip(x).map(|(b, &xv)| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) * xv).sum()
        }
        GgmlType::F16 => {
            row.chunks_exact(2).zip(x).map(|(b, &xv)| f16::from_le_bytes([b[0], b[1]]).to_f32() * xv).sum()
        }
        GgmlType::BF16 => {
            row.chunks_exact(2).zip(x).map(|(b, &xv)| bf16::from_le_bytes([b[0], b[1]]).to_f32() * xv).sum()
        }
        ty => unreachable!("quantized {ty} rows take the quantized path"),
    }
}

/// `out[t][r] = sum_c w[r][c] * x[t][c]` for `n_tokens` rows of `x` (`[n_tokens][w.cols]`) into
/// `out` (`[n_tokens][w.rows]`).
pub fn matmul(w: &Matrix<'_>, x: &[f32], n_tokens: usize, out: &mut [f32], scratch: &mut MatmulScratch) {
    assert_eq!(x.len(), n_tokens * w.cols, "matmul: x has the wrong length");
    assert_eq!(out.len(), n_tokens * w.rows, "matmul: out has the wrong length");
    if w.ty.is_quantized() {
        let dot_ty = quill_quant::dot_type(w.ty).expect("Matrix::new checked the type");
        let xrow = quill_quant::row_bytes(dot_ty, w.cols).expect("whole blocks");
        scratch.xq.resize(xrow * n_tokens, 0);
        quill_quant::quantize(dot_ty, x, w.cols, &mut scratch.xq).expect("whole blocks");
        for t in 0..n_tokens {
            let xq = &scratch.xq[t * xrow..(t + 1) * xrow];
            out[t * w.rows..(t + 1) * w.rows].par_iter_mut().enumerate().for_each(|(r, o)| {
                *o = quill_quant::vec_dot_ref(w.ty, w.row(r), xq).expect("checked shapes");
            });
        }
        return;
    }
    for t in 0..n_tokens {
        let xt = &x[t * w.cols..(t + 1) * w.cols];
        out[t * w.rows..(t + 1) * w.rows].par_iter_mut().enumerate().for_each(|(r, o)| *o = dot_row(w, r, xt));
    }
}
