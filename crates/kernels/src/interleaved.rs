//! Interleaved weights (`Q4_0_8_8`, `quill_quant::interleave`) on backends without a kernel of
//! their own for them (scalar, NEON): each group of 8 rows de-interleaved into a per-thread
//! buffer, then the backend's Q4_0 GEMV on those rows, so that the file gives the bits of its
//! Q4_0 original on that backend too.

use std::cell::RefCell;

use quill_quant::interleave::{deinterleave_group, GROUP_ROWS};

use crate::act::GemvAct;
use crate::table::GemvFn;

thread_local! {
    /// One group's Q4_0 rows (grown once per thread and row length, so warm decodes do not
    /// allocate).
    static ROWS: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Calls `f(rows, r0)` for every group of 8 interleaved rows of `w` (whole groups of `rb`-byte
/// rows), `rows` the group's Q4_0 rows de-interleaved and `r0` its first row.
pub(crate) fn for_each_group(w: &[u8], rb: usize, mut f: impl FnMut(&[u8], usize)) {
    let group = GROUP_ROWS * rb;
    debug_assert!(w.len().is_multiple_of(group));
    ROWS.with_borrow_mut(|buf| {
        if buf.len() < group {
            buf.resize(group, 0);
        }
        let rows = &mut buf[..group];
        for (g, src) in w.chunks_exact(group).enumerate() {
            deinterleave_group(src, rows);
            f(rows, g * GROUP_ROWS);
        }
    });
}

/// The GEMV of interleaved rows `w` (whole groups of 8 rows of `rb` bytes) through `q4_0`, a
/// Q4_0 GEMV of the same table.
///
/// # Safety
/// `q4_0`'s contract: the CPU runs its table, `act` is in its layout, `out` has one element
/// per row of `w`.
pub(crate) unsafe fn gemv_groups(q4_0: GemvFn, w: &[u8], rb: usize, k: usize, act: &GemvAct<'_>, out: &mut [f32]) {
    debug_assert_eq!(out.len() * rb, w.len());
    for_each_group(w, rb, |rows, r0| {
        // SAFETY: this function's contract, for 8 whole Q4_0 rows and their 8 outputs.
        unsafe { q4_0(rows, rb, k, act, &mut out[r0..r0 + GROUP_ROWS]) };
    });
}
