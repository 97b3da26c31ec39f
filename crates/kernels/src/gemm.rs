//! GEMM (prefill): weights decoded once per matmul into panels of `nr` rows, each panel swept
//! against every token by a register-tiled micro-kernel; activations quantized once per matmul.
//! Panels are split across threads; each thread decodes into its own panel buffer, kept in
//! the scratch and sized before the parallel loop, so that warm calls allocate nothing
//! whichever thread steals which panel.

use std::sync::Mutex;

use gguf_file::GgmlType;

use rayon::prelude::*;

use crate::act::ActBlocks;
use crate::formats::{is_float, quant_spec};
use crate::gemv::{quantize_rows, OutPtr};
use crate::panel::{Panel, PanelKind};
use crate::{Kernels, MatmulScratch, Matrix};

pub(crate) fn run(k: &Kernels, w: &Matrix<'_>, x: &[f32], n_tokens: usize, out: &mut [f32], s: &mut MatmulScratch) {
    let g = k.gemm.as_ref().expect("the caller checked the backend has GEMM kernels");
    let (nr, cols, rows, rb) = (g.nr, w.cols, w.rows, w.row_bytes());
    let unpack = g.unpack.get(w.ty).expect("the caller checked the format");
    let n_panels = rows.div_ceil(nr);
    let optr = OutPtr(out.as_mut_ptr());
    let spec = quant_spec(w.ty);
    let kind = if spec.is_some() { g.int_kind } else { PanelKind::F32 };
    if !is_float(w.ty) {
        s.reserve(n_tokens, cols);
    }
    // F16 weights multiply the F16-rounded activation, exactly as GEMV does (so that prefill
    // equals decodes).
    let x = if w.ty == GgmlType::F16 { crate::gemv::f16_rounded(&mut s.xh, &mut s.xr, x, n_tokens, cols) } else { x };
    let MatmulScratch { q, qs, dx, corr, sx, panels, .. } = s;
    let panels = thread_panels(panels, kind, nr, cols, spec.as_ref());
    if is_float(w.ty) {
        (0..n_panels).into_par_iter().for_each(|p| {
            let mut panel = my_panel(panels);
            let (r0, n) = (p * nr, nr.min(rows - p * nr));
            // SAFETY: the table's kernels run on this CPU; the unpacker gets n whole rows;
            // the micro-kernel writes columns r0..r0+n of the n_tokens rows of `out`
            // (asserted n_tokens * rows long by matmul), which no other panel writes.
            unsafe {
                unpack(&w.data[r0 * rb..(r0 + n) * rb], rb, cols, &mut panel);
                (g.micro_f32)(&panel, x, n_tokens, optr.col(r0), rows, n);
            }
        });
        return;
    }
    let spec = spec.expect("the caller checked the format");
    let q_rb = quill_quant::row_bytes(spec.act, cols).expect("whole blocks");
    let q = &mut crate::act::units_as_bytes_mut(q)[..n_tokens * q_rb];
    quantize_rows(k, spec.act, x, cols, q, q_rb);
    let act = ActBlocks::pack(&spec, cols, n_tokens, q, qs, dx, corr, sx);
    (0..n_panels).into_par_iter().for_each(|p| {
        let mut panel = my_panel(panels);
        let (r0, n) = (p * nr, nr.min(rows - p * nr));
        // SAFETY: as for float panels above.
        unsafe {
            unpack(&w.data[r0 * rb..(r0 + n) * rb], rb, cols, &mut panel);
            (g.micro_i8)(&panel, &act, optr.col(r0), rows, n);
        }
    });
}

/// Float weights against a few tokens with the backend's panel-free kernel (`step`), rows split
/// across threads in groups of `nr`; F16 weights multiply the F16-rounded activation, as in
/// [`run`].
pub(crate) fn run_float_step(
    g: &crate::table::GemmKernels,
    step: crate::table::StepF32Fn,
    w: &Matrix<'_>,
    x: &[f32],
    n_tokens: usize,
    out: &mut [f32],
    s: &mut MatmulScratch,
) {
    let (cols, rows, rb) = (w.cols, w.rows, w.row_bytes());
    let x = if w.ty == GgmlType::F16 { crate::gemv::f16_rounded(&mut s.xh, &mut s.xr, x, n_tokens, cols) } else { x };
    let optr = OutPtr(out.as_mut_ptr());
    // A few tasks per thread, whole groups of rows each.
    let per_task = rows.div_ceil(rayon::current_num_threads() * 4).next_multiple_of(g.nr).max(g.nr);
    (0..rows.div_ceil(per_task)).into_par_iter().for_each(|i| {
        let (r0, r1) = (i * per_task, ((i + 1) * per_task).min(rows));
        // SAFETY: the table's kernel runs on this CPU; it gets whole rows r0..r1 and writes
        // columns r0..r1 of the n_tokens rows of `out` (asserted by matmul), which no other
        // task writes.
        unsafe { step(w.ty, &w.data[r0 * rb..r1 * rb], rb, cols, x, n_tokens, optr.col(r0), rows) };
    });
}

/// One panel per pool thread, all sized for this matmul now (so that no thread allocates inside
/// the parallel loop, whichever panels it ends up taking).
fn thread_panels<'p>(
    panels: &'p mut Vec<Mutex<Panel>>,
    kind: PanelKind,
    nr: usize,
    cols: usize,
    spec: Option<&crate::formats::QuantSpec>,
) -> &'p [Mutex<Panel>] {
    let n = rayon::current_num_threads().max(1);
    while panels.len() < n {
        panels.push(Mutex::new(Panel::new()));
    }
    for p in panels.iter_mut().take(n) {
        p.get_mut().unwrap_or_else(|e| e.into_inner()).prepare(kind, nr, cols, spec);
    }
    &panels[..n]
}

/// The calling pool thread's panel (uncontended: each thread locks only its own).
fn my_panel(panels: &[Mutex<Panel>]) -> std::sync::MutexGuard<'_, Panel> {
    let i = rayon::current_thread_index().unwrap_or(0) % panels.len();
    panels[i].lock().unwrap_or_else(|e| e.into_inner())
}
