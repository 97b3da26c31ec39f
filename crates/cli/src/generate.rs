//! `quill generate`: stream a continuation of a prompt, then report speed and memory.

use std::io::{self, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use quill_gpt2::{SessionOptions, StopFilter, StreamDecoder};
use quill_sampler::{Sampler, SamplerConfig};
use serde_json::json;

use crate::common::{KvTypeArg, ModelArgs};
use crate::mem::{mib, RssTracker};

#[derive(clap::Args)]
#[command(allow_negative_numbers = true)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// The prompt (else --file, else standard input).
    #[arg(short, long, conflicts_with = "file")]
    prompt: Option<String>,
    /// Read the prompt from this file.
    #[arg(short, long)]
    file: Option<PathBuf>,
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
    fn sampler_config(&self) -> SamplerConfig {
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

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    Eos,
    Matched,
    Length,
    Context,
    Interrupted,
}

impl Stop {
    fn name(self) -> &'static str {
        match self {
            Stop::Eos => "eos",
            Stop::Matched => "stop",
            Stop::Length => "length",
            Stop::Context => "context",
            Stop::Interrupted => "interrupted",
        }
    }
}

pub fn run(args: Args) -> Result<()> {
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = interrupted.clone();
        // A second Ctrl-C while stopping falls back to the default (exit at once).
        let _ = ctrlc::set_handler(move || {
            if flag.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
        });
    }
    let prompt = args.prompt_text()?;
    if prompt.is_empty() {
        bail!("the prompt is empty: give text with -p, -f or on standard input");
    }
    if args.stop.iter().any(String::is_empty) {
        bail!("--stop must not be empty");
    }
    let mut sampler_cfg = args.sampler_config();
    sampler_cfg.validate()?;
    if args.n_predict < -1 {
        bail!("-n must be -1 (no limit) or at least 0, got {}", args.n_predict);
    }

    args.model.init_threads()?;
    let mut rss = RssTracker::new();
    let loaded = args.model.load()?;
    let model = loaded.model()?;
    let load_secs = loaded.elapsed();
    let ids = model.tokenizer.encode(&prompt)?;
    if ids.is_empty() {
        bail!("the prompt is empty: it has no tokens");
    }
    let n_ctx = if args.ctx == 0 { model.config.n_ctx } else { args.ctx };
    if n_ctx > model.config.n_ctx {
        bail!("--ctx {} is larger than the model's context of {}", n_ctx, model.config.n_ctx);
    }
    if ids.len() > n_ctx {
        bail!(
            "the prompt has {} tokens, more than the context of {n_ctx} (use a shorter prompt or a larger --ctx)",
            ids.len()
        );
    }
    let eos = model.tokenizer.eos();
    if let (true, Some(eos)) = (args.ignore_eos, eos) {
        sampler_cfg.logit_bias.push((eos, f32::NEG_INFINITY));
    }
    let mut sampler = Sampler::new(sampler_cfg, model.config.n_vocab)?;
    // Batch buffers sized for this prompt (at most 512 rows): decode needs one.
    let n_batch = ids.len().min(512);
    let mut session = model.session(SessionOptions { n_ctx, n_batch, kv_type: args.kv_type.into() })?;

    let mut stdout = io::stdout().lock();
    let stream = !args.json;
    if stream && !args.no_echo {
        write!(stdout, "{prompt}")?;
        stdout.flush()?;
    }

    let mut run = || -> Result<_> {
        let t0 = Instant::now();
        let mut logits = session.prefill(&ids)?;
        let prompt_secs = t0.elapsed().as_secs_f64();
        rss.sample();
        for &id in &ids {
            sampler.accept(id);
        }
        let mut decoder = StreamDecoder::new();
        let mut filter = StopFilter::new(&args.stop);
        let (mut text, mut piece, mut safe) = (String::new(), String::new(), String::new());
        let mut generated = Vec::new();
        let t1 = Instant::now();
        let limit = if args.n_predict < 0 { usize::MAX } else { args.n_predict as usize };
        let stop = loop {
            if generated.len() >= limit {
                break Stop::Length;
            }
            if interrupted.load(Ordering::SeqCst) {
                break Stop::Interrupted;
            }
            let id = sampler.sample(logits)?;
            sampler.accept(id);
            if Some(id) == eos {
                break Stop::Eos;
            }
            generated.push(id);
            piece.clear();
            decoder.push(model.tokenizer.token_bytes(id), &mut piece);
            safe.clear();
            let hit = filter.push(&piece, &mut safe);
            text.push_str(&safe);
            if stream && !safe.is_empty() {
                stdout.write_all(safe.as_bytes())?;
                stdout.flush()?;
            }
            if hit {
                break Stop::Matched;
            }
            if session.pos() >= n_ctx {
                break Stop::Context;
            }
            if generated.len() % 32 == 0 {
                rss.sample();
            }
            logits = session.decode(id)?;
        };
        let gen_secs = t1.elapsed().as_secs_f64();
        if stop != Stop::Matched {
            safe.clear();
            filter.push(&decoder.finish(), &mut safe);
            filter.finish(&mut safe);
            text.push_str(&safe);
            if stream {
                stdout.write_all(safe.as_bytes())?;
            }
        }
        rss.sample();
        Ok((stop, text, generated, prompt_secs, gen_secs))
    };
    let (stop, text, generated, prompt_secs, gen_secs) = match run() {
        Ok(r) => r,
        // A closed pipe (`quill generate ... | head`) ends generation quietly.
        Err(e) if e.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe) => return Ok(()),
        Err(e) => return Err(e),
    };
    let m = rss.get();
    let n_gen = generated.len();
    // The token that ended generation (EOS) was sampled but not evaluated: speed counts the
    // decode steps, as llama.cpp does.
    let decode_steps = n_gen.saturating_sub(1).max(usize::from(n_gen > 0));
    let tps = |n: usize, s: f64| if s > 0.0 { n as f64 / s } else { 0.0 };
    if args.json {
        let doc = json!({
            "text": text,
            "prompt_ids": ids,
            "ids": generated,
            "stop": stop.name(),
            "seed": sampler.seed(),
            "load_ms": load_secs * 1e3,
            "prompt_tokens": ids.len(),
            "prompt_ms": prompt_secs * 1e3,
            "prompt_tps": tps(ids.len(), prompt_secs),
            "gen_tokens": n_gen,
            "gen_ms": gen_secs * 1e3,
            "gen_tps": tps(decode_steps, gen_secs),
            "peak_rss_bytes": m.peak,
            "rss_file_bytes": m.file,
            "rss_anon_bytes": m.anon,
            "kv_cache_bytes": session.kv_bytes(),
        });
        serde_json::to_writer(&mut stdout, &doc)?;
        writeln!(stdout)?;
        return Ok(());
    }
    writeln!(stdout)?;
    stdout.flush()?;
    match stop {
        Stop::Context => eprintln!("quill: stopped: the context of {n_ctx} tokens is full"),
        Stop::Interrupted => eprintln!("quill: interrupted"),
        _ => {}
    }
    eprintln!();
    eprintln!("load time     = {:9.2} ms", load_secs * 1e3);
    eprintln!(
        "prompt eval   = {:9.2} ms / {:5} tokens ({:8.2} ms per token, {:8.2} tokens per second)",
        prompt_secs * 1e3,
        ids.len(),
        prompt_secs * 1e3 / ids.len() as f64,
        tps(ids.len(), prompt_secs)
    );
    eprintln!(
        "eval          = {:9.2} ms / {:5} runs   ({:8.2} ms per token, {:8.2} tokens per second)",
        gen_secs * 1e3,
        decode_steps,
        if decode_steps > 0 { gen_secs * 1e3 / decode_steps as f64 } else { 0.0 },
        tps(decode_steps, gen_secs)
    );
    eprintln!(
        "memory        = {:9.2} MiB peak RSS: {:.2} MiB file-backed (weights), {:.2} MiB anonymous ({:.2} MiB KV cache)",
        mib(m.peak),
        mib(m.file),
        mib(m.anon),
        mib(session.kv_bytes() as u64)
    );
    eprintln!("sampling      = seed {}, {}, stop: {}", sampler.seed(), sampler.config().describe_chain(), stop.name());
    Ok(())
}
