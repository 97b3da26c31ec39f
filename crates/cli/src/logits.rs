//! `quill logits`: token ids and last-position logits of a prompt, for checking Quill's numbers
//! against any other implementation.

use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::{bail, Result};
use quill_gpt2::SessionOptions;
use serde_json::json;

use crate::common::{KvTypeArg, ModelArgs};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// The prompt.
    #[arg(short, long)]
    prompt: String,
    /// Print `{"ids": [...], "logits": [...]}` with the full logits vector.
    #[arg(long)]
    json: bool,
    /// KV cache storage type.
    #[arg(long, value_enum, default_value_t = KvTypeArg::F32)]
    kv_type: KvTypeArg,
    /// Also write the raw logits (little-endian f32) to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    args.model.init_threads()?;
    let loaded = args.model.load()?;
    let model = loaded.model()?;
    let ids = model.tokenizer.encode(&args.prompt)?;
    if ids.is_empty() {
        bail!("the prompt is empty: it has no tokens");
    }
    if ids.len() > model.config.n_ctx {
        bail!("the prompt has {} tokens, more than the model's context of {}", ids.len(), model.config.n_ctx);
    }
    let mut session = model.session(SessionOptions { kv_type: args.kv_type.into(), ..Default::default() })?;
    let logits = session.prefill(&ids)?.to_vec();
    if let Some(path) = &args.out {
        let bytes: Vec<u8> = logits.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(path, bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    let mut out = io::stdout().lock();
    if args.json {
        serde_json::to_writer(&mut out, &json!({ "ids": ids, "logits": logits }))?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(out, "ids ({}): {:?}", ids.len(), ids)?;
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    writeln!(out, "top 10 next tokens:")?;
    for &i in order.iter().take(10) {
        let text = String::from_utf8_lossy(model.tokenizer.token_bytes(i as u32)).into_owned();
        writeln!(out, "  {i:>6} {:>12.6} {text:?}", logits[i])?;
    }
    Ok(())
}
