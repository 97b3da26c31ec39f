//! Decode allocates nothing per token: after a warm-up, decoding tokens and sampling them makes
//! no heap allocation. Measured on a one-thread pool, inside the pool, so that every kernel runs
//! on the measured thread (allocation-counter counts the current thread).

mod common;

use common::*;
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
            for kv in [KvType::F32, KvType::F16] {
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
