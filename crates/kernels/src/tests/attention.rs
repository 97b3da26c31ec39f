//! Attention of every SIMD backend (decode and blocked prefill; F32, F16 and Q8_0 caches)
//! against the scalar reference (one key at a time). The tolerance covers f32 rounding of the
//! scores, exponentials and sums: 2e-5 of the largest |value|. A Q8_0 cache is read as the
//! exact products of scale and code by every backend, so it takes the same tolerance.

use half::f16;
use proptest::prelude::*;
use quill_quant::{BlockFormat, BlockQ8_0, Q8_0};

use super::{scalar, simd_tables, Rng};
use crate::{AttnScratch, KvSlice};

#[allow(clippy::too_many_arguments)]
fn check(n_head: usize, hd: usize, pos0: usize, n_tok: usize, seed: u64) {
    let mut rng = Rng::new(seed);
    let e = n_head * hd;
    let n_kv = pos0 + n_tok;
    let q: Vec<f32> = (0..n_tok * e).map(|_| rng.f() * 3.0).collect();
    let k: Vec<f32> = (0..n_kv * e).map(|_| rng.f() * 3.0).collect();
    let v: Vec<f32> = (0..n_kv * e).map(|_| rng.f() * 2.0).collect();
    let (k16, v16): (Vec<f16>, Vec<f16>) =
        (k.iter().map(|&x| f16::from_f32(x)).collect(), v.iter().map(|&x| f16::from_f32(x)).collect());
    let q8 = |x: &[f32]| {
        let mut b = vec![BlockQ8_0 { d: f16::ZERO, qs: [0; 32] }; x.len() / 32];
        Q8_0::quantize_row(x, &mut b);
        b
    };
    let (k8, v8) = if hd.is_multiple_of(32) { (q8(&k), q8(&v)) } else { (vec![], vec![]) };
    let mut caches = vec![("f32", KvSlice::F32(&k), KvSlice::F32(&v)), ("f16", KvSlice::F16(&k16), KvSlice::F16(&v16))];
    if hd.is_multiple_of(32) {
        caches.push(("q8_0", KvSlice::Q8_0(&k8), KvSlice::Q8_0(&v8)));
    }
    for (ty, ks, vs) in caches {
        let mut want = vec![0f32; n_tok * e];
        scalar().attention(&q, ks, vs, pos0, n_tok, n_head, hd, &mut want, &mut AttnScratch::new(n_head, n_kv));
        for kt in simd_tables() {
            let mut got = vec![f32::NAN; n_tok * e];
            kt.attention(&q, ks, vs, pos0, n_tok, n_head, hd, &mut got, &mut AttnScratch::new(n_head, n_kv + 3));
            for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= 2e-5 * 2.0,
                    "{:?} {ty} heads {n_head} hd {hd} pos0 {pos0} n_tok {n_tok}: [{}][{}] {g} vs {w}",
                    kt.backend(),
                    i / e,
                    i % e
                );
            }
        }
    }
}

#[test]
fn gpt2_shapes() {
    check(12, 64, 0, 1, 1);
    check(12, 64, 100, 1, 2);
    check(12, 64, 0, 70, 3);
    check(12, 64, 37, 33, 4);
    check(25, 64, 1000, 1, 5);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn random_shapes(seed in any::<u64>(), n_head in 1usize..5, hdi in 0usize..7, pos0 in 0usize..90, n_tok in 1usize..50) {
        let hd = [64, 16, 8, 24, 5, 32, 96][hdi];
        check(n_head, hd, pos0, n_tok, seed);
    }
}
