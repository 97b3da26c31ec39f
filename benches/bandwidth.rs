//! Streaming read bandwidth over 1 GiB with the benches' thread pool: the ceiling every GEMV
//! figure (GB/s of weights) is a fraction of.

mod common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rayon::prelude::*;

const BYTES: usize = 1 << 30;

/// Sums 64-byte lines with 8 independent u64 accumulators per line: a loop whose speed is the
/// memory system's once it is vectorised.
#[inline(always)]
fn sum_lines(c: &[u64]) -> u64 {
    let mut acc = [0u64; 8];
    for line in c.chunks_exact(8) {
        for (a, &v) in acc.iter_mut().zip(line) {
            *a = a.wrapping_add(v);
        }
    }
    acc.iter().fold(0, |s, &v| s.wrapping_add(v))
}

/// `sum_lines` compiled for AVX2 (32-byte loads), as a C loop built with `-march=native` would be.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn sum_lines_avx2(c: &[u64]) -> u64 {
    sum_lines(c)
}

fn sum_chunk(c: &[u64]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        return unsafe { sum_lines_avx2(c) };
    }
    sum_lines(c)
}

fn bandwidth(c: &mut Criterion) {
    let threads = common::init_threads();
    let data: Vec<u64> = (0..BYTES / 8).map(|i| i as u64).collect();
    let mut g = c.benchmark_group(format!("bandwidth/{threads}t"));
    g.sample_size(10).throughput(Throughput::Bytes(BYTES as u64));
    g.bench_function("read_1GiB", |b| {
        b.iter(|| data.par_chunks(1 << 17).map(sum_chunk).reduce(|| 0, u64::wrapping_add))
    });
    g.finish();
}

criterion_group!(benches, bandwidth);
criterion_main!(benches);
