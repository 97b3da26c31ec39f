//! Float kernels against f64 references: GELU and exp to their documented relative error,
//! softmax and layer norm within the rounding of their f32 sums, adds exactly.

use proptest::prelude::*;

use super::{simd_tables, Rng};
use crate::{Backend, Kernels};

fn all_tables() -> Vec<&'static Kernels> {
    Backend::supported().filter_map(Kernels::get).collect()
}

/// GPT-2's `0.5 u (1 + tanh(z))` as the equal `u / (1 + exp(-2z))` (in f64 the tanh form
/// itself cancels to 0 for u below about -9).
fn gelu64(u: f64) -> f64 {
    let z = (2.0 / std::f64::consts::PI).sqrt() * (u + 0.044715 * u * u * u);
    let tanh_form = 0.5 * u * (1.0 + z.tanh());
    let sigmoid_form = u / (1.0 + (-2.0 * z).exp());
    assert!((tanh_form - sigmoid_form).abs() <= 1e-12 * (1.0 + u.abs()));
    sigmoid_form
}

/// Relative error below 1e-6 for u >= -3 (|result| >= 0.004; measured: 1.4e-7 for u >= 0,
/// 7.7e-7 on [-3, -2]); below, the f32 roundings of the exponent's argument 2z alone give a
/// relative error of a few |2z| * 2^-24 (the scalar libm path measures the same: 1.3e-5 near
/// u = -10, where |result| < 1e-20).
#[test]
fn gelu_relative_error_below_1e_6() {
    let mut x: Vec<f32> = (-20_000..20_000).map(|i| i as f32 * 1e-3).collect();
    x.extend((0..2000).map(|i| (i as f32 * 0.01 - 10.0).exp2() * if i % 2 == 0 { 1.0 } else { -1.0 }));
    x.extend([0.0, -0.0, 1e-30, -1e-30, 50.0, -50.0, 1e4, -1e4]);
    for k in all_tables() {
        let mut y = x.clone();
        k.gelu(&mut y);
        for (&u, &g) in x.iter().zip(&y) {
            let want = gelu64(f64::from(u));
            if want.abs() < 1e-30 {
                assert!(f64::from(g).abs() < 1e-29, "{:?} gelu({u}) = {g}, want {want}", k.backend());
                continue;
            }
            let rel = (f64::from(g) - want).abs() / want.abs();
            let z = (2.0 / std::f64::consts::PI).sqrt() * (f64::from(u) + 0.044715 * f64::from(u).powi(3));
            let bound = if u >= -3.0 { 1e-6 } else { (2.0 * z.abs() + 4.0) * 2.4e-7 };
            assert!(rel <= bound, "{:?} gelu({u}) = {g}, want {want} (rel {rel:e})", k.backend());
        }
    }
}

#[test]
fn simd_exp_relative_error() {
    let xs: Vec<f32> = (0..200_000).map(|i| -87.0 + i as f32 * (175.0 / 200_000.0)).collect();
    let check = |name: &str, got: &[f32]| {
        for (&x, &g) in xs.iter().zip(got) {
            let want = f64::from(x).exp();
            let rel = (f64::from(g) - want).abs() / want;
            assert!(rel <= 2.5e-7, "{name} exp({x}) = {g}, want {want} (rel {rel:e})");
        }
    };
    let mut got = xs.clone();
    #[cfg(target_arch = "x86_64")]
    {
        if Backend::Avx512.is_supported() {
            // SAFETY: the CPU has AVX-512 (checked above).
            unsafe { crate::arch::x86_avx512::exp_in_place(&mut got) };
            check("avx512", &got);
        }
        if Backend::Avx2.is_supported() {
            got.copy_from_slice(&xs);
            // SAFETY: the CPU has AVX2 + FMA (checked above).
            unsafe { crate::arch::x86_avx2::exp_in_place(&mut got) };
            check("avx2", &got);
        }
    }
    #[cfg(target_arch = "aarch64")]
    if Backend::Neon.is_supported() {
        // SAFETY: the CPU has NEON (checked above).
        unsafe { crate::arch::aarch64_neon::exp_in_place(&mut got) };
        check("neon", &got);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn softmax_matches_f64(seed in any::<u64>(), n in 1usize..300, spread in 0.1f32..60.0) {
        let mut rng = Rng::new(seed);
        let x: Vec<f32> = (0..n).map(|_| rng.f() * spread).collect();
        let max = x.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
        let e: Vec<f64> = x.iter().map(|&v| (f64::from(v) - max).exp()).collect();
        let sum: f64 = e.iter().sum();
        for k in all_tables() {
            let mut y = x.clone();
            k.softmax(&mut y);
            for (&g, &w) in y.iter().zip(&e) {
                let want = w / sum;
                prop_assert!((f64::from(g) - want).abs() <= 2e-6 * want + 1e-12, "{:?} {} vs {}", k.backend(), g, want);
            }
        }
    }

    #[test]
    fn layer_norm_matches_f64(seed in any::<u64>(), n in 1usize..800, offset in -100.0f32..100.0) {
        let mut rng = Rng::new(seed);
        let x: Vec<f32> = (0..n).map(|_| rng.f() * 3.0 + offset).collect();
        let w: Vec<f32> = (0..n).map(|_| rng.f() * 2.0).collect();
        let b: Vec<f32> = (0..n).map(|_| rng.f()).collect();
        let mean = x.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
        let var = x.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n as f64;
        let inv = 1.0 / (var + 1e-5).sqrt();
        for k in all_tables() {
            let mut y = vec![0f32; n];
            k.layer_norm(&x, &w, &b, 1e-5, &mut y);
            for i in 0..n {
                let norm = (f64::from(x[i]) - mean) * inv;
                let want = norm * f64::from(w[i]) + f64::from(b[i]);
                // The f32 mean carries |offset| * 2^-24 * (a few) of error into every element.
                let tol = 1e-5 * (norm.abs() * f64::from(w[i].abs()) + f64::from(b[i].abs()))
                    + 1e-6 * (1.0 + f64::from(offset.abs())) * inv * f64::from(w[i].abs());
                prop_assert!((f64::from(y[i]) - want).abs() <= tol, "{:?} n={} [{}]: {} vs {}", k.backend(), n, i, y[i], want);
            }
        }
    }

    #[test]
    fn adds_are_exact(seed in any::<u64>(), n in 0usize..200) {
        let mut rng = Rng::new(seed);
        let a: Vec<f32> = (0..n).map(|_| rng.f()).collect();
        let b: Vec<f32> = (0..n).map(|_| rng.f()).collect();
        let want: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
        for k in simd_tables() {
            let mut got = a.clone();
            k.add_assign(&mut got, &b);
            prop_assert_eq!(&got, &want);
            if n > 0 {
                let mut rows = [a.clone(), a.clone()].concat();
                k.add_bias(&mut rows, &b);
                prop_assert_eq!(&rows[n..], &want[..]);
            }
        }
    }
}

/// NEON widens f16 with integer arithmetic: exact for every bit pattern (NaNs stay NaN).
#[cfg(target_arch = "aarch64")]
#[test]
fn neon_f16_widening_is_exact() {
    if !Backend::Neon.is_supported() {
        return;
    }
    let bits: Vec<u16> = (0..=u16::MAX).collect();
    for c in bits.chunks_exact(4) {
        let mut out = [0f32; 4];
        // SAFETY: the CPU has NEON (checked above); the chunk holds 4 values.
        unsafe { std::arch::aarch64::vst1q_f32(out.as_mut_ptr(), crate::arch::aarch64_neon::load_f16x4(c.as_ptr())) };
        for (&b, &o) in c.iter().zip(&out) {
            let want = half::f16::from_bits(b).to_f32();
            assert!(o.to_bits() == want.to_bits() || (o.is_nan() && want.is_nan()), "{b:#06x}: {o} vs {want}");
        }
    }
}
