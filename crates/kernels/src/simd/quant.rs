//! Activation quantizers, bit-exact with `quill_quant`'s references (ggml-quants.c
//! `quantize_row_q8_0_ref`, `_q8_1_ref`, `_q8_K_ref`) for finite inputs: the scale from the
//! block's largest magnitude, codes rounded half away from zero (Q8_0, Q8_1, like `roundf`) or
//! half to even (Q8_K, like ggml's `nearest_int`). Sums of codes are sums of small integers
//! held in f32, exact in any order.

use quill_quant::{BlockQ8_0, BlockQ8_1, BlockQ8_K};

use super::Simd;

/// One 32-element block: writes its codes, returns its scale and the sum of its codes.
#[inline(always)]
unsafe fn q8_block<S: Simd>(x: *const f32, qs: *mut i8) -> (f32, f32) {
    let l = S::LANES;
    let mut m = S::zero();
    for j in (0..32).step_by(l) {
        m = S::max(m, S::abs(S::load(x.add(j))));
    }
    let d = S::hmax(m) / 127.0;
    let id = S::splat(if d != 0.0 { 1.0 / d } else { 0.0 });
    let mut sum = S::zero();
    for j in (0..32).step_by(l) {
        let q = S::round_away(S::mul(S::load(x.add(j)), id));
        sum = S::add(sum, q);
        S::store_i8(qs.add(j), q);
    }
    (d, S::hsum(sum))
}

#[inline(always)]
pub(crate) unsafe fn q8_0<S: Simd>(x: &[f32], out: &mut [BlockQ8_0]) {
    debug_assert_eq!(x.len(), out.len() * 32);
    for (i, b) in out.iter_mut().enumerate() {
        let (d, _) = q8_block::<S>(x.as_ptr().add(32 * i), b.qs.as_mut_ptr());
        b.d = half::f16::from_f32(d);
    }
}

#[inline(always)]
pub(crate) unsafe fn q8_1<S: Simd>(x: &[f32], out: &mut [BlockQ8_1]) {
    debug_assert_eq!(x.len(), out.len() * 32);
    for (i, b) in out.iter_mut().enumerate() {
        let (d, sum) = q8_block::<S>(x.as_ptr().add(32 * i), b.qs.as_mut_ptr());
        b.d = half::f16::from_f32(d);
        b.s = half::f16::from_f32(sum * d);
    }
}

#[inline(always)]
pub(crate) unsafe fn q8_k<S: Simd>(x: &[f32], out: &mut [BlockQ8_K]) {
    debug_assert_eq!(x.len(), out.len() * 256);
    let l = S::LANES;
    for (i, b) in out.iter_mut().enumerate() {
        let xb = x.as_ptr().add(256 * i);
        let mut m = S::zero();
        for j in (0..256).step_by(l) {
            m = S::max(m, S::abs(S::load(xb.add(j))));
        }
        let amax = S::hmax(m);
        if amax == 0.0 {
            *b = bytemuck::Zeroable::zeroed();
            continue;
        }
        // The first element of largest magnitude, with its sign.
        let max = (0..256).map(|j| *xb.add(j)).find(|v| v.abs() == amax).unwrap_or(amax);
        let iscale = -127.0 / max;
        let vs = S::splat(iscale);
        for j in 0..16 {
            let mut sum = S::zero();
            for e in (16 * j..16 * j + 16).step_by(l) {
                let q = S::min(S::round(S::mul(vs, S::load(xb.add(e)))), S::splat(127.0));
                sum = S::add(sum, q);
                S::store_i8(b.qs.as_mut_ptr().add(e), q);
            }
            b.bsums[j] = S::hsum(sum) as i16;
        }
        b.d = 1.0 / iscale;
    }
}
