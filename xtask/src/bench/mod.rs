//! `cargo xtask bench`: the whole speed and memory suite in one command.

mod bandwidth;
mod ct2;
mod models;
mod serve;
mod serve_prefix;
mod step;
mod svg;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value as Json};

/// Options of the suite.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub what: Option<What>,
    /// A tiny model only, few repetitions: a smoke test of the whole pipeline.
    #[arg(long)]
    pub quick: bool,
    /// llama.cpp's llama-bench, run on the very same files, alternating with Quill repetition by
    /// repetition [env: LLAMA_BENCH].
    #[arg(long, env = "LLAMA_BENCH")]
    pub llama_bench: Option<PathBuf>,
    /// A Python with CTranslate2 (and torch + transformers to convert): runs CTranslate2 int8 on
    /// the same checkpoints beside the others [env: CT2_PYTHON].
    #[arg(long, env = "CT2_PYTHON")]
    pub ct2: Option<PathBuf>,
    /// Threads for both engines.
    #[arg(short, long, default_value_t = 2)]
    pub threads: usize,
    /// Repetitions per test.
    #[arg(short, long)]
    pub reps: Option<usize>,
    /// Model shapes (124M, 1558M; tiny with --quick).
    #[arg(long, value_delimiter = ',')]
    pub shapes: Option<Vec<String>>,
    /// Types (quill quantize names).
    #[arg(long, value_delimiter = ',', default_value = "f16,q8_0,q4_0,q4_k_m")]
    pub types: Vec<String>,
    /// Where to write RESULTS.md, results.json and throughput.svg [default: bench/<backend>, one
    /// folder per instruction set, so that machines with and without AVX-512 keep their tables].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Do not rewrite the README's results section.
    #[arg(long)]
    pub no_readme: bool,
}

/// Benchmarks other than the default suite.
#[derive(clap::Subcommand)]
pub enum What {
    /// Many concurrent streaming clients against `quill serve` (and `llama-server`).
    Serve(Box<serve::ServeArgs>),
    /// One decode step's weight products at m = 1 to 64 token rows (`benches/decode_step.rs`),
    /// with its table and curve in `bench/<kernels>/`.
    Step(step::StepArgs),
}

/// Mean and standard deviation of a test, from a JSON row.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Ts {
    avg: f64,
    sd: f64,
}

impl Ts {
    fn of(row: &Json) -> Ts {
        Ts { avg: row["avg_ts"].as_f64().unwrap_or(0.0), sd: row["stddev_ts"].as_f64().unwrap_or(0.0) }
    }
}

/// Everything measured for one model file.
struct Row {
    shape: String,
    file_type: String,
    size: u64,
    n_params: u64,
    pp: Ts,
    tg: Ts,
    llama_pp: Option<Ts>,
    llama_tg: Option<Ts>,
    ct2: Option<ct2::Ct2Result>,
    /// Multiply-adds per prompt token (weights and causal attention), for the compute rate.
    pp_macs: Option<f64>,
    tg_bytes: u64,
    /// The read bandwidth measured just before this file's runs (GB/s): its tg's fraction of it.
    bw: f64,
    load_ms: f64,
    rss_file: u64,
    rss_anon: u64,
    quill_rows: Json,
    llama_rows: Json,
}

fn run_json(cmd: &mut Command, what: &str) -> Result<Json> {
    let o = cmd.output().with_context(|| format!("running {what}"))?;
    if !o.status.success() {
        bail!("{what} failed ({}): {}", o.status, String::from_utf8_lossy(&o.stderr));
    }
    serde_json::from_slice(&o.stdout)
        .with_context(|| format!("{what} printed no JSON: {}", String::from_utf8_lossy(&o.stdout)))
}

/// The file llama.cpp (llama-bench, llama-server) runs for model `m`: the same file, but for Quill's interleaved
/// `q4_0_8_8` (which today's llama.cpp no longer reads) its Q4_0 original beside it, the same
/// values, which llama.cpp's loader repacks into that very layout in memory.
pub(crate) fn llama_file(m: &models::BenchModel) -> Option<PathBuf> {
    if m.file_type != "q4_0_8_8" {
        return Some(m.path.clone());
    }
    Some(m.path.with_file_name("q4_0.gguf")).filter(|p| p.is_file())
}

/// `rows` (llama-bench's JSON rows) with `model_filename` set to `name`.
fn with_filename(mut rows: Json, name: &str) -> Json {
    for r in rows.as_array_mut().into_iter().flatten() {
        if let Some(o) = r.as_object_mut() {
            o.insert("model_filename".into(), Json::from(name));
        }
    }
    rows
}

/// `reps` rounds on one model file of one `quill bench` repetition, then one `llama-bench`
/// repetition (with `llama`: the tool and its file), so that a machine that slows down or
/// speeds up over the minutes a model takes (shared hosts do) moves both engines' numbers.
/// `ppt` is the prompt tokens, generated tokens and threads. Each engine's rows, merged over
/// the rounds (llama.cpp's: null without it).
fn alternate(
    quill: &Path,
    llama: Option<(&Path, &str)>,
    path: &str,
    ppt: [&str; 3],
    reps: usize,
) -> Result<(Json, Json)> {
    let [p, n, t] = ppt;
    let (mut q_rounds, mut l_rounds) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        q_rounds.push(run_json(
            Command::new(quill).args(["bench", "-m", path, "-p", p, "-n", n, "-r", "1", "-t", t, "--json"]),
            "quill bench",
        )?);
        if let Some((lb, lpath)) = llama {
            l_rounds.push(run_json(
                Command::new(lb).args(["-m", lpath, "-p", p, "-n", n, "-r", "1", "-t", t, "-o", "json"]),
                "llama-bench",
            )?);
        }
    }
    Ok((merge_rounds(q_rounds), if llama.is_some() { merge_rounds(l_rounds) } else { Json::Null }))
}

/// One engine's JSON rows from several one-repetition runs (the same tests in the same order)
/// as if from one run of them all: each test's samples together, with their mean and standard
/// deviation (llama-bench's `avg_*` and `stddev_*`); other fields from the first run.
fn merge_rounds(rounds: Vec<Json>) -> Json {
    let mut rounds = rounds.into_iter();
    let Some(mut merged) = rounds.next() else { return Json::Null };
    let rest: Vec<Json> = rounds.collect();
    for (i, row) in merged.as_array_mut().into_iter().flatten().enumerate() {
        for unit in ["ns", "ts"] {
            let key = format!("samples_{unit}");
            let samples: Vec<f64> = std::iter::once(&*row)
                .chain(rest.iter().filter_map(|r| r.get(i)))
                .flat_map(|r| r[&key].as_array().cloned().unwrap_or_default())
                .filter_map(|v| v.as_f64())
                .collect();
            if samples.is_empty() {
                continue;
            }
            let n = samples.len() as f64;
            let mean = samples.iter().sum::<f64>() / n;
            let var = samples.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1.0).max(1.0);
            row[format!("avg_{unit}")] = json!(mean);
            row[format!("stddev_{unit}")] = json!(var.sqrt());
            row[key] = json!(samples);
        }
    }
    merged
}

fn pick(rows: &Json, prompt: bool) -> Option<&Json> {
    rows.as_array()?.iter().find(|r| {
        let (p, g) = (r["n_prompt"].as_u64().unwrap_or(0), r["n_gen"].as_u64().unwrap_or(0));
        if prompt {
            p > 0 && g == 0
        } else {
            g > 0 && p == 0
        }
    })
}

/// Builds the `quill` binary (release) and returns its path.
pub(crate) fn build_quill(repo: &Path) -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status =
        Command::new(&cargo).args(["build", "--release", "--quiet", "-p", "quill-cli"]).current_dir(repo).status()?;
    if !status.success() {
        bail!("cargo build failed");
    }
    Ok(repo.join("target/release/quill"))
}

/// The version line a llama.cpp tool prints for `--version`.
fn llama_version(tool: &Path) -> Result<String> {
    let o = Command::new(tool).arg("--version").output().with_context(|| format!("running {}", tool.display()))?;
    let v = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    Ok(v.lines().find(|l| l.contains("version")).unwrap_or("unknown").trim().to_owned())
}

fn git(repo: &Path, args: &[&str]) -> String {
    Command::new("git")
        .args(args)
        .current_dir(repo)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

pub fn run(repo: &Path, args: Args) -> Result<()> {
    match args.what {
        Some(What::Serve(a)) => return serve::run(repo, *a),
        Some(What::Step(a)) => return step::run(repo, a),
        None => {}
    }
    let started = Instant::now();
    let log = |msg: &str| eprintln!("[{:>6.1}s] {msg}", started.elapsed().as_secs_f64());
    let shapes = args.shapes.clone().unwrap_or_else(|| {
        if args.quick {
            vec!["tiny".into()]
        } else {
            vec!["124M".into(), "1558M".into()]
        }
    });
    let reps = args.reps.unwrap_or(if args.quick { 2 } else { 3 }).max(1);
    let (n_prompt, n_gen) = if args.quick { (32, 16) } else { (512, 128) };
    let backend = quill_kernels::Kernels::init()?.backend();
    let out_dir = args.out.clone().unwrap_or_else(|| repo.join("bench").join(backend.name()));

    log("building quill (release)");
    let quill = build_quill(repo)?;
    let llama_version = args.llama_bench.as_deref().map(llama_version).transpose()?;

    let models = models::prepare(repo, &quill, &shapes, &args.types, &log)?;
    log(&format!("measuring read bandwidth with {} threads", args.threads));
    let bw = bandwidth::read_gbps(args.threads, if args.quick { 2 } else { 5 })?;
    log(&format!("read bandwidth: {bw:.1} GB/s"));
    let ms = if args.quick { 50 } else { 300 };
    let int8 = quill_kernels::ceiling::int8_macs(backend, args.threads, ms)?;
    let f32_peak = quill_kernels::ceiling::f32_macs(backend, args.threads, ms)?;
    let g = |v: Option<f64>| v.map(|v| format!("{:.0} G", v / 1e9)).unwrap_or_else(|| "-".into());
    log(&format!("{backend} ceilings: int8 {} multiply-adds/s, f32 {}", g(int8), g(f32_peak)));
    let mut ct2_runs: Vec<(String, ct2::Ct2Result)> = Vec::new();

    let mut rows = Vec::new();
    for (i, m) in models.iter().enumerate() {
        let path = m.path.to_str().context("utf-8 path")?;
        let (p, n, t) = (n_prompt.to_string(), n_gen.to_string(), args.threads.to_string());
        let llama = args.llama_bench.as_ref().zip(llama_file(m));
        log(&format!(
            "[{}/{}] {} {} {}: {reps} rounds",
            i + 1,
            models.len(),
            if llama.is_some() { "quill bench and llama-bench" } else { "quill bench" },
            m.shape,
            m.file_type
        ));
        warm_page_cache(&m.path)?;
        // The host's bandwidth drifts over a run as its speed does: each file's tg is set against
        // the bandwidth measured just before it, not only the one at the start.
        let row_bw = bandwidth::read_gbps(args.threads, 3)?;
        let llama = match &llama {
            Some((lb, lpath)) => {
                warm_page_cache(lpath)?;
                Some((lb.as_path(), lpath.to_str().context("utf-8 path")?))
            }
            None => None,
        };
        let (q, llama_rows) = alternate(&quill, llama, path, [&p, &n, &t], reps)?;
        let ct2 = match &args.ct2 {
            Some(py) if m.shape != "tiny" => {
                if !ct2_runs.iter().any(|(s, _)| *s == m.shape) {
                    log(&format!("[{}/{}] CTranslate2 int8 {}", i + 1, models.len(), m.shape));
                    let r = ct2::run(repo, py, &m.shape, n_prompt, n_gen, reps, args.threads)?;
                    ct2_runs.push((m.shape.clone(), r));
                }
                ct2_runs.iter().find(|(s, _)| *s == m.shape).map(|(_, r)| r.clone())
            }
            _ => None,
        };
        let pp_macs = models::spec(&m.shape)?.map(|s| {
            let (l, e) = (s.n_layer as f64, s.n_embd as f64);
            // 12 e^2 per layer in the four weight matrices; attention reads on average half of
            // the prompt's keys and values (2 multiply-adds per element each).
            l * (12.0 * e * e + n_prompt as f64 * e)
        });
        // Results name the file relative to the repository: no machine's paths in committed files.
        let rel = m.path.strip_prefix(repo).unwrap_or(&m.path).display().to_string();
        let (q, llama_rows) = (with_filename(q, &rel), with_filename(llama_rows, &rel));
        let (qpp, qtg) = (pick(&q, true).context("no pp row")?, pick(&q, false).context("no tg row")?);
        let row = Row {
            shape: m.shape.clone(),
            file_type: m.file_type.clone(),
            size: qpp["model_size"].as_u64().unwrap_or(0),
            n_params: qpp["model_n_params"].as_u64().unwrap_or(0),
            pp: Ts::of(qpp),
            tg: Ts::of(qtg),
            llama_pp: pick(&llama_rows, true).map(Ts::of),
            llama_tg: pick(&llama_rows, false).map(Ts::of),
            ct2,
            pp_macs,
            tg_bytes: qtg["quill_weight_bytes_per_token"].as_u64().unwrap_or(0),
            bw: row_bw,
            load_ms: qtg["quill_load_ms"].as_f64().unwrap_or(0.0),
            rss_file: qtg["quill_rss_file_bytes"].as_u64().unwrap_or(0),
            rss_anon: qtg["quill_rss_anon_bytes"].as_u64().unwrap_or(0),
            quill_rows: q,
            llama_rows,
        };
        log(&format!(
            "    pp{n_prompt} {:.1} t/s{}, tg{n_gen} {:.1} t/s{}; read bandwidth before it {:.1} GB/s",
            row.pp.avg,
            row.llama_pp.map(|l| format!(" (llama.cpp {:.1}, x{:.2})", l.avg, row.pp.avg / l.avg)).unwrap_or_default(),
            row.tg.avg,
            row.llama_tg.map(|l| format!(" (llama.cpp {:.1}, x{:.2})", l.avg, row.tg.avg / l.avg)).unwrap_or_default(),
            row.bw,
        ));
        rows.push(row);
    }

    let quill_sysinfo::Cpu { name: cpu, simd_flags: flags } = quill_sysinfo::cpu();
    let commit = git(repo, &["rev-parse", "--short", "HEAD"]);
    let dirty = !git(repo, &["status", "--porcelain", "--untracked-files=no"]).is_empty();
    let commit = if dirty { format!("{commit} (with uncommitted changes)") } else { commit };
    let machine = Machine {
        cpu,
        flags,
        backend: backend.name().into(),
        int8,
        f32_peak,
        ct2_version: ct2_runs.first().map(|(_, r)| r.version.clone()),
        threads: args.threads,
        commit,
        date: quill_sysinfo::UtcTime::now().readable(),
        bw,
        llama_version,
        reps,
        n_prompt,
        n_gen,
    };
    std::fs::create_dir_all(&out_dir)?;
    let md = markdown(&machine, &rows);
    std::fs::write(out_dir.join("RESULTS.md"), &md)?;
    std::fs::write(out_dir.join("results.json"), serde_json::to_string_pretty(&to_json(&machine, &rows))? + "\n")?;
    std::fs::write(out_dir.join("throughput.svg"), chart(&machine, &rows))?;
    log(&format!("wrote {}/RESULTS.md, results.json, throughput.svg", out_dir.display()));
    if !args.no_readme && !args.quick {
        let svg = out_dir.strip_prefix(repo).unwrap_or(&out_dir).join("throughput.svg");
        crate::replace_section(
            &repo.join("README.md"),
            &format!("bench-{}", backend.name()),
            &format!("{md}\n![throughput]({})\n", svg.display()),
        )?;
        log("updated the README's results section");
    }
    print!("{md}");
    Ok(())
}

struct Machine {
    cpu: String,
    flags: Vec<String>,
    backend: String,
    /// Measured int8 and f32 multiply-adds per second of the backend, every thread busy.
    int8: Option<f64>,
    f32_peak: Option<f64>,
    ct2_version: Option<String>,
    threads: usize,
    commit: String,
    date: String,
    bw: f64,
    llama_version: Option<String>,
    reps: usize,
    n_prompt: usize,
    n_gen: usize,
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn ratio(q: Ts, l: Option<Ts>) -> String {
    l.filter(|l| l.avg > 0.0).map(|l| format!("**{:.2}x**", q.avg / l.avg)).unwrap_or_else(|| "-".into())
}

fn ts(t: Option<Ts>) -> String {
    t.map(|t| format!("{:.1} ± {:.1}", t.avg, t.sd)).unwrap_or_else(|| "-".into())
}

fn markdown(m: &Machine, rows: &[Row]) -> String {
    let (p, g) = (m.n_prompt, m.n_gen);
    let mut s = String::new();
    s += "<!-- Generated by `cargo xtask bench`; do not edit by hand. -->\n";
    let peak = |v: Option<f64>| v.map(|v| format!("{:.0} G", v / 1e9)).unwrap_or_else(|| "-".into());
    let (lo, hi) = rows.iter().fold((m.bw, m.bw), |(lo, hi), r| (lo.min(r.bw), hi.max(r.bw)));
    s += &format!(
        "Machine: {} ({}), {} threads, {} kernels; memory read bandwidth {:.1} GB/s at the start and \
         {lo:.1}-{hi:.1} GB/s over the run (measured again before each file: its row's fraction is of that), \
         int8 {} and f32 {} multiply-adds/s (measured by the suite). Quill {}; {}; {}; {}; {} repetitions per \
         test, the engines alternating repetition by repetition.\n\n",
        m.cpu,
        m.flags.join(" "),
        m.threads,
        m.backend,
        m.bw,
        peak(m.int8),
        peak(m.f32_peak),
        m.commit,
        m.llama_version.as_deref().map(|v| format!("llama.cpp {v}")).unwrap_or_else(|| "llama.cpp not run".into()),
        m.ct2_version
            .as_deref()
            .map(|v| format!("CTranslate2 {v} int8"))
            .unwrap_or_else(|| "CTranslate2 not run".into()),
        m.date,
        m.reps
    );
    s += &format!(
        "| model | type | size | Quill pp{p} t/s | llama.cpp pp{p} | ratio | CTranslate2 int8 pp{p} | ratio | Quill tg{g} t/s | llama.cpp tg{g} | ratio | weights/token | tg GB/s | of bandwidth | pp multiply-adds/s | of peak |\n"
    );
    s += "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n";
    for r in rows {
        let gbs = r.tg_bytes as f64 * r.tg.avg / 1e9;
        let ct2 = r.ct2.as_ref().map(|c| c.pp);
        let rate = r.pp_macs.map(|macs| macs * r.pp.avg);
        // Float weights run on the FMA units, quantized ones on the integer dot products.
        let ceiling = if r.file_type.starts_with('f') || r.file_type.starts_with("bf") { m.f32_peak } else { m.int8 };
        s += &format!(
            "| GPT-2 {} | {} | {:.1} MiB | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} MiB | {:.1} | {:.0}% | {} | {} |\n",
            r.shape,
            r.file_type,
            mib(r.size),
            ts(Some(r.pp)),
            ts(r.llama_pp),
            ratio(r.pp, r.llama_pp),
            ts(ct2),
            ratio(r.pp, ct2),
            ts(Some(r.tg)),
            ts(r.llama_tg),
            ratio(r.tg, r.llama_tg),
            mib(r.tg_bytes),
            gbs,
            100.0 * gbs / r.bw,
            rate.map(|v| format!("{:.0} G", v / 1e9)).unwrap_or_else(|| "-".into()),
            match (rate, ceiling) {
                (Some(v), Some(c)) => format!("{:.0}%", 100.0 * v / c),
                _ => "-".into(),
            },
        );
    }
    if rows.iter().any(|r| r.file_type == "q4_0_8_8" && r.llama_tg.is_some()) {
        s += "\nq4_0_8_8 is the Q4_0 file interleaved by 8 rows (`quill quantize --type q4_0_8_8`, the same values): \
              llama.cpp no longer reads such files, so its columns on those rows ran the Q4_0 file, which its loader \
              repacks into the same interleaved layout in private memory.\n";
    }
    let ct2_rows: Vec<&Row> = rows.iter().filter(|r| r.ct2.is_some() && r.file_type == rows[0].file_type).collect();
    if !ct2_rows.is_empty() {
        s += &format!(
            "\nCTranslate2 int8 (one model per shape, converted from the same checkpoint): pp{p} = a {p}-token prompt and \
             one generated token; score = `score_batch` of the same tokens, which also computes all {p} rows of logits; \
             tg{g} = greedy generation.\n\n| model | pp{p} t/s | score t/s | tg{g} t/s |\n| --- | ---: | ---: | ---: |\n"
        );
        for r in ct2_rows {
            let c = r.ct2.as_ref().expect("filtered");
            s += &format!("| GPT-2 {} | {} | {} | {} |\n", r.shape, ts(Some(c.pp)), ts(Some(c.score)), ts(Some(c.tg)));
        }
    }
    s += "\nMemory and load time (Quill, during the tg test; load = open, validate, map and build the tokenizer, with the file in the page cache, which the suite reads before each run): \n\n| model | type | load | RSS file-backed (weights) | RSS anonymous (KV cache, buffers) |\n| --- | --- | ---: | ---: | ---: |\n";
    for r in rows {
        s += &format!(
            "| GPT-2 {} | {} | {:.1} ms | {:.1} MiB | {:.1} MiB |\n",
            r.shape,
            r.file_type,
            r.load_ms,
            mib(r.rss_file),
            mib(r.rss_anon)
        );
    }
    s
}

fn to_json(m: &Machine, rows: &[Row]) -> Json {
    json!({
        "machine": {
            "cpu": m.cpu, "flags": m.flags, "threads": m.threads, "backend": m.backend,
            "read_bandwidth_gbs": m.bw, "int8_macs_per_s": m.int8, "f32_macs_per_s": m.f32_peak,
        },
        "commit": m.commit,
        "date": m.date,
        "llama_cpp": m.llama_version,
        "repetitions": m.reps,
        "rows": rows.iter().map(|r| json!({
            "shape": r.shape,
            "type": r.file_type,
            "size_bytes": r.size,
            "n_params": r.n_params,
            "weight_bytes_per_token": r.tg_bytes,
            "read_bandwidth_gbs": r.bw,
            "quill": r.quill_rows,
            "llama_cpp": r.llama_rows,
            "ctranslate2": r.ct2.as_ref().map(|c| c.json.clone()),
        })).collect::<Vec<_>>(),
    })
}

fn chart(m: &Machine, rows: &[Row]) -> String {
    let mut panels = Vec::new();
    let mut shapes: Vec<&str> = rows.iter().map(|r| r.shape.as_str()).collect();
    shapes.dedup();
    for shape in shapes {
        for (test, n) in [("pp", m.n_prompt), ("tg", m.n_gen)] {
            let groups = rows
                .iter()
                .filter(|r| r.shape == shape)
                .map(|r| {
                    let (q, l) = if test == "pp" { (r.pp, r.llama_pp) } else { (r.tg, r.llama_tg) };
                    let mut bars = vec![("Quill".to_owned(), q.avg)];
                    if let Some(l) = l {
                        bars.push(("llama.cpp".to_owned(), l.avg));
                    }
                    svg::Group { label: r.file_type.clone(), bars }
                })
                .collect();
            panels.push((format!("GPT-2 {shape} {test}{n} (tokens/s)"), groups));
        }
    }
    svg::chart(&format!("Quill vs llama.cpp, {} threads ({})", m.threads, m.cpu), &panels)
}

/// Reads `path` once so that both engines start with the file in the page cache (a cold cache
/// measures the disk, not the engine; this machine's memory reclaim evicts idle files).
fn warm_page_cache(path: &std::path::Path) -> Result<()> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).with_context(|| path.display().to_string())?;
    let mut buf = vec![0u8; 8 << 20];
    while f.read(&mut buf).with_context(|| path.display().to_string())? > 0 {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rounds of one repetition each merge into one row per test: every sample, their mean and
    /// (sample) standard deviation; the other fields from the first round.
    #[test]
    fn merged_rounds_hold_every_sample() {
        let round = |pp: f64, tg: f64, tag: &str| {
            json!([
                {"n_prompt": 512, "n_gen": 0, "samples_ts": [pp], "samples_ns": [1e9 / pp], "avg_ts": pp, "tag": tag},
                {"n_prompt": 0, "n_gen": 128, "samples_ts": [tg], "samples_ns": [1e9 / tg], "avg_ts": tg, "tag": tag},
            ])
        };
        let m =
            merge_rounds(vec![round(100.0, 10.0, "first"), round(300.0, 30.0, "second"), round(200.0, 20.0, "third")]);
        let pp = pick(&m, true).unwrap();
        assert_eq!(pp["samples_ts"], json!([100.0, 300.0, 200.0]));
        assert_eq!(pp["avg_ts"], json!(200.0));
        assert_eq!(pp["stddev_ts"], json!(100.0));
        assert_eq!(pp["tag"], json!("first"));
        let tg = pick(&m, false).unwrap();
        assert_eq!(tg["avg_ts"], json!(20.0));
        assert_eq!(tg["stddev_ts"], json!(10.0));
        assert_eq!(tg["samples_ns"].as_array().map(Vec::len), Some(3));
        assert_eq!(merge_rounds(Vec::new()), Json::Null);
    }
}
