//! `/v1/completions` request bodies (and `quill generate --batch` lines): arbitrary bytes, as
//! JSON when they parse, through the parameter reader with the micro model's tokenizer. Errors
//! (a 400 naming the field) are fine; panics are not, and what it accepts is within bounds.
#![no_main]

use gguf_file::Metadata;
use libfuzzer_sys::fuzz_target;
use quill_gpt2::Tokenizer;
use quill_server::params;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let mut m = Metadata::new();
    for (k, v) in quill_fuzz::metadata() {
        m.insert(k, v);
    }
    let tok = Tokenizer::from_gguf(&m).expect("the micro model's tokenizer");
    let n_vocab = tok.n_vocab();
    if let Ok(p) = params::completion(&body, &tok, n_vocab) {
        assert!(!p.prompts.is_empty() && p.prompts.len() <= params::MAX_PROMPTS);
        assert!(p.prompts.iter().flat_map(|pr| &pr.ids).all(|&id| (id as usize) < n_vocab));
        assert!((1..=128).contains(&p.n));
        assert!(p.stop.len() <= params::MAX_STOPS && p.stop.iter().all(|s| !s.is_empty()));
        p.sampler.validate().expect("an accepted request has valid sampler settings");
    }
});
