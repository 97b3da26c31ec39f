//! The SIMD activation quantizers give quill_quant's reference bytes (ggml's), for finite
//! inputs, including ties that round away from zero and blocks whose extremes tie in magnitude.

use gguf_file::GgmlType;
use proptest::prelude::*;

use super::{simd_tables, Rng};
use crate::act::{units_as_bytes_mut, A64};
use crate::gemv::quantize_row;

fn reference(ty: GgmlType, x: &[f32]) -> Vec<u8> {
    let mut q = vec![0u8; quill_quant::row_bytes(ty, x.len()).unwrap()];
    quill_quant::quantize(ty, x, x.len(), &mut q).unwrap();
    q
}

fn check_row(x: &[f32]) {
    for k in simd_tables() {
        for ty in [GgmlType::Q8_0, GgmlType::Q8_1, GgmlType::Q8_K] {
            if !x.len().is_multiple_of(ty.block_size() as usize) {
                continue;
            }
            let n = quill_quant::row_bytes(ty, x.len()).unwrap();
            let mut buf = vec![A64::ZERO; n.div_ceil(64)];
            let got = &mut units_as_bytes_mut(&mut buf)[..n];
            quantize_row(k, ty, x, got);
            assert_eq!(&got[..], &reference(ty, x)[..], "{:?} {ty}", k.backend());
        }
    }
}

#[test]
fn ties_zeros_and_symmetric_extremes() {
    let mut x = vec![0.0f32; 512];
    check_row(&x);
    // amax 127 -> d = 1: halves round away from zero.
    for (i, v) in x.iter_mut().enumerate() {
        *v = (i % 64) as f32 * 0.5 - 16.0;
    }
    x[0] = 127.0;
    x[32] = -127.0;
    x[256] = 127.0;
    x[300] = -127.0; // Q8_K: +127 comes first, so it sets the sign
    check_row(&x);
    x[256] = -127.0;
    x[300] = 127.0;
    check_row(&x);
    let tiny: Vec<f32> = (0..256).map(|i| (i as f32 - 100.0) * 1e-30).collect();
    check_row(&tiny);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_rows_match_the_reference(seed in any::<u64>(), blocks in 1usize..12, scale in -20i32..20) {
        let mut rng = Rng::new(seed);
        let s = 2f32.powi(scale);
        let x: Vec<f32> = (0..256 * blocks).map(|_| rng.f() * s).collect();
        check_row(&x);
        check_row(&x[..32 * (blocks + 1)]);
    }
}
