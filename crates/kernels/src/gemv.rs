//! GEMV (decode): one activation row against every weight row, rows split across threads.
//! Bandwidth-bound: each weight byte is read once, straight from the mapping.

use gguf_file::GgmlType;
use quill_quant::{cast_blocks_mut, Q8_0, Q8_1, Q8_K};
use rayon::prelude::*;

use crate::act::{grow, pack_p32, ActBlocks, GemvAct};
use crate::formats::quant_spec;
use crate::table::{ActLayout, GemvFn, StepQFn};
use crate::{Kernels, MatmulScratch, Matrix};

/// The output pointer shared by panel or row tasks, which write disjoint columns.
#[derive(Clone, Copy)]
pub(crate) struct OutPtr(pub(crate) *mut f32);
// SAFETY: only dereferenced by panel tasks that write pairwise disjoint columns of `out`.
unsafe impl Send for OutPtr {}
// SAFETY: as above; never read through shared references.
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// The pointer to column `r0` of row 0.
    pub(crate) fn col(self, r0: usize) -> *mut f32 {
        // SAFETY: callers pass r0 < rows, inside the asserted `out` buffer.
        unsafe { self.0.add(r0) }
    }
}

/// Whether the quantized GEMV and step kernels of `ty` in table `k` read the activation in
/// block-pair order (where the table asks for it: the formats with 32-element scale blocks, but
/// interleaved Q4_0, whose kernel broadcasts natural-order codes).
fn reads_p32(k: &Kernels, ty: GgmlType) -> bool {
    let spec = quant_spec(ty).expect("a quantized format");
    k.quant.pair_order && spec.sblock == 32 && ty != GgmlType::Q4_0_8_8
}

/// Quantizes one row `x` to the activation format `ty` (ggml blocks) with the table's kernels.
pub(crate) fn quantize_row(k: &Kernels, ty: GgmlType, x: &[f32], out: &mut [u8]) {
    // SAFETY: the table's kernels run on this CPU (Kernels::get checked its features); the
    // block views have exactly x.len() / block_size blocks (the caller sized `out` with
    // quill_quant::row_bytes).
    unsafe {
        match ty {
            GgmlType::Q8_0 => (k.quant.q8_0)(x, cast_blocks_mut::<Q8_0>(out).expect("aligned whole blocks")),
            GgmlType::Q8_1 => (k.quant.q8_1)(x, cast_blocks_mut::<Q8_1>(out).expect("aligned whole blocks")),
            GgmlType::Q8_K => (k.quant.q8_k)(x, cast_blocks_mut::<Q8_K>(out).expect("aligned whole blocks")),
            other => unreachable!("{other} is not an activation format"),
        }
    }
}

/// Quantizes `n_tokens` rows of `x` into `q` (rows of `row_bytes`), in parallel when there are
/// many.
pub(crate) fn quantize_rows(k: &Kernels, ty: GgmlType, x: &[f32], cols: usize, q: &mut [u8], row_bytes: usize) {
    if q.len() <= row_bytes * 4 {
        for (xt, qt) in x.chunks_exact(cols).zip(q.chunks_exact_mut(row_bytes)) {
            quantize_row(k, ty, xt, qt);
        }
    } else {
        x.par_chunks_exact(cols)
            .zip(q.par_chunks_exact_mut(row_bytes))
            .for_each(|(xt, qt)| quantize_row(k, ty, xt, qt));
    }
}

/// The scratch's F16 activation buffers for `n_tokens` rows of `cols`: F16 bits (one row) and
/// the rounded values as f32 (every row). Grown on first use, so warm calls allocate nothing.
pub(crate) fn f16_rows(s: &mut MatmulScratch, n_tokens: usize, cols: usize) -> (&mut [u16], &mut [f32]) {
    f16_buffers(&mut s.xh, &mut s.xr, n_tokens, cols)
}

/// [`f16_rows`] on the two buffers themselves (so that the rest of the scratch stays free).
fn f16_buffers<'h, 'r>(
    xh: &'h mut Vec<u16>,
    xr: &'r mut Vec<f32>,
    n_tokens: usize,
    cols: usize,
) -> (&'h mut [u16], &'r mut [f32]) {
    if xh.len() < cols {
        xh.resize(cols, 0);
    }
    if xr.len() < n_tokens * cols {
        xr.resize(n_tokens * cols, 0.0);
    }
    (&mut xh[..cols], &mut xr[..n_tokens * cols])
}

/// `x` (`n_tokens` rows of `cols`) rounded to F16 as f32, in `xr` (grown as needed, `xh` the
/// bits of one row): the activation F16 weights multiply in every product kernel.
pub(crate) fn f16_rounded<'s>(
    xh: &mut Vec<u16>,
    xr: &'s mut Vec<f32>,
    x: &[f32],
    n_tokens: usize,
    cols: usize,
) -> &'s [f32] {
    let (xh, rows) = f16_buffers(xh, xr, n_tokens, cols);
    for (xt, rt) in x.chunks_exact(cols).zip(rows.chunks_exact_mut(cols)) {
        round_to_f16(xt, xh, rt);
    }
    rows
}

/// Rounds `x` to F16 (to nearest, ties to even, as ggml's conversion): bits into `xh`, values
/// into `xr`.
pub(crate) fn round_to_f16(x: &[f32], xh: &mut [u16], xr: &mut [f32]) {
    use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};
    let h: &mut [half::f16] = xh.reinterpret_cast_mut();
    h.convert_from_f32_slice(x);
    h.convert_to_f32_slice(xr);
}

/// Rows per parallel task: a few tasks per thread for balance, at least 16 rows each.
fn rows_per_task(rows: usize) -> usize {
    let tasks = rayon::current_num_threads() * 4;
    rows.div_ceil(tasks).next_multiple_of(16).max(16)
}

/// Runs `f` over every row of `w` in parallel.
fn par_rows(f: GemvFn, w: &Matrix<'_>, act: &GemvAct<'_>, out: &mut [f32]) {
    let rb = w.row_bytes();
    let chunk = rows_per_task(w.rows);
    out.par_chunks_mut(chunk).enumerate().for_each(|(i, o)| {
        let r0 = i * chunk;
        let rows = &w.data[r0 * rb..(r0 + o.len()) * rb];
        // SAFETY: the table's kernels run on this CPU (Kernels::get); `rows` holds exactly
        // o.len() rows of rb bytes and `act` is in the layout this table asks for.
        unsafe { f(rows, rb, w.cols, act, o) };
    });
}

/// One GEMV per token.
pub(crate) fn run(k: &Kernels, w: &Matrix<'_>, x: &[f32], n_tokens: usize, out: &mut [f32], s: &mut MatmulScratch) {
    let cols = w.cols;
    let Some(f) = k.quant.gemv.get(w.ty) else {
        // Q8_1 / Q8_K weights: only the scalar reference handles them.
        let dot_ty = quill_quant::dot_type(w.ty).expect("Matrix::new checked the type");
        let rb = quill_quant::row_bytes(dot_ty, cols).expect("whole blocks");
        let q = s.q_rows(n_tokens, rb);
        quantize_rows(k, dot_ty, x, cols, q, rb);
        for (qt, ot) in q.chunks_exact(rb).zip(out.chunks_exact_mut(w.rows)) {
            ot.par_chunks_mut(rows_per_task(w.rows)).enumerate().for_each(|(i, o)| {
                let r0 = i * rows_per_task(w.rows);
                let rows = &w.data[r0 * w.row_bytes()..(r0 + o.len()) * w.row_bytes()];
                crate::scalar::gemv_any(w.ty, rows, w.row_bytes(), qt, o);
            });
        }
        return;
    };
    let Some(spec) = quant_spec(w.ty) else {
        if w.ty == GgmlType::F16 {
            let (xh, xr) = f16_rows(s, 1, cols);
            for (xt, ot) in x.chunks_exact(cols).zip(out.chunks_exact_mut(w.rows)) {
                round_to_f16(xt, xh, xr);
                par_rows(f, w, &GemvAct { x: xr, xh, q: &[], blocks: None, p32: &[] }, ot);
            }
            return;
        }
        for (xt, ot) in x.chunks_exact(cols).zip(out.chunks_exact_mut(w.rows)) {
            par_rows(f, w, &GemvAct { x: xt, xh: &[], q: &[], blocks: None, p32: &[] }, ot);
        }
        return;
    };
    let rb = quill_quant::row_bytes(spec.act, cols).expect("whole blocks");
    let layout = k.quant.layout;
    if layout == ActLayout::Blocks {
        s.reserve(1, cols);
    }
    let MatmulScratch { q, qs, dx, corr, sx, p32, .. } = s;
    grow(q, (n_tokens * rb).div_ceil(64));
    let q = &mut crate::act::units_as_bytes_mut(q)[..n_tokens * rb];
    quantize_rows(k, spec.act, x, cols, q, rb);
    for (qt, ot) in q.chunks_exact(rb).zip(out.chunks_exact_mut(w.rows)) {
        let mut act = GemvAct { x: &[], xh: &[], q: qt, blocks: None, p32: &[] };
        match layout {
            ActLayout::Ggml => {}
            ActLayout::Blocks => {
                let blocks = ActBlocks::pack(&spec, cols, 1, qt, qs, dx, corr, sx);
                if reads_p32(k, spec.ty) {
                    let p = &mut p32[..cols.next_multiple_of(64)];
                    pack_p32(blocks.qs, p);
                    act.p32 = p;
                }
                act.blocks = Some(blocks);
            }
        }
        par_rows(f, w, &act, ot);
    }
}

/// Quantized weights against a few tokens with the backend's step kernel (each weight block
/// decoded once for several tokens, in the GEMV's order), rows split across threads as in
/// [`run`].
pub(crate) fn run_step(
    k: &Kernels,
    step: StepQFn,
    w: &Matrix<'_>,
    x: &[f32],
    n_tokens: usize,
    out: &mut [f32],
    s: &mut MatmulScratch,
) {
    let spec = quant_spec(w.ty).expect("the caller checked the format");
    let (cols, rows, rb) = (w.cols, w.rows, w.row_bytes());
    let q_rb = quill_quant::row_bytes(spec.act, cols).expect("whole blocks");
    s.reserve(n_tokens, cols);
    let pk = cols.next_multiple_of(64);
    if s.p32.len() < n_tokens * pk {
        // More tokens than `STEP_MAX_TOKENS` (no table asks for that): grown here, once.
        s.p32.resize(n_tokens * pk, 0);
    }
    let MatmulScratch { q, qs, dx, corr, sx, p32, .. } = s;
    grow(q, (n_tokens * q_rb).div_ceil(64));
    let q = &mut crate::act::units_as_bytes_mut(q)[..n_tokens * q_rb];
    quantize_rows(k, spec.act, x, cols, q, q_rb);
    let act = ActBlocks::pack(&spec, cols, n_tokens, q, qs, dx, corr, sx);
    let p32 = &mut p32[..n_tokens * pk];
    if reads_p32(k, spec.ty) {
        for (t, p) in p32.chunks_exact_mut(pk).enumerate() {
            pack_p32(&act.qs[t * cols..(t + 1) * cols], p);
        }
    }
    let optr = OutPtr(out.as_mut_ptr());
    let per_task = rows_per_task(rows);
    (0..rows.div_ceil(per_task)).into_par_iter().for_each(|i| {
        let (r0, r1) = (i * per_task, ((i + 1) * per_task).min(rows));
        // SAFETY: the table's kernel runs on this CPU (Kernels::get); it gets whole rows r0..r1
        // and the activation in the block layout, and writes columns r0..r1 of the n_tokens
        // rows of `out` (asserted by matmul), which no other task writes.
        unsafe { step(w.ty, &w.data[r0 * rb..r1 * rb], rb, cols, &act, p32, optr.col(r0), rows) };
    });
}
