//! `quill generate --batch FILE`: many prompts run together on the engine (llama.cpp's
//! `llama-parallel` as one command), one JSON line out per completion, in input order, each
//! written as soon as it and every one before it have ended.

use std::io::{self, BufRead, Write};
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use quill_engine::{EngineConfig, Finish, Generation, Job, Request};
use quill_gpt2::Gpt2Model;
use quill_sampler::SamplerConfig;
use quill_server::params::{self, Defaults};
use serde_json::{json, Value};

use super::{ctrl_c_flag, Args};

/// Where a job came from: the 1-based line of the file, the prompt's index in that line,
/// and the prompt as text.
struct Origin {
    line: usize,
    prompt_index: usize,
    prompt: String,
}

/// Reads the batch file ('-': standard input): every line checked before any work, an error
/// naming the file, the line and the field.
fn read_lines(args: &Args, model: &Gpt2Model<'_>, defaults: &Defaults) -> Result<(Vec<Origin>, Vec<Job>)> {
    let path = args.batch.as_ref().expect("batch mode");
    let name = path.display().to_string();
    let reader: Box<dyn BufRead> = if name == "-" {
        Box::new(io::stdin().lock())
    } else {
        Box::new(io::BufReader::new(std::fs::File::open(path).with_context(|| name.clone())?))
    };
    let (mut origins, mut jobs) = (Vec::new(), Vec::new());
    let n_vocab = model.config.n_vocab;
    for (i, text) in reader.lines().enumerate() {
        let text = text.with_context(|| name.clone())?;
        let at = format!("{name}:{}", i + 1);
        if text.trim().is_empty() {
            continue;
        }
        let body = if text.trim_start().starts_with('{') {
            serde_json::from_str::<Value>(&text).with_context(|| format!("{at}: not a JSON object"))?
        } else {
            json!({ "prompt": text })
        };
        let p = params::completion_with(&body, &model.tokenizer, n_vocab, defaults)
            .map_err(|e| anyhow::anyhow!("{at}: {}", e.message))?;
        for (prompt_index, pr) in p.prompts.iter().enumerate() {
            if pr.ids.is_empty() {
                bail!("{at}: the prompt is empty: it has no tokens");
            }
            let samplers = (0..p.n as u64)
                .map(|c| SamplerConfig { seed: p.sampler.seed.map(|s| s.wrapping_add(c)), ..p.sampler.clone() })
                .collect();
            let request = Request {
                prompt: pr.ids.clone(),
                max_tokens: p.max_tokens,
                samplers,
                ignore_eos: p.ignore_eos,
                ..Request::default()
            };
            jobs.push(Job { request, stop: p.stop.clone() });
            origins.push(Origin { line: i + 1, prompt_index, prompt: pr.text.clone() });
        }
    }
    if jobs.is_empty() {
        bail!("{name}: no prompts (one per line, or JSON objects with a \"prompt\")");
    }
    Ok((origins, jobs))
}

pub fn run(args: &Args) -> Result<()> {
    let interrupted = ctrl_c_flag();
    if args.parallel == 0 {
        bail!("--parallel must be at least 1");
    }
    let sampler = args.sampler_config();
    sampler.validate()?;
    if args.n_predict < -1 {
        bail!("-n must be -1 (no limit) or at least 0, got {}", args.n_predict);
    }
    args.model.init_threads()?;
    let loaded = args.model.load()?;
    let model = loaded.model()?;
    let max_tokens = if args.n_predict < 0 { usize::MAX } else { args.n_predict as usize };
    let defaults = Defaults { sampler, max_tokens, stop: args.stop.clone(), ignore_eos: args.ignore_eos };
    let (origins, jobs) = read_lines(args, &model, &defaults)?;
    let n_ctx = if args.ctx == 0 { model.config.n_ctx } else { args.ctx };
    let completions: usize = jobs.iter().map(|j| j.request.samplers.len()).sum();
    let widest = jobs.iter().map(|j| j.request.samplers.len()).max().unwrap_or(1);
    let cfg = EngineConfig {
        n_parallel: args.parallel.min(completions).max(widest),
        n_ctx,
        max_queue: jobs.len(),
        kv_type: args.kv_type.into(),
        ..EngineConfig::default()
    };
    let n_prompt: usize = jobs.iter().map(|j| j.request.prompt.len()).sum();
    let mut g = Generation::new(&model, cfg, jobs)?;
    let t0 = Instant::now();
    let mut out = io::stdout().lock();
    let mut texts = vec![String::new(); g.len()];
    let mut written = 0;
    // Each completion's index among its prompt's `n` (a prompt's completions are consecutive).
    let index: Vec<usize> = (0..g.len())
        .scan((usize::MAX, 0), |(job, k), i| {
            *k = if g.job_of(i) == *job { *k + 1 } else { 0 };
            *job = g.job_of(i);
            Some(*k)
        })
        .collect();
    loop {
        if interrupted.load(Ordering::SeqCst) {
            g.interrupt(&mut |i, p| texts[i].push_str(p));
        }
        let running = g.step(&mut |i, p| texts[i].push_str(p))?;
        while written < g.len() && g.finish(written).is_some() {
            let origin = &origins[g.job_of(written)];
            write_one(&mut out, &g, origin, written, index[written], &texts[written])?;
            written += 1;
        }
        if !running {
            break;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let generated: usize = (0..g.len()).map(|i| g.text(i).ids().len()).sum();
    eprintln!(
        "quill: {} completions of {} prompts ({n_prompt} prompt tokens, {generated} generated) in {secs:.2} s: {:.1} generated tokens per second, {} at once",
        g.len(),
        origins.len(),
        generated as f64 / secs.max(1e-9),
        g.config().n_parallel
    );
    if let Some(why) = g.aborted() {
        bail!("generation failed: {why}");
    }
    Ok(())
}

/// Completion `i` as one JSON line: where it came from (`line`, `prompt_index` within the
/// line, `index` among its `n`), the prompt, the text, the tokens, why it ended, its seed.
fn write_one(
    out: &mut impl Write,
    g: &Generation<'_, '_>,
    origin: &Origin,
    i: usize,
    index: usize,
    text: &str,
) -> Result<()> {
    let doc = json!({
        "line": origin.line,
        "prompt_index": origin.prompt_index,
        "index": index,
        "prompt": origin.prompt,
        "text": text,
        "ids": g.text(i).ids(),
        "stop": g.finish(i).map_or("", Finish::name),
        "seed": g.seed(i),
        "prompt_tokens": g.prompt_tokens(g.job_of(i)),
    });
    serde_json::to_writer(&mut *out, &doc)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}
