//! Matrix products of every SIMD backend against the scalar reference, for every weight format,
//! at GPT-2 shapes and awkward ones (one row, one block, rows and token counts that fill no
//! tile), through both GEMV (fewer than GEMM_MIN_TOKENS tokens) and GEMM.
//!
//! Tolerance: the integer block sums are exact in both; what differs is the order of the float
//! products and sums, bounded by a few units of f32 rounding (2^-24) per term summed, relative to
//! `sum |w_i x_i|` ([`super::magnitudes`]): 1e-5 of it covers 3072-long rows with margin.

use gguf_file::GgmlType;
use proptest::prelude::*;

use super::{magnitudes, random_matrix, scalar, simd_tables, Rng};
use crate::{MatmulScratch, Matrix};

/// Every format with kernels (the table's one list) but the interleaved Q4_0_8_8, whose rows
/// come in groups of 8 (it has its own test: [`interleaved_q4_0_gives_q4_0_s_bits`]).
const TYPES: [GgmlType; 11] = {
    let mut t = [GgmlType::F32; 11];
    let mut i = 0;
    while i < t.len() {
        t[i] = crate::table::FORMATS[i];
        i += 1;
    }
    assert!(matches!(crate::table::FORMATS[11], GgmlType::Q4_0_8_8));
    t
};

fn check(ty: GgmlType, rows: usize, cols: usize, n_tokens: usize, seed: u64) {
    let mut rng = Rng::new(seed);
    let w = random_matrix(ty, rows, cols, &mut rng);
    let m = Matrix::new(ty, rows, cols, &w).unwrap();
    let x = rng.activations(n_tokens * cols);
    let mut want = vec![0f32; n_tokens * rows];
    scalar().matmul(&m, &x, n_tokens, &mut want, &mut MatmulScratch::new());
    let mags = magnitudes(ty, &w, rows, cols, &x, n_tokens);
    for k in simd_tables() {
        let mut got = vec![f32::NAN; n_tokens * rows];
        let mut scratch = MatmulScratch::new();
        k.matmul(&m, &x, n_tokens, &mut got, &mut scratch);
        for (i, ((&g, &r), &mag)) in got.iter().zip(&want).zip(&mags).enumerate() {
            let tol = 1e-5 * mag + 1e-30;
            assert!(
                (f64::from(g) - f64::from(r)).abs() <= tol,
                "{:?} {ty} {rows}x{cols} x{n_tokens}: out[{}][{}] = {g}, reference {r} (tol {tol:e})",
                k.backend(),
                i / rows,
                i % rows
            );
        }
    }
}

#[test]
fn gpt2_shapes() {
    for ty in TYPES {
        check(ty, 2304, 768, 1, 1);
        check(ty, 768, 3072, 1, 2);
        check(ty, 96, 768, 13, 3);
        check(ty, 64, 3072, 7, 4);
    }
}

#[test]
fn one_row_one_block() {
    for ty in TYPES {
        let bs = ty.block_size() as usize;
        for n_tokens in [1, 2, 4, 5] {
            check(ty, 1, bs, n_tokens, 5);
            check(ty, 3, bs.max(32), n_tokens, 6);
        }
    }
}

/// Rows longer than the GEMV's buffered segment (512 scale blocks): the float chain carries on
/// across segments.
#[test]
fn rows_longer_than_a_segment() {
    for ty in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q6_K, GgmlType::Q4_K] {
        let cols = if ty.block_size() == 256 { 256 * 33 } else { 32 * 530 };
        for n_tokens in [1, 2, 3, 5] {
            check(ty, 9, cols, n_tokens, 8);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn random_shapes(seed in any::<u64>(), ti in 0usize..11, rows in 1usize..80, blocks in 1usize..13, n_tokens in 1usize..20) {
        let ty = TYPES[ti];
        let cols = match ty.block_size() {
            1 => blocks * 23 + seed as usize % 7,
            32 => blocks * 32,
            _ => (blocks % 4 + 1) * 256,
        };
        check(ty, rows, cols, n_tokens, seed);
    }
}

/// GEMM (prefill) gives each token the result GEMV (decode) gives it alone, on every backend:
/// for F16 weights both multiply the F16-rounded activation.
#[test]
fn gemm_rows_equal_gemv_per_token() {
    let (rows, cols, n_tokens) = (67, 1600 + 32, 9);
    for ty in TYPES {
        let cols = if ty.block_size() == 256 { 1792 } else { cols };
        let mut rng = Rng::new(11);
        let w = random_matrix(ty, rows, cols, &mut rng);
        let m = Matrix::new(ty, rows, cols, &w).unwrap();
        let x = rng.activations(n_tokens * cols);
        let mags = magnitudes(ty, &w, rows, cols, &x, n_tokens);
        for k in simd_tables().into_iter().chain([scalar()]) {
            let mut all = vec![0f32; n_tokens * rows];
            k.matmul(&m, &x, n_tokens, &mut all, &mut MatmulScratch::new());
            let mut one = vec![0f32; rows];
            for t in 0..n_tokens {
                k.matmul(&m, &x[t * cols..(t + 1) * cols], 1, &mut one, &mut MatmulScratch::new());
                for r in 0..rows {
                    let (g, o, mag) = (all[t * rows + r], one[r], mags[t * rows + r]);
                    assert!(
                        (f64::from(g) - f64::from(o)).abs() <= 1e-5 * mag + 1e-30,
                        "{:?} {ty}: token {t} row {r}: gemm {g}, gemv {o}",
                        k.backend()
                    );
                }
            }
        }
    }
}

/// With a row-invariant scratch, every output row is bit for bit what that row gives alone,
/// whatever the number of rows beside it and the number of threads, on every backend: what a
/// multi-sequence engine needs for a sequence's tokens not to depend on its batch.
#[test]
fn row_invariant_matmul_ignores_batch_and_threads() {
    let rows = 83;
    let pools: Vec<rayon::ThreadPool> =
        [1, 3].iter().map(|&n| rayon::ThreadPoolBuilder::new().num_threads(n).build().unwrap()).collect();
    for ty in TYPES {
        let cols = if ty.block_size() == 256 { 768 } else { 800 };
        let mut rng = Rng::new(5);
        let w = random_matrix(ty, rows, cols, &mut rng);
        let m = Matrix::new(ty, rows, cols, &w).unwrap();
        let x = rng.activations(17 * cols);
        for k in simd_tables().into_iter().chain([scalar()]) {
            let run = |pool: &rayon::ThreadPool, xs: &[f32]| {
                let n = xs.len() / cols;
                let mut out = vec![f32::NAN; n * rows];
                let mut s = MatmulScratch::new();
                s.set_row_invariant(true);
                pool.install(|| k.matmul(&m, xs, n, &mut out, &mut s));
                out
            };
            let alone: Vec<Vec<f32>> = (0..17).map(|t| run(&pools[0], &x[t * cols..(t + 1) * cols])).collect();
            for pool in &pools {
                for n in [1, 2, 3, 4, 5, 7, 17] {
                    let got = run(pool, &x[(17 - n) * cols..]);
                    for t in 0..n {
                        let want = &alone[17 - n + t];
                        let row = &got[t * rows..(t + 1) * rows];
                        for r in 0..rows {
                            assert_eq!(
                                row[r].to_bits(),
                                want[r].to_bits(),
                                "{:?} {ty}: {n} rows, {} threads: row {t} out[{r}] = {}, alone {}",
                                k.backend(),
                                pool.current_num_threads(),
                                row[r],
                                want[r]
                            );
                        }
                    }
                }
            }
        }
    }
}

/// A decode step of any width: every token row of an m-row product (m = 1..=9, 16, 33, 64 and
/// a prefill-sized 70, across the switches from one GEMV per token or the panel-free float
/// kernel to GEMM) gets bit for bit what it gets alone (row-invariant), for every weight format
/// on every backend; and where a backend's one-token products sum in the GEMM's order, also
/// what the plain GEMV gives it
/// (`crate::order`), and matches the scalar reference within rounding on all of them. The
/// activations are the same rows in every call, so the check is on the row, not the data.
#[test]
fn decode_steps_of_every_width_equal_each_row_alone() {
    let rows = 37;
    for ty in TYPES {
        let cols = match ty.block_size() {
            1 => 101,
            32 => 96,
            _ => 512,
        };
        let mut rng = Rng::new(21);
        let w = random_matrix(ty, rows, cols, &mut rng);
        let m = Matrix::new(ty, rows, cols, &w).unwrap();
        let x = rng.activations(70 * cols);
        for k in simd_tables().into_iter().chain([scalar()]) {
            let one = |t: usize, invariant: bool| {
                let mut o = vec![f32::NAN; rows];
                let mut s = MatmulScratch::new();
                s.set_row_invariant(invariant);
                k.matmul(&m, &x[t * cols..(t + 1) * cols], 1, &mut o, &mut s);
                o
            };
            let alone: Vec<Vec<f32>> = (0..70).map(|t| one(t, true)).collect();
            if k.one_token_matches(ty) {
                // Then the plain one-token product (a single stream's decode) is the same too.
                for t in [0, 33, 69] {
                    let plain: Vec<u32> = one(t, false).iter().map(|v| v.to_bits()).collect();
                    let inv: Vec<u32> = alone[t].iter().map(|v| v.to_bits()).collect();
                    assert_eq!(plain, inv, "{:?} {ty}: token {t} alone, GEMV vs row-invariant", k.backend());
                }
            }
            for n in (1..=9).chain([16, 33, 64, 70]) {
                let mut got = vec![f32::NAN; n * rows];
                let mut s = MatmulScratch::new();
                s.set_row_invariant(true);
                k.matmul(&m, &x[..n * cols], n, &mut got, &mut s);
                for t in 0..n {
                    for r in 0..rows {
                        assert_eq!(
                            got[t * rows + r].to_bits(),
                            alone[t][r].to_bits(),
                            "{:?} {ty}: {n} rows: row {t} out[{r}] = {}, alone {}",
                            k.backend(),
                            got[t * rows + r],
                            alone[t][r]
                        );
                    }
                }
            }
        }
    }
}

/// Q4_0 interleaved by 8 rows gives every backend's Q4_0 bits, at every width, row-invariant or
/// not (its own GEMV and step kernels, the GEMM through de-interleaved panels), on rows of an
/// odd number of blocks and rows longer than a GEMV segment; `dequantize_row` reads its rows.
#[test]
fn interleaved_q4_0_gives_q4_0_s_bits() {
    use quill_quant::interleave::interleave_q4_0x8;
    for (rows, cols) in [(8, 32), (16, 96), (24, 160), (64, 768), (40, 32 * 530)] {
        let mut rng = Rng::new(rows as u64 + cols as u64);
        let q4 = random_matrix(GgmlType::Q4_0, rows, cols, &mut rng);
        let mut il = vec![0u8; q4.len()];
        interleave_q4_0x8(&q4, cols, &mut il).unwrap();
        let a = Matrix::new(GgmlType::Q4_0, rows, cols, &q4).unwrap();
        let b = Matrix::new(GgmlType::Q4_0_8_8, rows, cols, &il).unwrap();
        for k in simd_tables().into_iter().chain([scalar()]) {
            for n_tokens in [1, 2, 3, 4, 5, 7, 9, 16, 20] {
                let x = rng.activations(n_tokens * cols);
                for invariant in [false, true] {
                    let mut out = [vec![0f32; n_tokens * rows], vec![0f32; n_tokens * rows]];
                    for (m, o) in [a, b].iter().zip(&mut out) {
                        let mut s = MatmulScratch::new();
                        s.set_row_invariant(invariant);
                        k.matmul(m, &x, n_tokens, o, &mut s);
                    }
                    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                    assert_eq!(
                        bits(&out[1]),
                        bits(&out[0]),
                        "{:?} {rows}x{cols} x{n_tokens} invariant {invariant}",
                        k.backend()
                    );
                }
            }
        }
        let (mut want, mut got) = (vec![0f32; cols], vec![0f32; cols]);
        for r in [0, 5, rows - 1] {
            a.dequantize_row(r, &mut want);
            b.dequantize_row(r, &mut got);
            assert_eq!(got, want, "row {r}");
        }
    }
    let err = Matrix::new(GgmlType::Q4_0_8_8, 12, 32, &[0u8; 12 * 18]).unwrap_err();
    assert_eq!(err, crate::KernelError::PartialGroup { ty: GgmlType::Q4_0_8_8, rows: 12, group: 8 });
}
