//! GEMM at GPT-2 124M's layer shapes for F16, Q8_0, Q4_0, Q4_K and Q6_K, reported as
//! multiply-adds per second (criterion's "elements": rows x cols x tokens): 512 tokens (a
//! prefill), and 4, 16 and 64 (a batched decode step of that many sequences; `QUILL_BENCH_TOKENS`
//! picks other counts, comma-separated). Includes quantizing the activations and decoding the
//! weight panels, as in the model. `QUILL_KERNEL` picks the backend.

mod common;

use criterion::{criterion_group, Criterion, Throughput};
use quill::kernels::{MatmulScratch, Matrix};

fn token_counts() -> Vec<usize> {
    std::env::var("QUILL_BENCH_TOKENS")
        .ok()
        .map(|v| v.split(',').filter_map(|t| t.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![512, 64, 16, 4])
}

fn gemm(c: &mut Criterion) {
    let threads = common::init_threads();
    let k = common::kernels();
    for tokens in token_counts() {
        let mut g = c.benchmark_group(format!("gemm/{}/{}t/{tokens}tok", k.backend(), threads));
        g.sample_size(10)
            .warm_up_time(std::time::Duration::from_millis(500))
            .measurement_time(std::time::Duration::from_secs(if tokens >= 256 { 3 } else { 2 }));
        for ty in common::TYPES {
            for &(name, rows, cols) in &common::SHAPES[..4] {
                let w = common::matrix_bytes(ty, rows, cols, 11);
                let m = Matrix::new(ty, rows, cols, &w).unwrap();
                let x = common::activations(tokens * cols, 5);
                let mut out = vec![0f32; tokens * rows];
                let mut scratch = MatmulScratch::with_capacity(tokens, cols);
                g.throughput(Throughput::Elements((rows * cols * tokens) as u64));
                g.bench_function(format!("{ty}/{name}_{rows}x{cols}"), |b| {
                    b.iter(|| k.matmul(&m, &x, tokens, &mut out, &mut scratch))
                });
            }
        }
        g.finish();
    }
}

criterion_group!(benches, gemm);
/// criterion_main!, run on a thread of the pool (as the model runs its forward passes, see
/// `quill_kernels::in_pool`): each matmul then splits its rows without a blocking hand-off.
fn main() {
    common::init_threads();
    quill::kernels::in_pool(|| {
        benches();
        Criterion::default().configure_from_args().final_summary();
    });
}
