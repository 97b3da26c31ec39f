//! `quill bench`: prompt processing and generation speed with llama-bench's definitions, so
//! the figures compare one to one: `pp512` is tokens/s for a 512-token prompt in one batch from
//! an empty cache, `tg128` tokens/s for 128 single-token decodes from an empty cache (random
//! tokens, no sampling); mean and standard deviation over repetitions after a warm-up.

use std::io::Write;
use std::time::Instant;

use anyhow::{bail, Result};
use quill_gpt2::{Gpt2Model, KvType, Session, SessionOptions};
use serde_json::{json, Value as Json};

use crate::common::{KvTypeArg, Loaded, ModelArgs};
use crate::mem::{mib, Rss, RssTracker};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Prompt tokens for the pp test (0: skip).
    #[arg(short = 'p', long = "n-prompt", default_value_t = 512)]
    n_prompt: usize,
    /// Generated tokens for the tg test (0: skip).
    #[arg(short = 'n', long = "n-gen", default_value_t = 128)]
    n_gen: usize,
    /// Repetitions of each test.
    #[arg(short = 'r', long = "repetitions", default_value_t = 5)]
    reps: usize,
    /// Context already in the cache when each test starts (llama-bench's -d): tg128 at depth
    /// 1024 measures decoding late in a long text, where attention reads the whole cache.
    #[arg(short = 'd', long = "n-depth", default_value_t = 0)]
    depth: usize,
    /// KV cache storage type.
    #[arg(long, value_enum, default_value_t = KvTypeArg::F16)]
    kv_type: KvTypeArg,
    /// Print a JSON list of rows shaped like llama-bench's `-o json`.
    #[arg(long)]
    json: bool,
}

/// llama-bench's `std::rand() % n_vocab` tokens, from a fixed-seed generator.
struct Tokens(u64);

impl Tokens {
    fn next(&mut self, n_vocab: usize) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n_vocab as u64) as u32
    }
}

/// Empties the session, then fills `depth` positions (untimed).
fn start(s: &mut Session<'_, '_>, depth: usize, rng: &mut Tokens, n_vocab: usize, buf: &mut Vec<u32>) -> Result<()> {
    s.reset();
    if depth > 0 {
        buf.clear();
        buf.extend((0..depth).map(|_| rng.next(n_vocab)));
        s.prefill(buf)?;
    }
    Ok(())
}

fn run_pp(s: &mut Session<'_, '_>, n: usize, rng: &mut Tokens, n_vocab: usize, buf: &mut Vec<u32>) -> Result<f64> {
    buf.clear();
    buf.extend((0..n).map(|_| rng.next(n_vocab)));
    let t = Instant::now();
    s.prefill(buf)?;
    Ok(t.elapsed().as_secs_f64())
}

fn run_tg(s: &mut Session<'_, '_>, n: usize, rng: &mut Tokens, n_vocab: usize) -> Result<f64> {
    let mut token = rng.next(n_vocab);
    let t = Instant::now();
    for _ in 0..n {
        s.decode(token)?;
        token = rng.next(n_vocab);
    }
    Ok(t.elapsed().as_secs_f64())
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 { v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    (mean, var.sqrt())
}

/// A model description in llama-bench's style, sized in millions: "gpt2 124M Q4_0", "gpt2 1558M Q8_0".
fn describe(n_params: u64, file_type: &str) -> String {
    let size = match n_params {
        n if n >= 10_000_000_000 => format!("{:.1}B", n as f64 / 1e9),
        n if n >= 10_000_000 => format!("{}M", (n as f64 / 1e6).round()),
        n => format!("{:.2}M", n as f64 / 1e6),
    };
    format!("gpt2 {size} {file_type}")
}

/// What the rows describe: the model file and this run's settings.
struct Setup {
    path: String,
    model_type: String,
    file_type: String,
    n_params: u64,
    size: u64,
    /// Weights read per generated token.
    tg_bytes: u64,
    load_ms: f64,
    threads: usize,
    kv: KvType,
    depth: usize,
}

pub fn run(args: Args) -> Result<()> {
    if args.reps == 0 {
        bail!("--repetitions must be at least 1");
    }
    if args.n_prompt == 0 && args.n_gen == 0 {
        bail!("nothing to measure: -p and -n are both 0");
    }
    args.model.init_threads()?;
    let mut rss = RssTracker::new();
    let loaded = args.model.load()?;
    let model = loaded.model()?;
    let setup = Setup::new(&args, &loaded, &model)?;
    let n_ctx = args.depth + args.n_prompt.max(args.n_gen).max(1);
    if n_ctx > model.config.n_ctx {
        bail!("the tests need a context of {n_ctx} tokens (-d + max(-p, -n)), the model has {}", model.config.n_ctx);
    }
    let opts = SessionOptions { n_ctx, n_batch: args.n_prompt.clamp(1, 512), kv_type: setup.kv };
    let mut session = model.session(opts)?;
    let mut rows = Vec::new();
    for (test, n) in [("pp", args.n_prompt), ("tg", args.n_gen)] {
        if n > 0 {
            let secs = measure(&mut session, (test, n, args.depth), args.reps, model.config.n_vocab, &mut rss)?;
            rows.push(setup.row(test, n, &secs, rss.get()));
        }
    }
    if args.json {
        let mut out = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, &rows)?;
        writeln!(out)?;
        return Ok(());
    }
    setup.print_table(&rows, rss.get())
}

impl Setup {
    fn new(args: &Args, loaded: &Loaded, model: &Gpt2Model<'_>) -> Result<Setup> {
        let md = loaded.file.metadata();
        let file_type = quill_convert::file_type_of(md).map(|f| f.name().to_uppercase()).unwrap_or_else(|| "?".into());
        let (mut n_params, mut size) = (0u64, 0u64);
        for t in loaded.file.tensor_infos() {
            n_params += t.n_elements;
            size += t.n_bytes;
        }
        Ok(Setup {
            path: args.model.path()?.display().to_string(),
            model_type: describe(n_params, &file_type),
            file_type,
            n_params,
            size,
            tg_bytes: weight_bytes_per_token(model),
            load_ms: loaded.elapsed() * 1e3,
            threads: rayon::current_num_threads(),
            kv: args.kv_type.into(),
            depth: args.depth,
        })
    }

    /// One row shaped like llama-bench's JSON, plus Quill's own `quill_*` fields.
    fn row(&self, test: &str, n: usize, secs: &[f64], m: Rss) -> Json {
        let ts: Vec<f64> = secs.iter().map(|s| n as f64 / s).collect();
        let ns: Vec<f64> = secs.iter().map(|s| s * 1e9).collect();
        let (avg_ts, sd_ts) = mean_sd(&ts);
        let (avg_ns, sd_ns) = mean_sd(&ns);
        let kv = self.kv.name();
        json!({
            "build_commit": option_env!("QUILL_GIT_COMMIT").unwrap_or("unknown"),
            "cpu_info": quill_sysinfo::cpu().name,
            "backends": "CPU",
            "model_filename": self.path,
            "model_type": self.model_type,
            "model_size": self.size,
            "model_n_params": self.n_params,
            "n_batch": 512,
            "n_ubatch": 512,
            "n_threads": self.threads,
            "type_k": kv,
            "type_v": kv,
            "n_prompt": if test == "pp" { n } else { 0 },
            "n_gen": if test == "tg" { n } else { 0 },
            "n_depth": self.depth,
            "test_time": quill_sysinfo::UtcTime::now().rfc3339(),
            "avg_ns": avg_ns.round() as u64,
            "stddev_ns": sd_ns.round() as u64,
            "avg_ts": avg_ts,
            "stddev_ts": sd_ts,
            "samples_ns": ns.iter().map(|v| v.round() as u64).collect::<Vec<_>>(),
            "samples_ts": ts,
            "quill_load_ms": self.load_ms,
            "quill_file_type": self.file_type,
            "quill_weight_bytes_per_token": if test == "tg" { Json::from(self.tg_bytes) } else { Json::Null },
            "quill_rss_peak_bytes": m.peak,
            "quill_rss_file_bytes": m.file,
            "quill_rss_anon_bytes": m.anon,
        })
    }

    /// llama-bench's markdown table, then load time and memory.
    fn print_table(&self, rows: &[Json], m: Rss) -> Result<()> {
        let mut out = std::io::stdout().lock();
        writeln!(out, "| model | size | params | backend | threads | test | t/s |")?;
        writeln!(out, "| --- | ---: | ---: | --- | ---: | ---: | ---: |")?;
        for r in rows {
            let mut test = if r["n_prompt"].as_u64() > Some(0) {
                format!("pp{}", r["n_prompt"])
            } else {
                format!("tg{}", r["n_gen"])
            };
            if self.depth > 0 {
                test += &format!(" @ d{}", self.depth);
            }
            writeln!(
                out,
                "| {} | {:.2} MiB | {:.2} M | CPU | {} | {} | {:.2} ± {:.2} |",
                self.model_type,
                mib(self.size),
                self.n_params as f64 / 1e6,
                self.threads,
                test,
                r["avg_ts"].as_f64().unwrap_or(0.0),
                r["stddev_ts"].as_f64().unwrap_or(0.0)
            )?;
        }
        writeln!(
            out,
            "\nload {:.2} ms; peak RSS {:.2} MiB ({:.2} MiB file-backed, {:.2} MiB anonymous); weights read per generated token {:.2} MiB",
            self.load_ms,
            mib(m.peak),
            mib(m.file),
            mib(m.anon),
            mib(self.tg_bytes)
        )?;
        Ok(())
    }
}

/// Weights read per generated token: every matrix once, the output projection once, one row
/// each of the two embeddings (the tied embedding counts once, as the output).
fn weight_bytes_per_token(model: &Gpt2Model<'_>) -> u64 {
    let w = &model.weights;
    let mut bytes: u64 = w
        .layers
        .iter()
        .map(|l| (l.attn_qkv.data.len() + l.attn_out.data.len() + l.ffn_up.data.len() + l.ffn_down.data.len()) as u64)
        .sum();
    bytes += w.output.data.len() as u64 + w.position_embd.row_bytes() as u64;
    if !std::ptr::eq(w.output.data, w.token_embd.data) {
        bytes += w.token_embd.row_bytes() as u64;
    }
    bytes
}

/// Seconds of each of `reps` runs of test `(name, tokens, depth)`, after a warm-up (as
/// llama-bench: a short prompt or one token), each run starting from `depth` positions.
fn measure(
    session: &mut Session<'_, '_>,
    (test, n, depth): (&str, usize, usize),
    reps: usize,
    n_vocab: usize,
    rss: &mut RssTracker,
) -> Result<Vec<f64>> {
    let mut rng = Tokens(0x9E37_79B9_7F4A_7C15);
    let mut buf = Vec::new();
    let mut once = |session: &mut Session<'_, '_>, n: usize| {
        start(session, depth, &mut rng, n_vocab, &mut buf)?;
        if test == "pp" {
            run_pp(session, n, &mut rng, n_vocab, &mut buf)
        } else {
            run_tg(session, n, &mut rng, n_vocab)
        }
    };
    once(session, if test == "pp" { n.min(32) } else { 1 })?;
    let mut secs = Vec::with_capacity(reps);
    for _ in 0..reps {
        secs.push(once(session, n)?);
        rss.sample();
    }
    Ok(secs)
}
