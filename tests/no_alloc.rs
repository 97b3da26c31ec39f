//! Decode allocates nothing per token: after a warm-up, decoding tokens and sampling them makes
//! no heap allocation. Measured on a one-thread pool, inside the pool, so that every kernel runs
//! on the measured thread (allocation-counter counts the current thread).

mod common;

use common::*;
use quill::engine::{queue, Engine, EngineConfig, Event, Request};
use quill::gguf::GgufFile;
use quill::gpt2::{Gpt2Model, KvType, SessionOptions};
use quill::quant::FileType;
use quill::sampler::{Sampler, SamplerConfig};

#[test]
fn decode_and_sampling_allocate_nothing_per_token() {
    // The counter is live: a zero below is not vacuous.
    assert_eq!(allocation_counter::measure(|| drop(std::hint::black_box(vec![1u8; 10]))).count_total, 1);
    let meta = golden_meta();
    let spec = spec_of(&meta["models"][1], 50257);
    for ft in [FileType::F32, FileType::F16, FileType::Q8_0, FileType::Q4_0, FileType::Q4_K_M] {
        let path = gguf("h32x4", &spec, ft);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        pool.install(|| {
            let file = GgufFile::open(&path).unwrap();
            let model = Gpt2Model::load(&file).unwrap();
            for kv in KvType::ALL {
                let mut s = model.session(SessionOptions { kv_type: kv, n_batch: 8, ..Default::default() }).unwrap();
                let cfg = SamplerConfig { seed: Some(1), repeat_penalty: 1.1, ..SamplerConfig::default() };
                let mut sampler = Sampler::new(cfg, model.config.n_vocab).unwrap();
                let prompt = model.tokenizer.encode("It was the best of times").unwrap();
                let mut logits = s.prefill(&prompt).unwrap().to_vec();
                // Warm-up: the first decode sizes the scratch buffers.
                let mut id = sampler.sample(&logits).unwrap();
                logits.copy_from_slice(s.decode(id).unwrap());
                let info = allocation_counter::measure(|| {
                    for _ in 0..20 {
                        id = sampler.sample(&logits).unwrap();
                        sampler.accept(id);
                        logits.copy_from_slice(s.decode(id).unwrap());
                    }
                });
                assert_eq!(info.count_total, 0, "{ft:?} {kv:?}: {} allocations in 20 decode steps", info.count_total);
            }
        });
    }
}

#[test]
fn an_engine_step_allocates_nothing() {
    // Eight sequences decoding at once (sampling, penalties, logprobs, their channels): after
    // the steps that admit them and evaluate their prompts, a step allocates nothing.
    let meta = golden_meta();
    let spec = spec_of(&meta["models"][1], 50257);
    for ft in [FileType::F16, FileType::Q8_0, FileType::Q4_0, FileType::Q4_K_M] {
        let path = gguf("h32x4", &spec, ft);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        pool.install(|| {
            let file = GgufFile::open(&path).unwrap();
            let model = Gpt2Model::load(&file).unwrap();
            let (client, inbox) = queue(16);
            let cfg = EngineConfig {
                n_parallel: 8,
                n_ctx: 64,
                chunk: 8,
                max_queue: 16,
                kv_type: KvType::F16,
                row_invariant: true,
                prefix_cache: true,
            };
            let mut engine = Engine::new(&model, cfg, &inbox).unwrap();
            let prompt = model.tokenizer.encode("It was the best of times").unwrap();
            let reqs: Vec<Request> = (0..8)
                .map(|i| Request {
                    prompt: prompt[..1 + i % prompt.len()].to_vec(),
                    max_tokens: 40,
                    samplers: vec![SamplerConfig {
                        seed: Some(i as u64),
                        repeat_penalty: 1.1,
                        ..SamplerConfig::default()
                    }],
                    logprobs: (i % 2 == 0).then_some(5),
                    prompt_logprobs: false,
                    ignore_eos: true,
                    end_tokens: None,
                })
                .collect();
            let streams = client.submit(reqs).unwrap();
            // Admission, prompts, and a first decode step that sizes the scratch.
            for _ in 0..3 {
                assert!(engine.step(&inbox));
            }
            assert_eq!(engine.running(), 8);
            let info = allocation_counter::measure(|| {
                for _ in 0..20 {
                    assert!(engine.step(&inbox));
                }
            });
            assert_eq!(info.count_total, 0, "{ft:?}: {} allocations in 20 engine steps", info.count_total);
            let mut evs = Vec::new();
            for mut s in streams.into_iter().flatten() {
                evs.clear();
                s.drain_into(&mut evs);
                // 20 measured steps each gave every sequence a token (and none has ended).
                assert!(evs.iter().filter(|e| matches!(e, Event::Token(_))).count() >= 21);
                assert!(!matches!(evs.last(), Some(Event::Done(_))));
            }
        });
    }
}
