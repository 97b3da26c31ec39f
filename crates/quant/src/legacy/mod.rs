//! The legacy 32-element block formats: Q4_0, Q4_1, Q5_0, Q5_1 (weights) and Q8_0, Q8_1 (their
//! activation formats, Q8_0 also a weight format).

mod q4;
mod q5;
mod q8;

pub use q4::{BlockQ4_0, BlockQ4_1, Q4_0, Q4_1};
pub use q5::{BlockQ5_0, BlockQ5_1, Q5_0, Q5_1};
pub use q8::{BlockQ8_0, BlockQ8_1, Q8_0, Q8_1};

/// Elements per legacy block (ggml-common.h `QK4_0`, `QK4_1`, `QK5_0`, `QK5_1`, `QK8_0`,
/// `QK8_1`).
pub const QK: usize = 32;

/// C's float -> int conversion as gcc emits it on x86-64 (`cvttss2si`): truncation toward zero,
/// and the "integer indefinite" `i32::MIN` for NaN or out-of-range values. ggml's quantizers
/// convert with casts like `(int8_t)(x + 8.5f)`, which is this followed by keeping the low byte;
/// only non-finite or absurd inputs ever reach the out-of-range case.
#[inline]
pub(crate) fn c_f32_to_i32(v: f32) -> i32 {
    if v.is_nan() || !(-2_147_483_648.0..2_147_483_648.0).contains(&v) {
        i32::MIN
    } else {
        v as i32
    }
}

/// `(int8_t)v` for a float `v`, as gcc does it on x86-64.
#[inline]
pub(crate) fn c_f32_to_i8(v: f32) -> i8 {
    c_f32_to_i32(v) as i8
}

#[cfg(test)]
pub(crate) mod test_util {
    /// Deterministic test rows in the shapes that break quantizers: zeros, one value repeated,
    /// tiny, huge, one outlier, all positive, all negative, mixed signs.
    pub fn tricky_rows(n: usize) -> Vec<Vec<f32>> {
        let wave = |i: usize| ((i as f32 * 0.731).sin() + (i as f32 * 0.117).cos()) * 0.5;
        let mut rows = vec![
            vec![0.0; n],
            vec![0.25; n],
            vec![-3.0; n],
            (0..n).map(|i| wave(i) * 1e-30).collect(),
            (0..n).map(|i| wave(i) * 1e30).collect(),
            (0..n).map(|i| if i % 17 == 3 { 40.0 } else { wave(i) }).collect(),
            (0..n).map(|i| wave(i).abs() + 0.01).collect(),
            (0..n).map(|i| -wave(i).abs() - 0.5).collect(),
            (0..n).map(wave).collect(),
            (0..n).map(|i| if i % 2 == 0 { 1.0 } else { -1.0 }).collect(),
        ];
        rows.push((0..n).map(|i| i as f32 - n as f32 / 2.0).collect());
        rows
    }
}
