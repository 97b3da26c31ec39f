//! CTranslate2 int8 beside Quill (`--ct2 PYTHON`): `xtask/scripts/ct2_bench.py` converts the
//! bench checkpoint once (cached beside the GGUF files) and measures it.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use serde_json::Value as Json;

use super::Ts;

/// CTranslate2's figures for one model shape.
#[derive(Clone, Debug)]
pub struct Ct2Result {
    pub version: String,
    /// A prompt and one generated token (llama-bench's pp).
    pub pp: Ts,
    /// `score_batch` of the prompt (every row of logits too).
    pub score: Ts,
    pub tg: Ts,
    /// The script's output, kept in results.json.
    pub json: Json,
}

pub fn run(
    repo: &Path,
    python: &Path,
    shape: &str,
    n_prompt: usize,
    n_gen: usize,
    reps: usize,
    threads: usize,
) -> Result<Ct2Result> {
    let dir = repo.join("target/bench-models").join(shape);
    let out = Command::new(python)
        .arg(repo.join("xtask/scripts/ct2_bench.py"))
        .arg("--hf")
        .arg(dir.join("hf"))
        .arg("--out")
        .arg(dir.join("ct2-int8"))
        .args(["-p", &n_prompt.to_string(), "-n", &n_gen.to_string()])
        .args(["-r", &reps.to_string(), "-t", &threads.to_string()])
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    if !out.status.success() {
        anyhow::bail!("the CTranslate2 benchmark failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    let json: Json = serde_json::from_slice(&out.stdout).with_context(|| {
        format!("the CTranslate2 benchmark printed no JSON: {}", String::from_utf8_lossy(&out.stdout))
    })?;
    Ok(Ct2Result {
        version: json["version"].as_str().unwrap_or("unknown").to_owned(),
        pp: Ts::of(&json["pp"]),
        score: Ts::of(&json["score"]),
        tg: Ts::of(&json["tg"]),
        json,
    })
}
