//! Attention at GPT-2 124M's shape (12 heads of 64) for each KV cache type (F32, F16, Q8_0):
//! one decode query against 1024 cached positions, reported as GB/s of keys and values read,
//! and a 512-token prefill (flash attention) from an empty cache.
//!
//! Decode cycles through 12 layers' caches (38 MB at F16, beyond the L3 of the reference
//! machines), as a decode step does, so the cache comes from memory. `QUILL_KERNEL` picks the
//! backend.

mod common;

use criterion::{criterion_group, Criterion, Throughput};
use half::f16;
use quill::kernels::{AttnScratch, KvSlice};
use quill::quant::BlockQ8_0;

const N_HEAD: usize = 12;
const HEAD_DIM: usize = 64;
const N_EMBD: usize = N_HEAD * HEAD_DIM;
const LAYERS: usize = 12;

/// One layer's keys or values of every type, `[n_head][n_ctx][head_dim]`.
struct Layer {
    f32: Vec<f32>,
    f16: Vec<f16>,
    q8_0: Vec<BlockQ8_0>,
}

impl Layer {
    fn new(n_ctx: usize, seed: u64) -> Layer {
        let f32 = common::activations(n_ctx * N_EMBD, seed);
        let f16 = f32.iter().map(|&x| f16::from_f32(x)).collect();
        let mut q8_0 = vec![BlockQ8_0 { d: f16::ZERO, qs: [0; 32] }; f32.len() / 32];
        common::kernels().quantize_q8_0(&f32, &mut q8_0);
        Layer { f32, f16, q8_0 }
    }

    fn slice(&self, ty: &str) -> KvSlice<'_> {
        match ty {
            "f32" => KvSlice::F32(&self.f32),
            "f16" => KvSlice::F16(&self.f16),
            _ => KvSlice::Q8_0(&self.q8_0),
        }
    }

    /// Bytes of `n` positions of one layer's keys or values.
    fn bytes(ty: &str, n: usize) -> u64 {
        let e = (n * N_EMBD) as u64;
        match ty {
            "f32" => 4 * e,
            "f16" => 2 * e,
            _ => e / 32 * 34,
        }
    }
}

fn attention(c: &mut Criterion) {
    let threads = common::init_threads();
    let k = common::kernels();
    let mut g = c.benchmark_group(format!("attention/{}/{}t", k.backend(), threads));
    g.sample_size(20)
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    let n_ctx = 1024;
    let keys: Vec<Layer> = (0..LAYERS as u64).map(|l| Layer::new(n_ctx, 11 + 2 * l)).collect();
    let values: Vec<Layer> = (0..LAYERS as u64).map(|l| Layer::new(n_ctx, 12 + 2 * l)).collect();
    let mut scratch = AttnScratch::new(N_HEAD, n_ctx);
    for ty in ["f32", "f16", "q8_0"] {
        let q = common::activations(N_EMBD, 3);
        let mut out = vec![0f32; N_EMBD];
        let mut l = 0;
        g.throughput(Throughput::Bytes(2 * Layer::bytes(ty, n_ctx)));
        g.bench_function(format!("decode/{ty}/ctx{n_ctx}"), |b| {
            b.iter(|| {
                l = (l + 1) % LAYERS;
                let (kk, vv) = (keys[l].slice(ty), values[l].slice(ty));
                k.attention(&q, kk, vv, n_ctx - 1, 1, N_HEAD, HEAD_DIM, &mut out, &mut scratch);
            })
        });
    }
    let n_tok = 512;
    for ty in ["f32", "f16", "q8_0"] {
        let q = common::activations(n_tok * N_EMBD, 5);
        let mut out = vec![0f32; n_tok * N_EMBD];
        g.throughput(Throughput::Elements(n_tok as u64));
        g.bench_function(format!("prefill/{ty}/{n_tok}"), |b| {
            b.iter(|| {
                let (kk, vv) = (keys[0].slice(ty), values[0].slice(ty));
                k.attention(&q, kk, vv, 0, n_tok, N_HEAD, HEAD_DIM, &mut out, &mut scratch);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, attention);
/// criterion_main!, run on a thread of the pool, as the model runs its forward passes.
fn main() {
    common::init_threads();
    quill::kernels::in_pool(|| {
        benches();
        Criterion::default().configure_from_args().final_summary();
    });
}
