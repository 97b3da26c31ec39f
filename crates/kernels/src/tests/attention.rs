//! Attention of every SIMD backend (decode and blocked prefill, F32 and F16 caches) against the
//! scalar reference (one key at a time). The tolerance covers f32 rounding of the scores,
//! exponentials and sums: 2e-5 of the largest |value|.

use half::f16;
use proptest::prelude::*;

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
    for half in [false, true] {
        let (ks, vs) =
            if half { (KvSlice::F16(&k16), KvSlice::F16(&v16)) } else { (KvSlice::F32(&k), KvSlice::F32(&v)) };
        let mut want = vec![0f32; n_tok * e];
        scalar().attention(&q, ks, vs, pos0, n_tok, n_head, hd, &mut want, &mut AttnScratch::new(n_head, n_kv));
        for kt in simd_tables() {
            let mut got = vec![f32::NAN; n_tok * e];
            kt.attention(&q, ks, vs, pos0, n_tok, n_head, hd, &mut got, &mut AttnScratch::new(n_head, n_kv + 3));
            for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= 2e-5 * 2.0,
                    "{:?} f16={half} heads {n_head} hd {hd} pos0 {pos0} n_tok {n_tok}: [{}][{}] {g} vs {w}",
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
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn random_shapes(seed in any::<u64>(), n_head in 1usize..5, hdi in 0usize..5, pos0 in 0usize..90, n_tok in 1usize..50) {
        let hd = [64, 16, 8, 24, 5][hdi];
        check(n_head, hd, pos0, n_tok, seed);
    }
}
