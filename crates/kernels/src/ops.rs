//! Element-wise and row operations of the GPT-2 graph, through the process-wide kernels.

use quill_quant::BlockQ8_0;

use crate::Kernels;

impl Kernels {
    /// `x` (whole blocks of 32) as ggml's Q8_0 blocks, bit-exact with `quill_quant`'s reference
    /// (llama.cpp's) for finite inputs: how a Q8_0 KV cache stores each new key and value.
    pub fn quantize_q8_0(&self, x: &[f32], out: &mut [BlockQ8_0]) {
        assert_eq!(x.len(), out.len() * 32, "quantize_q8_0: {} elements for {} blocks", x.len(), out.len());
        // SAFETY: the table's kernels run on this CPU (Kernels::get); lengths checked above.
        unsafe { (self.quant.q8_0)(x, out) }
    }

    /// [`layer_norm`] with this table's kernels.
    pub fn layer_norm(&self, x: &[f32], w: &[f32], b: &[f32], eps: f32, out: &mut [f32]) {
        let n = x.len();
        assert!(w.len() == n && b.len() == n && out.len() == n, "layer_norm: lengths differ");
        if n == 0 {
            return;
        }
        // SAFETY: the table's kernels run on this CPU (Kernels::get); lengths checked above.
        unsafe { (self.ops.layer_norm)(x, w, b, eps, out) }
    }

    /// [`gelu`] with this table's kernels.
    pub fn gelu(&self, x: &mut [f32]) {
        // SAFETY: the table's kernels run on this CPU (Kernels::get).
        unsafe { (self.ops.gelu)(x) }
    }

    /// [`softmax`] with this table's kernels.
    pub fn softmax(&self, x: &mut [f32]) {
        // SAFETY: the table's kernels run on this CPU (Kernels::get).
        unsafe { (self.ops.softmax)(x) }
    }

    /// [`add_assign`] with this table's kernels.
    pub fn add_assign(&self, dst: &mut [f32], src: &[f32]) {
        assert_eq!(dst.len(), src.len(), "add_assign: lengths differ");
        // SAFETY: the table's kernels run on this CPU (Kernels::get); lengths checked above.
        unsafe { (self.ops.add_assign)(dst, src) }
    }

    /// [`add_bias`] with this table's kernels.
    pub fn add_bias(&self, rows: &mut [f32], bias: &[f32]) {
        assert_eq!(rows.len() % bias.len().max(1), 0, "add_bias: not whole rows");
        for row in rows.chunks_exact_mut(bias.len()) {
            self.add_assign(row, bias);
        }
    }
}

/// `out = (x - mean) / sqrt(var + eps) * w + b` over one row.
pub fn layer_norm(x: &[f32], w: &[f32], b: &[f32], eps: f32, out: &mut [f32]) {
    Kernels::active().layer_norm(x, w, b, eps, out)
}

/// GPT-2's GELU (tanh approximation), in place, computed as `u / (1 + exp(-2z))`,
/// `z = sqrt(2/pi) (u + 0.044715 u^3)` (the same function, without the cancellation of
/// `1 + tanh(z)` for negative `u`). Relative error against f64: below 1e-6 for `u >= -3`; below
/// that the f32 rounding of the argument `2z` dominates (a few `|2z| 2^-24`, 1.3e-5 at
/// `u = -10` where the result is below 1e-20).
pub fn gelu(x: &mut [f32]) {
    Kernels::active().gelu(x)
}

/// Numerically stable softmax in place.
pub fn softmax(x: &mut [f32]) {
    Kernels::active().softmax(x)
}

/// `dst += src`.
pub fn add_assign(dst: &mut [f32], src: &[f32]) {
    Kernels::active().add_assign(dst, src)
}

/// Adds `bias` to every row of `rows` (row length = `bias.len()`).
pub fn add_bias(rows: &mut [f32], bias: &[f32]) {
    Kernels::active().add_bias(rows, bias)
}
