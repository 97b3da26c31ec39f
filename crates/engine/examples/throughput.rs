//! Scratch: engine decode throughput at N streams (no HTTP).
use std::time::Instant;

use gguf_file::GgufFile;
use quill_engine::{queue, Engine, EngineConfig, Request};
use quill_gpt2::{Gpt2Model, KvType};
use quill_sampler::SamplerConfig;

fn cpu_secs() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap();
    let f: Vec<&str> = s.rsplit(')').next().unwrap().split_whitespace().collect();
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = &args[1];
    let file = GgufFile::open(path).unwrap();
    let model = Gpt2Model::load(&file).unwrap();
    let ns: Vec<usize> = args[2..].iter().map(|a| a.parse().unwrap()).collect();
    for &n in &ns {
        let (client, inbox) = queue(128);
        let mut engine = Engine::new(
            &model,
            EngineConfig { n_parallel: n, n_ctx: 256, chunk: 256, max_queue: 128, kv_type: KvType::F16 },
            &inbox,
        )
        .unwrap();
        let prompt = model.tokenizer.encode("The quick brown fox jumps over the lazy dog").unwrap();
        let reqs: Vec<Request> = (0..n)
            .map(|i| Request {
                prompt: prompt.clone(),
                max_tokens: 64,
                samplers: vec![SamplerConfig { seed: Some(i as u64), ..SamplerConfig::default() }],
                logprobs: None,
                prompt_logprobs: false,
                ignore_eos: true,
            })
            .collect();
        let _s = client.submit(reqs).unwrap();
        engine.step(&inbox); // prefill
        let t = Instant::now();
        let c0 = cpu_secs();
        let mut steps = 0;
        while engine.step(&inbox) {
            steps += 1;
        }
        let secs = t.elapsed().as_secs_f64();
        let toks = (n * 63) as f64;
        let cpu = cpu_secs() - c0;
        println!(
            "n={n:3} steps={steps} {:.1} t/s aggregate, {:.2} ms/step, {:.2} cpu-ms/token",
            toks / secs,
            secs * 1e3 / steps as f64,
            cpu * 1e3 / toks
        );
    }
}
