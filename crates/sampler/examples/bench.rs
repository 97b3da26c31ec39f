//! Time per token of the sampler over GPT-2's vocabulary (50257), for a few chains.
//! `cargo run -p quill-sampler --release --example bench`

use std::hint::black_box;
use std::time::Instant;

use quill_sampler::{Candidates, Sampler, SamplerConfig, Xoshiro256StarStar};

const N_VOCAB: usize = 50_257;

/// Rows of logits shaped like GPT-2's: roughly normal around -5 with a heavy upper tail.
fn rows(n: usize) -> Vec<Vec<f32>> {
    let mut rng = Xoshiro256StarStar::seed_from_u64(7);
    (0..n)
        .map(|_| {
            (0..N_VOCAB)
                .map(|_| {
                    // Sum of uniforms ~ normal; cube a few to get the tail.
                    let z: f64 = (0..4).map(|_| rng.next_f64()).sum::<f64>() - 2.0;
                    (-5.0 + 3.0 * z + if rng.next_f64() < 0.002 { 8.0 * rng.next_f64() } else { 0.0 }) as f32
                })
                .collect()
        })
        .collect()
}

/// Times each call alone and reports the median and the fastest: on a shared machine the
/// mean mostly measures the neighbours.
fn time(label: &str, rows: &[Vec<f32>], mut f: impl FnMut(&[f32]) -> u32) {
    let iters = 2000;
    for row in rows.iter().take(20) {
        black_box(f(row));
    }
    let mut us: Vec<f64> = (0..iters)
        .map(|i| {
            let start = Instant::now();
            black_box(f(&rows[i % rows.len()]));
            start.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    us.sort_by(f64::total_cmp);
    println!("{label:<58} median {:7.1} us, min {:7.1} us", us[iters / 2], us[0]);
}

fn main() {
    let rows = rows(16);
    let cases: Vec<(&str, SamplerConfig)> = vec![
        ("greedy (argmax)", SamplerConfig::greedy()),
        ("llama.cpp defaults: top-k 40, top-p .95, min-p .05, temp .8", SamplerConfig::default()),
        (
            "defaults + repeat/freq/presence penalties, 3 biases",
            SamplerConfig {
                repeat_penalty: 1.1,
                frequency_penalty: 0.1,
                presence_penalty: 0.1,
                logit_bias: vec![(50_256, f32::NEG_INFINITY), (198, -1.0), (13, 0.5)],
                ..SamplerConfig::default()
            },
        ),
        (
            "top-k 40 only (temp 1)",
            SamplerConfig { top_p: 1.0, min_p: 0.0, temperature: 1.0, ..SamplerConfig::default() },
        ),
        (
            "top-p .95 only: full-vocab softmax + bucketed cut",
            SamplerConfig { top_k: 0, min_p: 0.0, ..SamplerConfig::default() },
        ),
        ("min-p .05 only", SamplerConfig { top_k: 0, top_p: 1.0, ..SamplerConfig::default() }),
        (
            "typical .9 only: full-vocab softmax + bucketed cut",
            SamplerConfig { top_k: 0, top_p: 1.0, min_p: 0.0, typical_p: 0.9, ..SamplerConfig::default() },
        ),
        (
            "no filter: full-vocab softmax + draw",
            SamplerConfig { top_k: 0, top_p: 1.0, min_p: 0.0, temperature: 1.0, ..SamplerConfig::default() },
        ),
    ];
    for (label, cfg) in cases {
        let mut s = Sampler::new(SamplerConfig { seed: Some(1), ..cfg }, N_VOCAB).expect("valid config");
        time(label, &rows, |row| {
            let t = s.sample(row).expect("a token");
            s.accept(t);
            t
        });
    }
    // The two primitives the chain is built on, alone.
    let mut c = Candidates::with_capacity(N_VOCAB);
    let mut rng = Xoshiro256StarStar::seed_from_u64(1);
    time("stage: load + full-vocab softmax + draw (dist)", &rows, |row| {
        c.load(row);
        quill_sampler::stages::dist(&mut c, &mut rng).expect("a token")
    });
    time("stage: load + top-k 40", &rows, |row| {
        c.load(row);
        quill_sampler::stages::top_k(&mut c, 40);
        c.as_slice()[0].id
    });
}
