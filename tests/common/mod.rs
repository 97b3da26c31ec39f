//! Shared helpers of the cross-crate tests: fixture paths and synthetic models converted to
//! GGUF once per test binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use quill::convert::convert::{convert, ConvertOptions};
use quill::convert::synth::{write_checkpoint, SynthSpec};
use quill::quant::FileType;
use serde_json::Value as Json;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn golden_dir() -> PathBuf {
    repo().join("tests/fixtures/golden")
}

pub fn tokenizer_dir() -> PathBuf {
    repo().join("models/tokenizer")
}

pub fn golden_meta() -> Json {
    serde_json::from_str(&std::fs::read_to_string(golden_dir().join("models.json")).unwrap()).unwrap()
}

pub fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path).unwrap().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

/// The spec of golden model `m` (an entry of models.json).
pub fn spec_of(m: &Json, n_vocab: usize) -> SynthSpec {
    let u = |k: &str| m[k].as_u64().unwrap() as usize;
    SynthSpec {
        n_vocab,
        n_ctx: u("n_ctx"),
        n_embd: u("n_embd"),
        n_head: u("n_head"),
        n_layer: u("n_layer"),
        seed: m["seed"].as_u64().unwrap(),
    }
}

static BUILD_LOCK: Mutex<()> = Mutex::new(());

/// A Hugging Face checkpoint for `spec` under the test's temporary directory (made once).
pub fn checkpoint(name: &str, spec: &SynthSpec) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("synth-{name}-{}", spec.seed));
    let _guard = BUILD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if !dir.join("model.safetensors").is_file() {
        let tmp = dir.with_extension("partial");
        let _ = std::fs::remove_dir_all(&tmp);
        write_checkpoint(&tmp, spec, &tokenizer_dir()).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&tmp, &dir).unwrap();
    }
    dir
}

/// `checkpoint` converted to `file_type` (made once per test binary run).
pub fn gguf(name: &str, spec: &SynthSpec, file_type: FileType) -> PathBuf {
    let ck = checkpoint(name, spec);
    let out = ck.with_file_name(format!("synth-{name}-{}.{}.gguf", spec.seed, file_type.name()));
    let _guard = BUILD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if !out.is_file() {
        let opts = ConvertOptions { file_type, overrides: Vec::new() };
        convert(&ck, &out, &opts, &|_, _, _| {}).unwrap();
    }
    out
}
