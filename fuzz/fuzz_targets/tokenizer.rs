//! The tokenizer built from GGUF metadata: arbitrary token lists, merges and types, then
//! arbitrary text through encode and decode. Errors are fine; panics are not.
#![no_main]

use arbitrary::Arbitrary;
use gguf_file::{Array, Metadata, Value};
use libfuzzer_sys::fuzz_target;
use quill_gpt2::Tokenizer;

#[derive(Arbitrary, Debug)]
struct Input {
    extra_tokens: Vec<String>,
    merges: Vec<String>,
    types: Option<Vec<i32>>,
    eos: Option<u64>,
    text: String,
    byte_tokens: bool,
}

fuzz_target!(|inp: Input| {
    let mut tokens: Vec<String> =
        if inp.byte_tokens { quill_gpt2::byte_to_char().iter().map(|c| c.to_string()).collect() } else { Vec::new() };
    tokens.extend(inp.extra_tokens.into_iter().take(512));
    let mut m = Metadata::new();
    m.insert("tokenizer.ggml.model", "gpt2");
    m.insert("tokenizer.ggml.tokens", Value::Array(Array::String(tokens)));
    m.insert("tokenizer.ggml.merges", Value::Array(Array::String(inp.merges.into_iter().take(512).collect())));
    if let Some(t) = inp.types {
        m.insert("tokenizer.ggml.token_type", Value::Array(Array::I32(t)));
    }
    if let Some(e) = inp.eos {
        m.insert("tokenizer.ggml.eos_token_id", Value::U64(e));
    }
    let Ok(tok) = Tokenizer::from_gguf(&m) else { return };
    if let Ok(ids) = tok.encode(&inp.text) {
        let _ = tok.decode(&ids);
        let mut dec = quill_gpt2::StreamDecoder::new();
        let mut out = String::new();
        for &id in &ids {
            dec.push(tok.token_bytes(id), &mut out);
        }
        out.push_str(&dec.finish());
    }
});
