//! The benchmark models: GPT-2 124M and 1558M shapes with seeded random weights (speed does not
//! depend on the values), written as Hugging Face checkpoints and converted with
//! `quill quantize`, cached under `target/bench-models/`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use quill_convert::synth::{write_checkpoint, SynthSpec};

/// One model file to benchmark.
pub struct BenchModel {
    /// "124M", "1558M" or "tiny".
    pub shape: String,
    /// quill quantize's type name.
    pub file_type: String,
    pub path: PathBuf,
}

/// The shapes the suite knows.
pub fn spec(shape: &str) -> Result<Option<SynthSpec>> {
    Ok(match shape {
        "124M" => Some(SynthSpec::gpt2_124m(0)),
        "1558M" => Some(SynthSpec::gpt2_1558m(0)),
        "tiny" => None, // the committed fixture checkpoint
        s => bail!("unknown shape '{s}' (known: 124M, 1558M, tiny)"),
    })
}

/// Makes (or finds) every model file, logging what it does.
pub fn prepare(
    repo: &Path,
    quill: &Path,
    shapes: &[String],
    types: &[String],
    log: &dyn Fn(&str),
) -> Result<Vec<BenchModel>> {
    let cache = repo.join("target/bench-models");
    let mut out = Vec::new();
    for shape in shapes {
        let dir = cache.join(shape);
        let hf = match spec(shape)? {
            None => repo.join("tests/fixtures/tiny-gpt2/hf"),
            Some(spec) => {
                let hf = dir.join("hf");
                let missing: Vec<&String> = types.iter().filter(|t| !dir.join(format!("{t}.gguf")).is_file()).collect();
                if !missing.is_empty() && !hf.join("model.safetensors").is_file() {
                    log(&format!("writing a {shape} checkpoint with seeded random weights to {}", hf.display()));
                    let tmp = dir.join("hf.partial");
                    let _ = std::fs::remove_dir_all(&tmp);
                    write_checkpoint(&tmp, &spec, &repo.join("models/tokenizer"))?;
                    std::fs::rename(&tmp, &hf)?;
                }
                hf
            }
        };
        std::fs::create_dir_all(&dir)?;
        for t in types {
            let path = dir.join(format!("{t}.gguf"));
            if !path.is_file() {
                log(&format!("quill quantize {shape} -> {t}"));
                let o = Command::new(quill)
                    .args([
                        "quantize",
                        hf.to_str().context("utf-8 path")?,
                        path.to_str().context("utf-8 path")?,
                        "--type",
                        t,
                    ])
                    .output()
                    .context("running quill quantize")?;
                if !o.status.success() {
                    bail!("quill quantize {shape} {t} failed: {}", String::from_utf8_lossy(&o.stderr));
                }
            }
            out.push(BenchModel { shape: shape.clone(), file_type: t.clone(), path });
        }
    }
    Ok(out)
}
