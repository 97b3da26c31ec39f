//! `quill perplexity`: perplexity of a model on a text with llama.cpp's method, and KL
//! divergence against a higher-precision base model (or its saved log-probs).

use std::fs::File;
use std::io::{BufReader, IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use gguf_file::LoadMode;
use indicatif::{ProgressBar, ProgressStyle};
use quill_gpt2::perplexity::{log_softmax, windows, LogitsReader, LogitsWriter, Stats, Window};
use quill_gpt2::{Gpt2Model, KvType, SessionOptions};
use serde_json::json;

use crate::common::{KvTypeArg, Loaded, ModelArgs};

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
    /// KV cache storage of the scored run (f32 by default: the model's own numbers).
    #[arg(long, value_enum, default_value_t = KvTypeArg::F32)]
    kv_type: KvTypeArg,
    /// Compare with the same model run with this KV cache type: the quality cost of
    /// --kv-type. Defaults to f16 when --kv-type is q8_0 and no other base is given.
    #[arg(long, value_enum, conflicts_with_all = ["kl_base", "kl_base_logits"])]
    kl_base_kv: Option<KvTypeArg>,
    /// Print one JSON object at the end.
    #[arg(long)]
    json: bool,
}

impl Args {
    /// The KV type of the base run over this same model, if there is one.
    fn base_kv(&self) -> Option<KvType> {
        match self.kl_base_kv {
            Some(t) => Some(t.into()),
            None if self.kl_base.is_none() && self.kl_base_logits.is_none() => {
                (KvType::from(self.kv_type) == KvType::Q8_0).then_some(KvType::F16)
            }
            None => None,
        }
    }

    /// Session options over windows of `n_ctx` with this KV type.
    fn session(n_ctx: usize, kv_type: KvType) -> SessionOptions {
        SessionOptions { n_ctx, n_batch: n_ctx.min(512), kv_type }
    }
}

enum Base<'m, 'a> {
    None,
    Model(Box<quill_gpt2::Session<'m, 'a>>),
    File(LogitsReader<BufReader<File>>),
}

/// What a run scores: the text's tokens and the windows over them.
struct Plan {
    tokens: Vec<u32>,
    wins: Vec<Window>,
    n_ctx: usize,
    /// `--stride`, 0 when absent (as stored in logits files).
    stride: usize,
}

/// This model's log-probs for later `--kl-base-logits` runs, and where they go.
type Saver = (LogitsWriter<gguf_file::AtomicFile>, PathBuf);

pub fn run(args: Args) -> Result<()> {
    args.model.init_threads()?;
    let loaded = args.model.load()?;
    let model = loaded.model()?;
    let plan = plan(&args, &model)?;
    let base_file = args.kl_base.as_deref().map(|p| Loaded::open(p, LoadMode::Mmap)).transpose()?;
    let base_model = base_file.as_ref().map(Loaded::model).transpose()?;
    let mut base = open_base(&args, base_model.as_ref(), &model, &plan)?;
    let mut saver = match &args.save_logits {
        Some(path) => {
            let f = gguf_file::AtomicFile::create(path).with_context(|| path.display().to_string())?;
            Some((LogitsWriter::new(f, model.config.n_vocab, plan.n_ctx, plan.stride, &plan.tokens)?, path.clone()))
        }
        None => None,
    };
    let start = Instant::now();
    let stats = score(&args, &model, &plan, &mut base, &mut saver)?;
    if let Some((w, path)) = saver {
        w.finish()?.commit().with_context(|| path.display().to_string())?;
    }
    report(&args, &plan, &stats, start.elapsed().as_secs_f64())
}

/// Tokenizes the text and cuts it into windows.
fn plan(args: &Args, model: &Gpt2Model<'_>) -> Result<Plan> {
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
    Ok(Plan { tokens, wins, n_ctx, stride: args.stride.unwrap_or(0) })
}

/// The base of the KL divergence: a model (`--kl-base`), saved log-probs
/// (`--kl-base-logits`), this model with another KV cache type (`--kl-base-kv`), or none.
fn open_base<'m, 'a>(
    args: &Args,
    base_model: Option<&'m Gpt2Model<'a>>,
    model: &'m Gpt2Model<'a>,
    plan: &Plan,
) -> Result<Base<'m, 'a>> {
    let n_vocab = model.config.n_vocab;
    if let (Some(path), Some(base)) = (&args.kl_base, base_model) {
        if base.config.n_vocab != n_vocab || base.tokenizer.tokens() != model.tokenizer.tokens() {
            bail!("{}: the base model's vocabulary differs from the model's", path.display());
        }
        return Ok(Base::Model(Box::new(base.session(Args::session(plan.n_ctx, KvType::F32))?)));
    }
    if let Some(kv) = args.base_kv() {
        if !args.json {
            eprintln!("perplexity: base = this model with a {} KV cache (--kl-base-kv)", kv.name());
        }
        return Ok(Base::Model(Box::new(model.session(Args::session(plan.n_ctx, kv))?)));
    }
    if let Some(path) = &args.kl_base_logits {
        let f = File::open(path).with_context(|| path.display().to_string())?;
        let r = LogitsReader::open(BufReader::new(f), path, n_vocab, plan.n_ctx, plan.stride, &plan.tokens)?;
        return Ok(Base::File(r));
    }
    Ok(Base::None)
}

fn progress_bar(args: &Args, plan: &Plan) -> Option<ProgressBar> {
    if !args.json {
        eprintln!(
            "perplexity: {} tokens, {} windows of {} ({} scored tokens each){}",
            plan.tokens.len(),
            plan.wins.len(),
            plan.n_ctx,
            plan.wins[0].scored(),
            if args.stride.is_some() { ", strided" } else { "" }
        );
    }
    std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(plan.wins.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("[{bar:30}] {pos}/{len} chunks, ETA {eta} {wide_msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar
    })
}

/// Scores every window: the loop of the run.
fn score(
    args: &Args,
    model: &Gpt2Model<'_>,
    plan: &Plan,
    base: &mut Base<'_, '_>,
    saver: &mut Option<Saver>,
) -> Result<Stats> {
    let n_vocab = model.config.n_vocab;
    let mut session = model.session(Args::session(plan.n_ctx, args.kv_type.into()))?;
    let bar = progress_bar(args, plan);
    let mut stats = Stats::default();
    let (mut lp, mut base_lp) = (vec![0.0f64; n_vocab], vec![0.0f64; n_vocab]);
    let mut base_rows: Vec<f32> = Vec::new();
    let mut buf = Vec::new();
    let mut io_err: Option<std::io::Error> = None;
    for (wi, w) in plan.wins.iter().enumerate() {
        let ids = &plan.tokens[w.start..w.start + w.len];
        if let Base::Model(bs) = base {
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
            match base {
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
            if let Some((w, _)) = saver {
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
    Ok(stats)
}

/// Prints the result, as llama-perplexity does (or one JSON object).
fn report(args: &Args, plan: &Plan, stats: &Stats, secs: f64) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if args.json {
        let mut doc = json!({
            "ppl": stats.ppl(),
            "ppl_stderr": stats.ppl_stderr(),
            "n_tokens": plan.tokens.len(),
            "n_chunks": plan.wins.len(),
            "count": stats.count,
            "ctx": plan.n_ctx,
            "stride": args.stride,
            "kv_type": KvType::from(args.kv_type).name(),
            "seconds": secs,
        });
        if let Some(kv) = args.base_kv() {
            doc["base_kv_type"] = json!(kv.name());
        }
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
        (plan.wins.len() * plan.n_ctx) as f64 / secs
    );
    Ok(())
}
