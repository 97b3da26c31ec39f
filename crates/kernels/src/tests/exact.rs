//! Integer accumulation is exact: with unit weight and activation scales every float in the
//! kernels holds an integer below 2^24, so every backend must return the reference's integer
//! dot product to the last bit, through GEMV and GEMM alike.

use gguf_file::GgmlType;

use super::{scalar, simd_tables, Rng};
use crate::formats::SIMD_QUANT_TYPES;
use crate::{MatmulScratch, Matrix};

const ONE: [u8; 2] = [0x00, 0x3c]; // f16 1.0
const MINUS_THREE: [u8; 2] = [0x00, 0xc2]; // f16 -3.0

/// One block of `ty` with random codes and unit (or small integer) scales.
fn block(ty: GgmlType, rng: &mut Rng) -> Vec<u8> {
    let mut b: Vec<u8> = (0..ty.block_bytes()).map(|_| rng.next_u64() as u8).collect();
    match ty {
        GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => b[..2].copy_from_slice(&ONE),
        GgmlType::Q4_1 | GgmlType::Q5_1 => {
            b[..2].copy_from_slice(&ONE);
            b[2..4].copy_from_slice(&MINUS_THREE);
        }
        GgmlType::Q4_K | GgmlType::Q5_K => {
            b[..2].copy_from_slice(&ONE);
            b[2..4].copy_from_slice(&ONE);
        }
        GgmlType::Q6_K => {
            for s in &mut b[192..208] {
                *s = (rng.below(33) as i8 - 16) as u8;
            }
            b[208..210].copy_from_slice(&ONE);
        }
        other => unreachable!("{other}"),
    }
    b
}

/// Small integers with one +-127 per activation block, so that the activation scale is +-1.
fn activations(n: usize, block: usize, rng: &mut Rng) -> Vec<f32> {
    let mut x: Vec<f32> = (0..n).map(|_| rng.below(17) as f32 - 8.0).collect();
    for b in x.chunks_mut(block) {
        let at = rng.below(b.len() as u64) as usize;
        b[at] = if rng.below(2) == 0 { 127.0 } else { -127.0 };
    }
    x
}

#[test]
fn unit_scales_give_exact_integer_sums() {
    let mut rng = Rng::new(42);
    // Q4_0_8_8 holds Q4_0's blocks (its own test: tests::matmul).
    for &ty in SIMD_QUANT_TYPES.iter().filter(|&&t| t != GgmlType::Q4_0_8_8) {
        let bs = ty.block_size() as usize;
        let act_block = quill_quant::dot_type(ty).unwrap().block_size() as usize;
        for cols in [bs, 3 * bs, 768.max(bs)] {
            let rows = 37;
            let w: Vec<u8> = (0..rows * cols / bs).flat_map(|_| block(ty, &mut rng)).collect();
            let m = Matrix::new(ty, rows, cols, &w).unwrap();
            for n_tokens in [1, 6] {
                let x = activations(n_tokens * cols, act_block, &mut rng);
                let mut want = vec![0f32; n_tokens * rows];
                scalar().matmul(&m, &x, n_tokens, &mut want, &mut MatmulScratch::new());
                assert!(want.iter().all(|v| v.fract() == 0.0 && v.abs() < 1.6e7), "{ty}: not small integers");
                for k in simd_tables() {
                    let mut got = vec![f32::NAN; n_tokens * rows];
                    k.matmul(&m, &x, n_tokens, &mut got, &mut MatmulScratch::new());
                    assert_eq!(got, want, "{:?} {ty} cols {cols} tokens {n_tokens}", k.backend());
                }
            }
        }
    }
}
