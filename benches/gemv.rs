//! GEMV (one token, decode) at GPT-2 124M's shapes for F16, Q8_0, Q4_0, Q4_K and Q6_K, reported
//! as effective GB/s of weights read (compare with the `bandwidth` bench).
//!
//! Each iteration multiplies a different copy of the matrix, cycling through enough copies to
//! overflow the L3 cache, so that the weights come from memory as they do in decode (where the
//! whole model, tens of MB, streams once per token). `QUILL_KERNEL` picks the backend;
//! `QUILL_BENCH_HOT=1` multiplies one copy over and over instead (cache-resident weights: the
//! kernels' compute ceiling, and the setting of llama.cpp's `test-backend-ops perf`).

mod common;

use criterion::{criterion_group, Criterion, Throughput};
use quill::kernels::{MatmulScratch, Matrix};

/// Bytes of weights the rotating copies span (beyond L3).
const WORKING_SET: usize = 192 << 20;

fn gemv(c: &mut Criterion) {
    let threads = common::init_threads();
    let k = common::kernels();
    let hot = if std::env::var("QUILL_BENCH_HOT").is_ok_and(|v| v == "1") { "/hot" } else { "" };
    let mut g = c.benchmark_group(format!("gemv/{}/{}t{hot}", k.backend(), threads));
    g.sample_size(30)
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    for ty in common::TYPES {
        for (name, rows, cols) in common::SHAPES {
            let one = common::matrix_bytes(ty, rows, cols, 7);
            let hot = std::env::var("QUILL_BENCH_HOT").is_ok_and(|v| v == "1");
            let copies = if hot { 1 } else { WORKING_SET.div_ceil(one.len()).max(2) };
            // Every copy different: identical pages may be merged by the host and read from cache.
            let mats: Vec<Vec<u8>> = (0..copies as u64).map(|i| common::matrix_bytes(ty, rows, cols, 7 + i)).collect();
            let ms: Vec<Matrix<'_>> = mats.iter().map(|w| Matrix::new(ty, rows, cols, w).unwrap()).collect();
            let x = common::activations(cols, 3);
            let mut out = vec![0f32; rows];
            let mut scratch = MatmulScratch::with_capacity(1, cols);
            let mut i = 0;
            g.throughput(Throughput::Bytes(one.len() as u64));
            g.bench_function(format!("{ty}/{name}_{rows}x{cols}"), |b| {
                b.iter(|| {
                    i = (i + 1) % ms.len();
                    k.matmul(&ms[i], &x, 1, &mut out, &mut scratch);
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, gemv);
/// criterion_main!, run on a thread of the pool (as the model runs its forward passes, see
/// `quill_kernels::in_pool`): each matmul then splits its rows without a blocking hand-off.
fn main() {
    common::init_threads();
    quill::kernels::in_pool(|| {
        benches();
        Criterion::default().configure_from_args().final_summary();
    });
}
