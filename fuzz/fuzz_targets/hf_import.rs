//! The Hugging Face import: config.json text, safetensors bytes and tokenizer files, split from
//! the input at `\0SEP` markers (so seeds are real files joined together). Parsing, tensor
//! listing and reading must return errors, never panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use quill_convert::hf::{vocab_from_files, vocab_from_tokenizer_json, HfCheckpoint};

fn split(data: &[u8]) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    let mut rest = data;
    while let Some(i) = rest.windows(4).position(|w| w == b"\0SEP") {
        parts.push(&rest[..i]);
        rest = &rest[i + 4..];
    }
    parts.push(rest);
    parts
}

fuzz_target!(|data: &[u8]| {
    let parts = split(data);
    let text = |i: usize| parts.get(i).map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
    let p = Path::new("fuzz");
    let _ = vocab_from_tokenizer_json(p, &text(2));
    let _ = vocab_from_files(p, &text(3), p, &text(4));
    let shard = parts.get(1).map(|b| b.to_vec()).unwrap_or_default();
    if let Ok(ck) = HfCheckpoint::from_memory(&text(0), vec![shard]) {
        if let Ok(ts) = ck.tensors() {
            for t in &ts {
                let _ = ck.read_f32(t);
            }
        }
    }
});
