//! One decode step's weight products at m = 1, 2, 3, 4, 8, 16, 32 and 64 token rows: every matrix
//! of a GPT-2 model (per block attn_qkv, attn_output, ffn_up, ffn_down; then the output
//! projection) times m activation rows, as a step of m streams does it. Reported as multiply-adds
//! per second (criterion's "elements": parameters x m); the time of each m over the time of
//! m = 1 is the cost of batching (the target: a 16-row step at most 2x a one-row step).
//!
//! The weights are the whole model (random codes, sane scales), so that a step streams them
//! from memory as decode does; `QUILL_BENCH_HOT=1` runs one block's matrices over and over
//! instead (cache-resident weights: the compute rate, beside the memory rate). With
//! `QUILL_BENCH_META=FILE` each group's weights (parameters and bytes) are appended to FILE as
//! JSON lines. Quantized models store the output projection as Q6_K, as llama-quantize's files
//! do (and, like them, fall back to legacy types where a row is not whole 256-element blocks). `QUILL_BENCH_MODELS`
//! (`124M,1558M`), `QUILL_BENCH_TYPES` (`q4_0,q8_0,q4_k,f16`) and `QUILL_BENCH_M`
//! (`1,2,3,4,8,16,32,64`) pick the sweep; `QUILL_KERNEL` the backend. Rows are row-invariant, as
//! in the engine.

mod common;

use criterion::{criterion_group, Criterion, Throughput};
use quill::gguf::GgmlType;
use quill::kernels::{MatmulScratch, Matrix};

fn list(var: &str, default: &str) -> Vec<String> {
    std::env::var(var).unwrap_or_else(|_| default.into()).split(',').map(|s| s.trim().to_string()).collect()
}

/// `(n_embd, n_layer)` of a GPT-2 size.
fn dims(model: &str) -> (usize, usize) {
    match model {
        "124M" => (768, 12),
        "355M" => (1024, 24),
        "774M" => (1280, 36),
        "1558M" => (1600, 48),
        other => panic!("QUILL_BENCH_MODELS: unknown model {other} (124M, 355M, 774M, 1558M)"),
    }
}

fn ty_of(name: &str) -> GgmlType {
    match name {
        "f32" => GgmlType::F32,
        "f16" => GgmlType::F16,
        "bf16" => GgmlType::BF16,
        "q4_0" => GgmlType::Q4_0,
        "q4_0_8_8" => GgmlType::Q4_0_8_8,
        "q4_1" => GgmlType::Q4_1,
        "q5_0" => GgmlType::Q5_0,
        "q5_1" => GgmlType::Q5_1,
        "q8_0" => GgmlType::Q8_0,
        "q4_k" => GgmlType::Q4_K,
        "q5_k" => GgmlType::Q5_K,
        "q6_k" => GgmlType::Q6_K,
        other => panic!("QUILL_BENCH_TYPES: unknown type {other}"),
    }
}

/// `ty`, or for rows that are not whole 256-element blocks (GPT-2 XL's 1600) the legacy type
/// llama-quantize falls back to.
fn fit(ty: GgmlType, cols: usize) -> GgmlType {
    match ty {
        GgmlType::Q4_K if !cols.is_multiple_of(256) => GgmlType::Q5_0,
        GgmlType::Q5_K if !cols.is_multiple_of(256) => GgmlType::Q5_1,
        GgmlType::Q6_K if !cols.is_multiple_of(256) => GgmlType::Q8_0,
        ty => ty,
    }
}

/// The matrices of one step: `(type, rows, cols, bytes)`, block by block, then the output.
fn model_weights(ty: GgmlType, n: usize, layers: usize, hot: bool) -> Vec<(GgmlType, usize, usize, Vec<u8>)> {
    let shapes = [(3 * n, n), (n, n), (4 * n, n), (n, 4 * n)];
    let mut ws = Vec::new();
    let blocks = if hot { 1 } else { layers };
    for l in 0..blocks {
        for (i, &(rows, cols)) in shapes.iter().enumerate() {
            let ty = fit(ty, cols);
            ws.push((ty, rows, cols, common::matrix_bytes(ty, rows, cols, 17 + (l * 4 + i) as u64)));
        }
    }
    if !hot {
        let out_ty =
            if matches!(ty, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16) { ty } else { fit(GgmlType::Q6_K, n) };
        ws.push((out_ty, 50257, n, common::matrix_bytes(out_ty, 50257, n, 5)));
    }
    ws
}

fn decode_step(c: &mut Criterion) {
    let threads = common::init_threads();
    let k = common::kernels();
    let hot = std::env::var("QUILL_BENCH_HOT").is_ok_and(|v| v == "1");
    let ms: Vec<usize> =
        list("QUILL_BENCH_M", "1,2,3,4,8,16,32,64").iter().map(|m| m.parse().expect("QUILL_BENCH_M")).collect();
    let max_m = ms.iter().copied().max().unwrap_or(1);
    for model in list("QUILL_BENCH_MODELS", "124M,1558M") {
        let (n, layers) = dims(&model);
        for tname in list("QUILL_BENCH_TYPES", "q4_0,q8_0,q4_k,f16") {
            let ty = ty_of(&tname);
            let ws = model_weights(ty, n, layers, hot);
            let mats: Vec<Matrix<'_>> = ws.iter().map(|(t, r, c, w)| Matrix::new(*t, *r, *c, w).unwrap()).collect();
            let params: usize = mats.iter().map(|m| m.rows * m.cols).sum();
            let bytes: usize = mats.iter().map(|m| m.data.len()).sum();
            let x = common::activations(max_m * 4 * n, 3);
            let mut out = vec![0f32; max_m * 50257];
            let mut scratch = MatmulScratch::with_capacity(max_m, 4 * n);
            scratch.set_row_invariant(true);
            let hot_s = if hot { "/hot" } else { "" };
            let group = format!("decode_step/{}/{threads}t/{model}/{tname}{hot_s}", k.backend());
            write_meta(&group, params, bytes);
            let mut g = c.benchmark_group(group);
            g.sample_size(10)
                .warm_up_time(std::time::Duration::from_millis(300))
                .measurement_time(std::time::Duration::from_secs(if model == "124M" || hot { 1 } else { 3 }));
            for &m in &ms {
                g.throughput(Throughput::Elements((params * m) as u64));
                g.bench_function(format!("m{m}"), |b| {
                    b.iter(|| {
                        for w in &mats {
                            k.matmul(w, &x[..m * w.cols], m, &mut out[..m * w.rows], &mut scratch);
                        }
                    })
                });
            }
            g.finish();
        }
    }
}

/// Appends one JSON line `{group, params, bytes}` (the step's weights) to the file named by
/// `QUILL_BENCH_META`, if set: `cargo xtask bench step` turns times into rates with it.
fn write_meta(group: &str, params: usize, bytes: usize) {
    use std::io::Write;
    let Ok(path) = std::env::var("QUILL_BENCH_META") else { return };
    let line = format!("{{\"group\": \"{group}\", \"params\": {params}, \"bytes\": {bytes}}}\n");
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).expect("QUILL_BENCH_META: open");
    f.write_all(line.as_bytes()).expect("QUILL_BENCH_META: write");
}

criterion_group!(benches, decode_step);
/// Run on a pool thread, as the model runs its forward passes (see `quill_kernels::in_pool`).
fn main() {
    common::init_threads();
    quill::kernels::in_pool(|| {
        benches();
        Criterion::default().configure_from_args().final_summary();
    });
}
