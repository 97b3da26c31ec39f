//! Options shared by the commands that run a model.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use gguf_file::{GgufFile, LoadMode};
use quill_gpt2::{Gpt2Model, KvType};

/// Where the model comes from and how it runs.
#[derive(clap::Args, Clone)]
pub struct ModelArgs {
    /// The GGUF model [default: $QUILL_MODEL, else the default model in models/].
    #[arg(short, long)]
    pub model: Option<PathBuf>,
    /// Threads (default: all cores).
    #[arg(short, long)]
    pub threads: Option<usize>,
    /// Read the whole file into memory instead of mapping it.
    #[arg(long)]
    pub no_mmap: bool,
}

/// A loaded model file; [`Loaded::model`] views it.
pub struct Loaded {
    // Dropped first: the mapping is unwatched before it is unmapped.
    _watch: Option<crate::sigbus::Watch>,
    pub file: GgufFile,
    started: std::time::Instant,
}

impl Loaded {
    /// Opens (maps, unless `mode` says read) and validates the GGUF at `path`; a mapped file
    /// truncated later gets a message naming it instead of a silent SIGBUS.
    pub fn open(path: &Path, mode: LoadMode) -> Result<Loaded> {
        let started = std::time::Instant::now();
        let file = GgufFile::open_with(path, mode)?;
        let watch = file.is_mapped().then(|| crate::sigbus::watch(file.bytes(), path));
        Ok(Loaded { _watch: watch, file, started })
    }

    pub fn model(&self) -> Result<Gpt2Model<'_>> {
        let path = self.file.path().map(|p| p.display().to_string()).unwrap_or_default();
        Gpt2Model::load(&self.file).with_context(|| path)
    }

    /// Seconds since loading began (call right after [`Loaded::model`] for the load time).
    pub fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

impl ModelArgs {
    /// The model path: `-m`, else `$QUILL_MODEL`, else the shipped default model.
    pub fn path(&self) -> Result<PathBuf> {
        if let Some(p) = &self.model {
            return Ok(p.clone());
        }
        if let Some(p) = std::env::var_os("QUILL_MODEL").filter(|p| !p.is_empty()) {
            return Ok(PathBuf::from(p));
        }
        crate::default_model::path()
    }

    pub fn load(&self) -> Result<Loaded> {
        let mode = if self.no_mmap { LoadMode::Read } else { LoadMode::Mmap };
        Loaded::open(&self.path()?, mode)
    }

    /// Sizes rayon's global pool to `--threads` (all cores when absent). Call before any work.
    pub fn init_threads(&self) -> Result<()> {
        init_threads(self.threads)
    }
}

/// `--kv-type`.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum KvTypeArg {
    F32,
    F16,
    /// ggml's Q8_0 blocks: 53% of F16's memory (llama.cpp's `-ctk q8_0 -ctv q8_0`).
    #[value(name = "q8_0")]
    Q8_0,
}

impl From<KvTypeArg> for KvType {
    fn from(k: KvTypeArg) -> KvType {
        match k {
            KvTypeArg::F32 => KvType::F32,
            KvTypeArg::F16 => KvType::F16,
            KvTypeArg::Q8_0 => KvType::Q8_0,
        }
    }
}

/// Sizes rayon's global thread pool (all cores when `threads` is `None`).
pub fn init_threads(threads: Option<usize>) -> Result<()> {
    match threads {
        None => Ok(()),
        Some(0) => anyhow::bail!("--threads must be at least 1"),
        Some(n) => rayon::ThreadPoolBuilder::new().num_threads(n).build_global().context("starting the thread pool"),
    }
}
