//! GEMM (prefill): weights decoded once per matmul into panels of `nr` rows, each panel swept
//! against every token by a register-tiled micro-kernel; activations quantized once per matmul.
//! Panels are split across threads; each thread keeps its panel buffer between calls.

use std::cell::RefCell;

use rayon::prelude::*;

use crate::act::{pack_blocks, ActBlocks};
use crate::formats::{is_float, quant_spec};
use crate::gemv::quantize_rows;
use crate::panel::{Panel, PanelKind};
use crate::{Kernels, MatmulScratch, Matrix};

thread_local! {
    static PANEL: RefCell<Panel> = const { RefCell::new(Panel::new()) };
}

/// The output pointer shared by panel tasks, which write disjoint columns.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: only dereferenced by panel tasks that write pairwise disjoint columns of `out`.
unsafe impl Send for OutPtr {}
// SAFETY: as above; never read through shared references.
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// The pointer to column `r0` of row 0.
    fn col(self, r0: usize) -> *mut f32 {
        // SAFETY: callers pass r0 < rows, inside the asserted `out` buffer.
        unsafe { self.0.add(r0) }
    }
}

pub(crate) fn run(k: &Kernels, w: &Matrix<'_>, x: &[f32], n_tokens: usize, out: &mut [f32], s: &mut MatmulScratch) {
    let g = k.gemm.as_ref().expect("the caller checked the backend has GEMM kernels");
    let (nr, cols, rows, rb) = (g.nr, w.cols, w.rows, w.row_bytes());
    let unpack = g.unpack.get(w.ty).expect("the caller checked the format");
    let n_panels = rows.div_ceil(nr);
    let optr = OutPtr(out.as_mut_ptr());
    if is_float(w.ty) {
        (0..n_panels).into_par_iter().for_each(|p| {
            PANEL.with_borrow_mut(|panel| {
                let (r0, n) = (p * nr, nr.min(rows - p * nr));
                panel.prepare(PanelKind::F32, nr, cols, None);
                // SAFETY: the table's kernels run on this CPU; the unpacker gets n whole rows;
                // the micro-kernel writes columns r0..r0+n of the n_tokens rows of `out`
                // (asserted n_tokens * rows long by matmul), which no other panel writes.
                unsafe {
                    unpack(&w.data[r0 * rb..(r0 + n) * rb], rb, cols, panel);
                    (g.micro_f32)(panel, x, n_tokens, optr.col(r0), rows, n);
                }
            })
        });
        return;
    }
    let spec = quant_spec(w.ty).expect("the caller checked the format");
    let q_rb = quill_quant::row_bytes(spec.act, cols).expect("whole blocks");
    let n_sb = cols / spec.sblock;
    s.reserve(n_tokens, cols);
    let MatmulScratch { q, qs, dx, corr, sx, .. } = s;
    let q = &mut crate::act::units_as_bytes_mut(q)[..n_tokens * q_rb];
    quantize_rows(k, spec.act, x, cols, q, q_rb);
    let (qs, dx, corr, sx) = (
        &mut qs[..n_tokens * cols],
        &mut dx[..n_tokens * n_sb],
        &mut corr[..n_tokens * n_sb],
        &mut sx[..n_tokens * n_sb],
    );
    q.par_chunks_exact(q_rb)
        .zip(qs.par_chunks_exact_mut(cols))
        .zip(dx.par_chunks_exact_mut(n_sb))
        .zip(corr.par_chunks_exact_mut(n_sb))
        .zip(sx.par_chunks_exact_mut(n_sb))
        .for_each(|((((qt, qst), dxt), ct), sxt)| pack_blocks(&spec, cols, qt, qst, dxt, ct, sxt));
    let act = ActBlocks {
        n_tokens,
        k: cols,
        sblock: spec.sblock,
        n_sb,
        qs,
        dx,
        corr,
        sx: if spec.has_min { sx } else { &[] },
    };
    (0..n_panels).into_par_iter().for_each(|p| {
        PANEL.with_borrow_mut(|panel| {
            let (r0, n) = (p * nr, nr.min(rows - p * nr));
            panel.prepare(g.int_kind, nr, cols, Some(&spec));
            // SAFETY: as for float panels above.
            unsafe {
                unpack(&w.data[r0 * rb..(r0 + n) * rb], rb, cols, panel);
                (g.micro_i8)(panel, &act, optr.col(r0), rows, n);
            }
        })
    });
}
