//! Streaming read bandwidth over 1 GiB with the benches' thread pool: the ceiling every GEMV
//! figure (GB/s of weights) is a fraction of.

mod common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const BYTES: usize = 1 << 30;

fn bandwidth(c: &mut Criterion) {
    let threads = common::init_threads();
    let data: Vec<u64> = (0..BYTES / 8).map(|i| i as u64).collect();
    let mut g = c.benchmark_group(format!("bandwidth/{threads}t"));
    g.sample_size(10).throughput(Throughput::Bytes(BYTES as u64));
    g.bench_function("read_1GiB", |b| b.iter(|| quill::kernels::bandwidth::par_stream_sum(&data)));
    g.finish();
}

criterion_group!(benches, bandwidth);
criterion_main!(benches);
