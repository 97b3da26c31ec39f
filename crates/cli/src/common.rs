//! Options shared by the commands that run a model.

use std::path::PathBuf;

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
    pub file: GgufFile,
    pub load_secs: f64,
}

impl Loaded {
    pub fn model(&self) -> Result<Gpt2Model<'_>> {
        let path = self.file.path().map(|p| p.display().to_string()).unwrap_or_default();
        Gpt2Model::load(&self.file).with_context(|| path)
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
        let path = self.path()?;
        let start = std::time::Instant::now();
        let mode = if self.no_mmap { LoadMode::Read } else { LoadMode::Mmap };
        let file = GgufFile::open_with(&path, mode)?;
        Ok(Loaded { file, load_secs: start.elapsed().as_secs_f64() })
    }

    /// Runs `f` on a thread pool of `--threads` threads.
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> Result<R> {
        match self.threads {
            None => Ok(f()),
            Some(0) => anyhow::bail!("--threads must be at least 1"),
            Some(n) => {
                let pool =
                    rayon::ThreadPoolBuilder::new().num_threads(n).build().context("starting the thread pool")?;
                Ok(pool.install(f))
            }
        }
    }
}

/// `--kv-type`.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum KvTypeArg {
    F32,
    F16,
}

impl From<KvTypeArg> for KvType {
    fn from(k: KvTypeArg) -> KvType {
        match k {
            KvTypeArg::F32 => KvType::F32,
            KvTypeArg::F16 => KvType::F16,
        }
    }
}
