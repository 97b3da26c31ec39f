//! The default model shipped in `models/`.

use std::path::PathBuf;

use anyhow::{bail, Result};

/// File name of the default model inside `models/`.
pub const FILE_NAME: &str = "quill-shakespeare.gguf";

/// Finds the shipped default model: next to the executable's workspace (a `cargo run` or
/// `target/*/quill` of a clone), or in the current directory's `models/`.
pub fn path() -> Result<PathBuf> {
    let mut candidates = Vec::new();
    // Compile-time location of this workspace (works for `cargo run` and `target/release/quill`).
    candidates.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models").join(FILE_NAME));
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(4) {
            candidates.push(dir.join("models").join(FILE_NAME));
        }
    }
    candidates.push(PathBuf::from("models").join(FILE_NAME));
    for c in &candidates {
        if c.is_file() {
            return Ok(c.clone());
        }
    }
    bail!("no model given: pass -m MODEL.gguf or set QUILL_MODEL (the default model models/{FILE_NAME} was not found)")
}
