//! Loading (and briefly running) a model from a GGUF whose container is valid but whose
//! metadata and tensors lie: wrong dims, wrong vocabulary, missing tensors, wrong types. Every
//! case must end in a typed error or a clean run, never a panic.
#![no_main]

use gguf_file::GgufFile;
use libfuzzer_sys::fuzz_target;
use quill_fuzz::{build, Mutation};
use quill_gpt2::{Gpt2Model, KvType, SessionOptions};

fuzz_target!(|mutations: Vec<Mutation>| {
    let Some(bytes) = build(mutations) else { return };
    let Ok(file) = GgufFile::from_bytes(&bytes) else { return };
    let Ok(model) = Gpt2Model::load(&file) else { return };
    for kv in [KvType::F32, KvType::F16] {
        let Ok(mut s) = model.session(SessionOptions { n_ctx: 0, n_batch: 4, kv_type: kv }) else { continue };
        let ids = model.tokenizer.encode("the hen").unwrap_or_default();
        if !ids.is_empty() && s.prefill(&ids).is_ok() {
            let _ = s.decode(0);
        }
        let _ = s.decode(u32::MAX);
    }
});
