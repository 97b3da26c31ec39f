//! `quill perplexity`: perplexity of a model on a text with llama.cpp's method, and KL
//! divergence against a higher-precision base model (or its saved log-probs).

use std::fs::File;
use std::io::{BufReader, IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use gguf_file::GgufFile;
use indicatif::{ProgressBar, ProgressStyle};
use quill_gpt2::perplexity::{log_softmax, windows, LogitsReader, LogitsWriter, Stats};
use quill_gpt2::{Gpt2Model, KvType, SessionOptions};
use serde_json::json;

use crate::common::ModelArgs;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// The text to score.
    #[arg(short, long)]
    file: PathBuf,
    /// Tokens per window (default: 512, or the model's context if smaller).
    #[arg(short = 'c', long = "ctx")]
    ctx: Option<usize>,
    /// Overlapping windows every S tokens, each scored on its last S tokens (llama.cpp's
    /// --ppl-stride).
    #[arg(long)]
    stride: Option<usize>,
    /// Score only the first N windows.
    #[arg(long)]
    chunks: Option<usize>,
    /// Compare with this base model (same vocabulary, higher precision): KL divergence,
    /// top-token agreement, perplexity ratio.
    #[arg(long, conflicts_with = "kl_base_logits")]
    kl_base: Option<PathBuf>,
    /// Compare with base log-probs saved earlier by --save-logits.
    #[arg(long)]
    kl_base_logits: Option<PathBuf>,
    /// Save this model's log-probs for later --kl-base-logits runs (large: 100 KB per scored token).
    #[arg(long)]
    save_logits: Option<PathBuf>,
    /// Print one JSON object at the end.
    #[arg(long)]
    json: bool,
}

enum Base<'m, 'a> {
    None,
    Model(Box<quill_gpt2::Session<'m, 'a>>),
    File(LogitsReader<BufReader<File>>),
}

pub fn run(args: Args) -> Result<()> {
    args.model.init_threads()?;
    let loaded = args.model.load()?;
    let model = loaded.model()?;
    let text = std::fs::read_to_string(&args.file).with_context(|| args.file.display().to_string())?;
    let tokens = model.tokenizer.encode(&text)?;
    let n_ctx = args.ctx.unwrap_or_else(|| model.config.n_ctx.min(512));
    if n_ctx > model.config.n_ctx {
        bail!("--ctx {n_ctx} is larger than the model's context of {}", model.config.n_ctx);
    }
    let mut wins = windows(tokens.len(), n_ctx, args.stride).with_context(|| args.file.display().to_string())?;
    if let Some(n) = args.chunks {
        if n == 0 {
            bail!("--chunks must be at least 1");
        }
        wins.truncate(n);
    }
    let n_vocab = model.config.n_vocab;
    let stride = args.stride.unwrap_or(0);

    let base_file;
    let base_model;
    let mut base = Base::None;
    if let Some(path) = &args.kl_base {
        base_file = GgufFile::open(path)?;
        base_model = Gpt2Model::load(&base_file).with_context(|| path.display().to_string())?;
        if base_model.config.n_vocab != n_vocab || base_model.tokenizer.tokens() != model.tokenizer.tokens() {
            bail!("{}: the base model's vocabulary differs from the model's", path.display());
        }
        let opts = SessionOptions { n_ctx, n_batch: n_ctx.min(512), kv_type: KvType::F32 };
        base = Base::Model(Box::new(base_model.session(opts)?));
    } else if let Some(path) = &args.kl_base_logits {
        let f = File::open(path).with_context(|| path.display().to_string())?;
        base = Base::File(LogitsReader::open(BufReader::new(f), path, n_vocab, n_ctx, stride, &tokens)?);
    }
    let mut saver = match &args.save_logits {
        Some(path) => {
            let f = gguf_file::AtomicFile::create(path).with_context(|| path.display().to_string())?;
            Some((LogitsWriter::new(f, n_vocab, n_ctx, stride, &tokens)?, path.clone()))
        }
        None => None,
    };

    let opts = SessionOptions { n_ctx, n_batch: n_ctx.min(512), kv_type: KvType::F32 };
    let mut session = model.session(opts)?;
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(wins.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("[{bar:30}] {pos}/{len} chunks, ETA {eta} {wide_msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar
    });
    if !args.json {
        eprintln!(
            "perplexity: {} tokens, {} windows of {n_ctx} ({} scored tokens each){}",
            tokens.len(),
            wins.len(),
            wins[0].scored(),
            if args.stride.is_some() { ", strided" } else { "" }
        );
    }
    let start = Instant::now();
    let mut stats = Stats::default();
    let mut lp = vec![0.0f64; n_vocab];
    let mut base_lp = vec![0.0f64; n_vocab];
    let mut base_rows: Vec<f32> = Vec::new();
    let mut buf = Vec::new();
    let mut io_err: Option<std::io::Error> = None;
    for (wi, w) in wins.iter().enumerate() {
        let ids = &tokens[w.start..w.start + w.len];
        if let Base::Model(bs) = &mut base {
            base_rows.clear();
            bs.reset();
            bs.eval_rows(ids, w.first, &mut |i, row| {
                if i < w.len - 1 {
                    base_rows.extend_from_slice(row);
                }
            })?;
        }
        session.reset();
        session.eval_rows(ids, w.first, &mut |i, row| {
            if i >= w.len - 1 || io_err.is_some() {
                return;
            }
            let next = ids[i + 1];
            log_softmax(row, &mut lp);
            stats.add(&lp, next);
            match &mut base {
                Base::None => {}
                Base::Model(_) => {
                    let r = (i - w.first) * n_vocab;
                    log_softmax(&base_rows[r..r + n_vocab], &mut base_lp);
                    stats.add_kl(&lp, &base_lp, next);
                }
                Base::File(reader) => match reader.read_row(&mut base_lp) {
                    Ok(()) => stats.add_kl(&lp, &base_lp, next),
                    Err(e) => io_err = Some(e),
                },
            }
            if let Some((w, _)) = &mut saver {
                if let Err(e) = w.write_row(&lp, &mut buf) {
                    io_err = Some(e);
                }
            }
        })?;
        if let Some(e) = io_err.take() {
            let path = args.kl_base_logits.as_ref().or(saver.as_ref().map(|s| &s.1)).expect("a logits file");
            bail!("{}: {e} (was it made with the same text, --ctx and --stride?)", path.display());
        }
        let msg = format!("ppl {:.4} +/- {:.4}", stats.ppl(), stats.ppl_stderr());
        match &bar {
            Some(bar) => {
                bar.set_position(wi as u64 + 1);
                bar.set_message(msg);
            }
            None if !args.json => eprint!("[{}]{:.4},", wi + 1, stats.ppl()),
            None => {}
        }
    }
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    } else if !args.json {
        eprintln!();
    }
    if let Some((w, path)) = saver {
        w.finish()?.commit().with_context(|| path.display().to_string())?;
    }
    let secs = start.elapsed().as_secs_f64();
    let mut out = std::io::stdout().lock();
    if args.json {
        let mut doc = json!({
            "ppl": stats.ppl(),
            "ppl_stderr": stats.ppl_stderr(),
            "n_tokens": tokens.len(),
            "n_chunks": wins.len(),
            "count": stats.count,
            "ctx": n_ctx,
            "stride": args.stride,
            "seconds": secs,
        });
        if stats.has_kl() {
            doc["kld_mean"] = json!(stats.kld_mean());
            doc["kld_stderr"] = json!(stats.kld_stderr());
            doc["same_top_pct"] = json!(stats.same_top_pct());
            doc["ppl_base"] = json!(stats.ppl_base());
            doc["ppl_ratio"] = json!(stats.ppl_ratio());
        }
        serde_json::to_writer(&mut out, &doc)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(out, "Final estimate: PPL = {:.4} +/- {:.5}", stats.ppl(), stats.ppl_stderr())?;
    if stats.has_kl() {
        writeln!(out, "Base PPL       = {:.4}", stats.ppl_base())?;
        writeln!(out, "PPL ratio      = {:.6}", stats.ppl_ratio())?;
        writeln!(out, "Mean KLD       = {:.6} +/- {:.6}", stats.kld_mean(), stats.kld_stderr())?;
        writeln!(out, "Same top       = {:.3} %", stats.same_top_pct())?;
    }
    eprintln!(
        "{} tokens scored in {:.2} s ({:.1} tokens/s evaluated)",
        stats.count,
        secs,
        (wins.len() * n_ctx) as f64 / secs
    );
    Ok(())
}
