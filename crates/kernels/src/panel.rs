//! GEMM weight panels: `nr` rows of a weight matrix decoded once per matmul into the order the
//! micro-kernel streams (and then shared by every token of the prefill).
//!
//! * `U8` (integer formats): codes `[k / 4][nr][4]`, so one 64-byte (32-byte) load holds four
//!   consecutive codes of 16 (8) rows, the operand of `vpdpbusd` (`vpmaddubsw`) against four
//!   broadcast activation bytes.
//! * `F32` (float weights): `[k][nr]` f32.
//!
//! Scales (`dw`) and minimums (`mw`) are `[k / sblock][nr]` f32. Rows past the matrix's end are
//! zero codes with zero scales, so they compute zeros that are never stored.

use gguf_file::GgmlType;

use crate::act::{grow, units_as_bytes, units_as_bytes_mut, A64};
use crate::decode::decode_row;
use crate::formats::QuantSpec;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PanelKind {
    U8,
    F32,
}

/// One decoded panel and its decode scratch (kept per thread and reused, so that warm GEMMs do
/// not allocate).
pub(crate) struct Panel {
    pub kind: PanelKind,
    pub nr: usize,
    pub k: usize,
    pub sblock: usize,
    pub n_sb: usize,
    pub has_min: bool,
    /// The format's largest code ([`QuantSpec::max_code`]).
    pub max_code: u8,
    data: Vec<A64>,
    pub dw: Vec<f32>,
    pub mw: Vec<f32>,
    row_codes: Vec<u8>,
    /// One row's scales and minimums, while a builder transposes them into `dw` and `mw`.
    pub row_dw: Vec<f32>,
    pub row_mw: Vec<f32>,
    /// `[nr][k]` decoded codes, for the kernels that lay them out themselves.
    pub rows: Vec<u8>,
    /// Interleaved weights (`Q4_0_8_8`) de-interleaved to Q4_0 rows ([`Panel::take_q4_0_rows`]).
    q4_0: Vec<u8>,
}

impl Panel {
    pub const fn new() -> Panel {
        Panel {
            kind: PanelKind::F32,
            nr: 0,
            k: 0,
            sblock: 1,
            n_sb: 0,
            has_min: false,
            max_code: 0,
            data: Vec::new(),
            dw: Vec::new(),
            mw: Vec::new(),
            row_codes: Vec::new(),
            row_dw: Vec::new(),
            row_mw: Vec::new(),
            rows: Vec::new(),
            q4_0: Vec::new(),
        }
    }

    /// Sizes the panel for `nr` rows of `k` elements (buffers only grow).
    pub fn prepare(&mut self, kind: PanelKind, nr: usize, k: usize, spec: Option<&QuantSpec>) {
        let elem_bytes = match kind {
            PanelKind::U8 => 1,
            PanelKind::F32 => 4,
        };
        grow(&mut self.data, (nr * k * elem_bytes).div_ceil(64));
        (self.kind, self.nr, self.k) = (kind, nr, k);
        (self.sblock, self.has_min, self.max_code) =
            spec.map_or((k.max(1), false, 0), |s| (s.sblock, s.has_min, s.max_code));
        self.n_sb = k / self.sblock;
        let n = self.n_sb * nr;
        if self.dw.len() < n {
            self.dw.resize(n, 0.0);
            self.mw.resize(n, 0.0);
        }
        if self.row_codes.len() < k {
            self.row_codes.resize(k, 0);
        }
        // One row's scales, or 8 rows' (the AVX2 builder transposes them 8 at a time).
        let row_scales = 8 * self.n_sb.max(k / 16);
        if self.row_dw.len() < row_scales {
            self.row_dw.resize(row_scales, 0.0);
            self.row_mw.resize(row_scales, 0.0);
        }
        // The decoded rows (integer formats), sized here too: a pool thread that decodes its
        // first panel only in a later call must not allocate then.
        if self.rows.len() < nr * k {
            self.rows.resize(nr * k, 0);
        }
        if spec.is_some_and(|s| s.ty == GgmlType::Q4_0_8_8) {
            let bytes = nr * GgmlType::Q4_0.row_bytes(k as u64).unwrap_or(0) as usize;
            if self.q4_0.len() < bytes {
                self.q4_0.resize(bytes, 0);
            }
        }
    }

    /// Interleaved rows `w` (`Q4_0_8_8`, whole groups of 8 rows of the panel's `k`) as the Q4_0 rows
    /// they interleave, in the panel's own buffer (sized by [`Panel::prepare`]), taken out so
    /// that a builder can read them while it fills the panel: put it back with
    /// [`Panel::put_back_q4_0`].
    pub fn take_q4_0_rows(&mut self, w: &[u8]) -> Vec<u8> {
        let mut buf = std::mem::take(&mut self.q4_0);
        if buf.len() < w.len() {
            buf.resize(w.len(), 0);
        }
        quill_quant::interleave::deinterleave_q4_0x8(w, self.k, &mut buf[..w.len()])
            .expect("Matrix::new checked whole groups of whole blocks");
        buf
    }

    /// Returns the buffer of [`Panel::take_q4_0_rows`].
    pub fn put_back_q4_0(&mut self, buf: Vec<u8>) {
        self.q4_0 = buf;
    }

    /// Mutable view of the panel's code bytes.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        units_as_bytes_mut(&mut self.data)
    }

    /// The panel's code bytes.
    pub fn bytes(&self) -> &[u8] {
        units_as_bytes(&self.data)
    }

    /// The panel's values as f32 (`F32` panels).
    pub fn f32s(&self) -> &[f32] {
        let b = units_as_bytes(&self.data);
        // SAFETY: the buffer is 64-aligned (A64), every bit pattern is a valid f32, and the
        // length is rounded down to whole f32s.
        unsafe { std::slice::from_raw_parts(b.as_ptr().cast::<f32>(), b.len() / 4) }
    }

    /// Mutable f32 view of the panel's values.
    pub fn f32s_mut(&mut self) -> &mut [f32] {
        let b = units_as_bytes_mut(&mut self.data);
        // SAFETY: as in f32s, with a unique borrow.
        unsafe { std::slice::from_raw_parts_mut(b.as_mut_ptr().cast::<f32>(), b.len() / 4) }
    }
}

impl Default for Panel {
    fn default() -> Self {
        Panel::new()
    }
}

/// Decodes the rows in `w` into `panel.rows` (`[nr][k]`, rows past the matrix hold the zero
/// code `offset`) and the panel's scales; the caller lays the codes out.
/// Interleaved rows (`Q4_0_8_8`) are de-interleaved first and decoded as the Q4_0 they are.
#[inline(always)]
pub(crate) fn decode_rows(spec: &QuantSpec, w: &[u8], row_bytes: usize, panel: &mut Panel) {
    if spec.ty == GgmlType::Q4_0_8_8 {
        let q4 = panel.take_q4_0_rows(w);
        decode_rows_as(GgmlType::Q4_0, spec, &q4[..w.len()], row_bytes, panel);
        panel.put_back_q4_0(q4);
    } else {
        decode_rows_as(spec.ty, spec, w, row_bytes, panel);
    }
}

/// [`decode_rows`] of rows stored as `ty`.
#[inline(always)]
fn decode_rows_as(ty: GgmlType, spec: &QuantSpec, w: &[u8], row_bytes: usize, panel: &mut Panel) {
    let (nr, k, n_sb) = (panel.nr, panel.k, panel.n_sb);
    let n_rows = w.len() / row_bytes;
    debug_assert!(n_rows <= nr && w.len() == n_rows * row_bytes);
    if panel.rows.len() < nr * k {
        panel.rows.resize(nr * k, 0);
    }
    for r in 0..nr {
        let codes = &mut panel.rows[r * k..(r + 1) * k];
        if r < n_rows {
            let row = &w[r * row_bytes..(r + 1) * row_bytes];
            decode_row(ty, row, k, codes, &mut panel.row_dw, &mut panel.row_mw);
        } else {
            codes.fill(spec.offset as u8);
            panel.row_dw[..n_sb].fill(0.0);
            panel.row_mw[..n_sb].fill(0.0);
        }
        for s in 0..n_sb {
            panel.dw[s * nr + r] = panel.row_dw[s];
            panel.mw[s * nr + r] = if spec.has_min { panel.row_mw[s] } else { 0.0 };
        }
    }
}

/// Builds an `F32` panel from float rows (`F32`, `F16` or `BF16`), element by element: the
/// portable version of the arch kernels' transposing builders.
#[inline(always)]
pub(crate) fn build_float(ty: GgmlType, w: &[u8], row_bytes: usize, panel: &mut Panel) {
    let (nr, k) = (panel.nr, panel.k);
    let n_rows = w.len() / row_bytes;
    let data = panel.f32s_mut();
    for r in 0..nr {
        if r >= n_rows {
            for i in 0..k {
                data[i * nr + r] = 0.0;
            }
            continue;
        }
        let row = &w[r * row_bytes..(r + 1) * row_bytes];
        match ty {
            GgmlType::F32 => {
                for (i, b) in row.chunks_exact(4).enumerate() {
                    data[i * nr + r] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
            }
            GgmlType::F16 => {
                for (i, b) in row.chunks_exact(2).enumerate() {
                    data[i * nr + r] = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
                }
            }
            GgmlType::BF16 => {
                for (i, b) in row.chunks_exact(2).enumerate() {
                    data[i * nr + r] = f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16);
                }
            }
            other => unreachable!("{other} is not a float format"),
        }
    }
}
