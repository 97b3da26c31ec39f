//! `quill generate`: stream a continuation of a prompt, then report speed and memory.

use std::io::{self, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use quill_engine::{EngineConfig, Finish, Generation, Job, Request};
use quill_gpt2::Gpt2Model;
use quill_sampler::SamplerConfig;
use serde_json::json;

use crate::common::{KvTypeArg, ModelArgs};

mod batch;
use crate::mem::{mib, Rss, RssTracker};

#[derive(clap::Args)]
#[command(allow_negative_numbers = true)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// The prompt (else --file, else standard input).
    #[arg(short, long, conflicts_with_all = ["file", "batch"])]
    prompt: Option<String>,
    /// Read the prompt from this file.
    #[arg(short, long, conflicts_with = "batch")]
    file: Option<PathBuf>,
    /// Many prompts from this file ('-': standard input), run together: one prompt per line,
    /// or per line a JSON object with `/v1/completions`' fields (`prompt`, `max_tokens`, `n`,
    /// `temperature`, `seed`, `stop`...; the flags give the rest). Writes one JSON line per
    /// completion, in order.
    #[arg(long, value_name = "FILE")]
    batch: Option<PathBuf>,
    /// With --batch: sequences run at once (KV slots; each token step reads the weights once
    /// for all of them).
    #[arg(long, default_value_t = 16, requires = "batch")]
    parallel: usize,
    /// Tokens to generate (-1: until end of text or the context is full).
    #[arg(short = 'n', long = "n-predict", default_value_t = 128)]
    n_predict: i64,
    /// Temperature (0: greedy).
    #[arg(long = "temp", default_value_t = 0.8)]
    temperature: f32,
    /// Keep the k most likely tokens (0: off).
    #[arg(long, default_value_t = 40)]
    top_k: i32,
    /// Keep the most likely tokens up to this probability mass (1: off).
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    /// Drop tokens less likely than this fraction of the most likely one (0: off).
    #[arg(long, default_value_t = 0.05)]
    min_p: f32,
    /// Locally typical sampling mass (1: off).
    #[arg(long = "typical", default_value_t = 1.0)]
    typical_p: f32,
    /// Penalise repeated tokens (1: off).
    #[arg(long, default_value_t = 1.0)]
    repeat_penalty: f32,
    /// Tokens considered by the penalties.
    #[arg(long, default_value_t = 64)]
    repeat_last_n: usize,
    /// Subtract count x this from a repeated token's logit.
    #[arg(long, default_value_t = 0.0)]
    frequency_penalty: f32,
    /// Subtract this from the logit of any token already seen.
    #[arg(long, default_value_t = 0.0)]
    presence_penalty: f32,
    /// Random seed (default: a fresh one, printed at the end).
    #[arg(short, long)]
    seed: Option<u64>,
    /// Context length in tokens (default: the model's).
    #[arg(short = 'c', long = "ctx", default_value_t = 0)]
    ctx: usize,
    /// KV cache storage type.
    #[arg(long, value_enum, default_value_t = KvTypeArg::F16)]
    kv_type: KvTypeArg,
    /// Stop when the output contains this string (repeatable; it is not printed).
    #[arg(long = "stop")]
    stop: Vec<String>,
    /// Never stop at the end-of-text token (its logit is set to -inf).
    #[arg(long)]
    ignore_eos: bool,
    /// Print one JSON object (text, token ids, timings, memory) instead of streaming.
    #[arg(long)]
    json: bool,
    /// Do not echo the prompt before the continuation.
    #[arg(long)]
    no_echo: bool,
}

impl Args {
    pub(crate) fn sampler_config(&self) -> SamplerConfig {
        SamplerConfig {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            typical_p: self.typical_p,
            repeat_penalty: self.repeat_penalty,
            frequency_penalty: self.frequency_penalty,
            presence_penalty: self.presence_penalty,
            repeat_last_n: self.repeat_last_n,
            seed: self.seed,
            ..SamplerConfig::default()
        }
    }

    fn prompt_text(&self) -> Result<String> {
        if let Some(p) = &self.prompt {
            return Ok(p.clone());
        }
        if let Some(f) = &self.file {
            return std::fs::read_to_string(f).with_context(|| format!("{}", f.display()));
        }
        if io::stdin().is_terminal() {
            bail!("no prompt: give one with -p TEXT, -f FILE or on standard input");
        }
        let mut s = String::new();
        io::stdin().read_to_string(&mut s).context("reading the prompt from standard input")?;
        Ok(s)
    }
}

pub fn run(args: Args) -> Result<()> {
    if args.batch.is_some() {
        return batch::run(&args);
    }
    let interrupted = ctrl_c_flag();
    let (prompt, sampler_cfg) = args.validate()?;
    args.model.init_threads()?;
    let mut rss = RssTracker::new();
    let loaded = args.model.load()?;
    let model = loaded.model()?;
    let load_secs = loaded.elapsed();
    let ids = model.tokenizer.encode(&prompt)?;
    let n_ctx = args.context_for(&model, ids.len())?;
    let n_prompt = ids.len();
    // One sequence alone: one slot, prompt batches as long as the prompt (at most 512), and
    // the fastest one-row kernels (no other sequence to be invariant to).
    let cfg = EngineConfig {
        n_parallel: 1,
        n_ctx,
        chunk: n_prompt.min(512),
        max_queue: 1,
        kv_type: args.kv_type.into(),
        row_invariant: false,
        prefix_cache: false,
    };
    let request = Request {
        prompt: ids.clone(),
        max_tokens: if args.n_predict < 0 { usize::MAX } else { args.n_predict as usize },
        samplers: vec![sampler_cfg.clone()],
        ignore_eos: args.ignore_eos,
        ..Request::default()
    };
    let mut g = Generation::new(&model, cfg, vec![Job { request, stop: args.stop.clone() }])?;

    let mut stdout = io::stdout().lock();
    if !args.json && !args.no_echo {
        write!(stdout, "{prompt}")?;
        stdout.flush()?;
    }
    let text = match stream(&mut g, !args.json, &interrupted, &mut rss, &mut stdout) {
        Ok(text) => text,
        // A closed pipe (`quill generate ... | head`) ends generation quietly.
        Err(e) if e.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe) => return Ok(()),
        Err(e) => return Err(e),
    };
    if let Some(why) = g.aborted() {
        bail!("generation failed: {why}");
    }
    let report = Report { load_secs, g: &g, prompt_ids: &ids, sampling: &sampler_cfg, text: &text, rss: rss.get() };
    if args.json {
        report.json(&mut stdout)
    } else {
        report.text(&mut stdout, n_ctx)
    }
}

/// A flag set by Ctrl-C; a second Ctrl-C while stopping exits at once.
pub(crate) fn ctrl_c_flag() -> Arc<AtomicBool> {
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
    });
    interrupted
}

impl Args {
    /// Checks the options that need no model; returns the prompt and the sampler settings.
    fn validate(&self) -> Result<(String, SamplerConfig)> {
        let prompt = self.prompt_text()?;
        if prompt.is_empty() {
            bail!("the prompt is empty: give text with -p, -f or on standard input");
        }
        if self.stop.iter().any(String::is_empty) {
            bail!("--stop must not be empty");
        }
        let cfg = self.sampler_config();
        cfg.validate()?;
        if self.n_predict < -1 {
            bail!("-n must be -1 (no limit) or at least 0, got {}", self.n_predict);
        }
        Ok((prompt, cfg))
    }

    /// The session's context: `--ctx`, else the model's; the prompt must fit.
    fn context_for(&self, model: &Gpt2Model<'_>, n_prompt: usize) -> Result<usize> {
        if n_prompt == 0 {
            bail!("the prompt is empty: it has no tokens");
        }
        let n_ctx = if self.ctx == 0 { model.config.n_ctx } else { self.ctx };
        if n_ctx > model.config.n_ctx {
            bail!("--ctx {} is larger than the model's context of {}", n_ctx, model.config.n_ctx);
        }
        if n_prompt > n_ctx {
            bail!("the prompt has {n_prompt} tokens, more than the context of {n_ctx} (use a shorter prompt or a larger --ctx)");
        }
        Ok(n_ctx)
    }
}

/// Runs the generation to its end, streaming the text to `out` when `echo`, sampling memory
/// now and then; returns the whole text.
fn stream(
    g: &mut Generation<'_, '_>,
    echo: bool,
    interrupted: &AtomicBool,
    rss: &mut RssTracker,
    out: &mut impl Write,
) -> Result<String> {
    let (mut text, mut piece) = (String::new(), String::new());
    loop {
        piece.clear();
        if interrupted.load(Ordering::SeqCst) {
            g.interrupt(&mut |_, p| piece.push_str(p));
        }
        let running = g.step(&mut |_, p| piece.push_str(p))?;
        let n = g.text(0).ids().len();
        if n <= 1 || n.is_multiple_of(32) {
            rss.sample();
        }
        text.push_str(&piece);
        if echo && !piece.is_empty() {
            out.write_all(piece.as_bytes())?;
            out.flush()?;
        }
        if !running {
            rss.sample();
            return Ok(text);
        }
    }
}

/// The figures printed after a generation.
struct Report<'r, 'm, 'a> {
    load_secs: f64,
    g: &'r Generation<'m, 'a>,
    prompt_ids: &'r [u32],
    sampling: &'r SamplerConfig,
    text: &'r str,
    rss: Rss,
}

fn tps(n: usize, s: f64) -> f64 {
    if s > 0.0 {
        n as f64 / s
    } else {
        0.0
    }
}

/// Decode steps, as llama.cpp reports them: one per generated token but the first (which
/// the prompt's evaluation gives), at least one when any was generated.
fn decode_steps(n: usize) -> usize {
    n.saturating_sub(1).max(usize::from(n > 0))
}

impl Report<'_, '_, '_> {
    /// One JSON object on stdout (`--json`).
    fn json(&self, out: &mut impl Write) -> Result<()> {
        let (g, m, n_prompt) = (self.g, self.rss, self.prompt_ids.len());
        let ids = g.text(0).ids();
        let doc = json!({
            "text": self.text,
            "prompt_ids": self.prompt_ids,
            "ids": ids,
            "stop": stop_name(g),
            "seed": g.seed(0),
            "load_ms": self.load_secs * 1e3,
            "prompt_tokens": n_prompt,
            "prompt_ms": g.prompt_secs() * 1e3,
            "prompt_tps": tps(n_prompt, g.prompt_secs()),
            "gen_tokens": ids.len(),
            "gen_ms": g.gen_secs() * 1e3,
            "gen_tps": tps(decode_steps(ids.len()), g.gen_secs()),
            "peak_rss_bytes": m.peak,
            "rss_file_bytes": m.file,
            "rss_anon_bytes": m.anon,
            "kv_cache_bytes": g.kv_bytes(),
        });
        serde_json::to_writer(&mut *out, &doc)?;
        writeln!(out)?;
        Ok(())
    }

    /// Ends the streamed text, then llama.cpp-style timings on stderr.
    fn text(&self, out: &mut impl Write, n_ctx: usize) -> Result<()> {
        let (g, m, n_prompt) = (self.g, self.rss, self.prompt_ids.len());
        let steps = decode_steps(g.text(0).ids().len());
        writeln!(out)?;
        out.flush()?;
        match g.finish(0) {
            Some(Finish::Context) => eprintln!("quill: stopped: the context of {n_ctx} tokens is full"),
            Some(Finish::Interrupted) => eprintln!("quill: interrupted"),
            _ => {}
        }
        eprintln!();
        eprintln!("load time     = {:9.2} ms", self.load_secs * 1e3);
        eprintln!(
            "prompt eval   = {:9.2} ms / {:5} tokens ({:8.2} ms per token, {:8.2} tokens per second)",
            g.prompt_secs() * 1e3,
            n_prompt,
            g.prompt_secs() * 1e3 / n_prompt as f64,
            tps(n_prompt, g.prompt_secs())
        );
        eprintln!(
            "eval          = {:9.2} ms / {:5} runs   ({:8.2} ms per token, {:8.2} tokens per second)",
            g.gen_secs() * 1e3,
            steps,
            if steps > 0 { g.gen_secs() * 1e3 / steps as f64 } else { 0.0 },
            tps(steps, g.gen_secs())
        );
        eprintln!(
            "memory        = {:9.2} MiB peak RSS: {:.2} MiB file-backed (weights), {:.2} MiB anonymous ({:.2} MiB KV cache)",
            mib(m.peak),
            mib(m.file),
            mib(m.anon),
            mib(g.kv_bytes() as u64)
        );
        eprintln!("sampling      = seed {}, {}, stop: {}", g.seed(0), self.sampling.describe_chain(), stop_name(g));
        Ok(())
    }
}

fn stop_name(g: &Generation<'_, '_>) -> &'static str {
    g.finish(0).map_or("", Finish::name)
}
