//! Helpers for running the `quill` binary in tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn tiny_hf() -> PathBuf {
    repo().join("tests/fixtures/tiny-gpt2/hf")
}

pub fn quill(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quill")).args(args).env_remove("QUILL_MODEL").output().expect("quill runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a clean failure: exit code 1, no panic or backtrace, an error line containing every
/// one of `needles`.
pub fn assert_fails_with(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "expected exit 1, stderr: {err}");
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "panic: {err}");
    assert!(err.starts_with("quill: error: ") || err.contains("\nquill: error: "), "no error line: {err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}: {err}");
    }
}

/// The tiny checkpoint converted to `ty` in `dir` (by the binary under test).
pub fn tiny_gguf(dir: &Path, ty: &str) -> PathBuf {
    let out = dir.join(format!("tiny-{ty}.gguf"));
    if !out.exists() {
        let o = quill(&["quantize", tiny_hf().to_str().unwrap(), out.to_str().unwrap(), "--type", ty]);
        assert!(o.status.success(), "quantize {ty}: {}", stderr(&o));
    }
    out
}

/// The golden model `name` of tests/fixtures/golden/models.json, converted to `ty` in `dir`
/// (regenerated from its seed, as the root golden tests do).
pub fn golden_gguf(dir: &Path, name: &str, ty: quill_quant::FileType) -> PathBuf {
    use quill_convert::convert::{convert, ConvertOptions};
    use quill_convert::synth::{write_checkpoint, SynthSpec};
    let out = dir.join(format!("{name}-{}.gguf", ty.name()));
    if out.exists() {
        return out;
    }
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("tests/fixtures/golden/models.json")).unwrap())
            .unwrap();
    let m = meta["models"].as_array().unwrap().iter().find(|m| m["name"] == name).unwrap();
    let u = |k: &str| m[k].as_u64().unwrap() as usize;
    let spec = SynthSpec {
        n_vocab: 50257,
        n_ctx: u("n_ctx"),
        n_embd: u("n_embd"),
        n_head: u("n_head"),
        n_layer: u("n_layer"),
        seed: m["seed"].as_u64().unwrap(),
    };
    let ck = dir.join(format!("{name}-hf"));
    if !ck.exists() {
        write_checkpoint(&ck, &spec, &repo().join("models/tokenizer")).unwrap();
    }
    convert(&ck, &out, &ConvertOptions { file_type: ty, overrides: Vec::new() }, &|_, _, _| {}).unwrap();
    out
}

pub fn golden_json(file: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(repo().join("tests/fixtures/golden").join(file)).unwrap()).unwrap()
}
