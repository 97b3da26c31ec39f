//! The default model shipped in `models/`.

use std::path::PathBuf;

use anyhow::{anyhow, Result};
use quill_gpt2::default_model::{self, FILE_NAME};

/// Finds the shipped default model (see [`quill_gpt2::default_model::path`]).
pub fn path() -> Result<PathBuf> {
    default_model::path().ok_or_else(|| {
        anyhow!("no model given: pass -m MODEL.gguf or set QUILL_MODEL (the default model models/{FILE_NAME} was not found)")
    })
}
