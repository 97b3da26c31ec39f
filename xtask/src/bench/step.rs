//! `cargo xtask bench step`: the decode-step sweep (`benches/decode_step.rs`: one decode step's
//! weight products at m = 1 to 64 token rows) run through criterion twice, weights streamed
//! from memory (cold: the whole model per step) and cache-resident (hot: one block's matrices
//! over and over, the kernels' compute rate), beside the machine's read bandwidth and int8 / f32
//! ceilings measured in the same run. Read back from criterion's estimates into
//! `bench/<kernels>/decode_step.json`, `decode_step.svg` (each m's time as a multiple of m = 1's,
//! per model and type) and the generated table of `DECODE_STEP.md` (between its
//! `<!-- step:begin -->` and `<!-- step:end -->` lines; the rest of that file is prose and is
//! kept), which says for every row which limit binds: the weights' bytes at the measured
//! bandwidth (memory) or the multiply-adds at the hot rate (compute).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value as Json};

use super::svg;

/// Options of the decode-step sweep.
#[derive(clap::Args)]
pub struct StepArgs {
    /// Model shapes.
    #[arg(long, value_delimiter = ',', default_value = "124M,1558M")]
    pub shapes: Vec<String>,
    /// Weight types (the bench's names: q4_0, q8_0, q4_k, f16, ...).
    #[arg(long, value_delimiter = ',', default_value = "q4_0,q4_0_8_8,q8_0,q4_k,f16")]
    pub types: Vec<String>,
    /// Token rows per step.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3,4,8,16,32,64")]
    pub m: Vec<usize>,
    /// Where to write the results [default: bench/<kernels>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Skip the cache-resident (hot) sweep and the compute-rate columns.
    #[arg(long)]
    pub no_hot: bool,
    /// Run no benches: rebuild the outputs from criterion's last estimates of the same sweep
    /// (the ceilings are measured again).
    #[arg(long)]
    pub report_only: bool,
}

const BEGIN: &str = "<!-- step:begin -->";
const END: &str = "<!-- step:end -->";

/// Criterion's median time of one bench, in ms.
fn median_ms(repo: &Path, group: &str, id: &str) -> Result<f64> {
    let path = repo.join("target/criterion").join(group.replace('/', "_")).join(id).join("new/estimates.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let v: Json = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let ns = v["median"]["point_estimate"].as_f64().with_context(|| format!("{}: no median", path.display()))?;
    Ok(ns / 1e6)
}

/// Runs `cargo bench --bench decode_step` over the sweep, cold or hot, appending each group's
/// weights to `meta`.
fn sweep(repo: &Path, args: &StepArgs, hot: bool, meta: &Path) -> Result<()> {
    let list = |v: &[String]| v.join(",");
    let ms: Vec<String> = args.m.iter().map(|m| m.to_string()).collect();
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["bench", "--bench", "decode_step", "--", "--noplot"])
        .env("QUILL_BENCH_MODELS", list(&args.shapes))
        .env("QUILL_BENCH_TYPES", list(&args.types))
        .env("QUILL_BENCH_M", ms.join(","))
        .env("QUILL_BENCH_HOT", if hot { "1" } else { "0" })
        .env("QUILL_BENCH_META", meta)
        .current_dir(repo)
        .status()
        .context("running cargo bench")?;
    if !status.success() {
        bail!("cargo bench --bench decode_step failed");
    }
    Ok(())
}

/// `(params, bytes)` of every group the bench reported in `meta`.
fn read_meta(meta: &Path) -> Result<HashMap<String, (f64, f64)>> {
    let text = std::fs::read_to_string(meta).with_context(|| format!("reading {}", meta.display()))?;
    let mut out = HashMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Json = serde_json::from_str(line).with_context(|| format!("{}: {line}", meta.display()))?;
        let group = v["group"].as_str().context("meta: no group")?.to_string();
        let num = |k: &str| v[k].as_f64().with_context(|| format!("meta: no {k}"));
        out.insert(group, (num("params")?, num("bytes")?));
    }
    Ok(out)
}

/// The machine's limits, measured once per run.
struct Limits {
    bandwidth_gbs: f64,
    int8: Option<f64>,
    f32: Option<f64>,
}

fn measure_limits(backend: quill_kernels::Backend, threads: usize) -> Result<Limits> {
    eprintln!("measuring read bandwidth and compute ceilings with {threads} threads");
    Ok(Limits {
        bandwidth_gbs: super::bandwidth::read_gbps(threads, 5)?,
        int8: quill_kernels::ceiling::int8_macs(backend, threads, 300)?,
        f32: quill_kernels::ceiling::f32_macs(backend, threads, 300)?,
    })
}

/// One row of the table: a model, type and m, cold and (unless skipped) hot.
struct Row {
    shape: String,
    ty: String,
    m: usize,
    ms: f64,
    vs_m1: f64,
    gmacs: f64,
    /// Hot multiply-adds per second (the compute rate) and the compute-bound time of the cold
    /// step at that rate.
    hot: Option<(f64, f64)>,
    memory_ms: f64,
}

impl Row {
    fn binds(&self) -> &'static str {
        match self.hot {
            Some((_, compute_ms)) if compute_ms > self.memory_ms => "compute",
            Some(_) => "memory",
            None => "-",
        }
    }

    fn markdown(&self) -> String {
        let (hot, compute) = match self.hot {
            Some((g, ms)) => (format!("{:.0}", g / 1e9), format!("{ms:.2}")),
            None => ("-".into(), "-".into()),
        };
        format!(
            "| {} | {} | {} | {:.2} | {:.2}x | {:.0} | {hot} | {:.2} | {compute} | {} |\n",
            self.shape,
            self.ty,
            self.m,
            self.ms,
            self.vs_m1,
            self.gmacs / 1e9,
            self.memory_ms,
            self.binds()
        )
    }

    fn json(&self) -> Json {
        json!({
            "model": self.shape, "type": self.ty, "m": self.m, "ms": self.ms, "vs_m1": self.vs_m1,
            "macs_per_s": self.gmacs, "hot_macs_per_s": self.hot.map(|h| h.0),
            "memory_ms": self.memory_ms, "compute_ms": self.hot.map(|h| h.1), "binds": self.binds(),
        })
    }
}

/// The hot group whose rate stands for a type's compute rate: that of the swept shape with the
/// smallest hot block (one GPT-2 1558M block of F16 or Q8_0 does not fit a 32 MB cache), with
/// its parameters.
fn hot_source(
    args: &StepArgs,
    prefix: &str,
    ty: &str,
    meta: &HashMap<String, (f64, f64)>,
) -> Option<(String, f64, String)> {
    if args.no_hot {
        return None;
    }
    let hot = |shape: &String| format!("{prefix}/{shape}/{ty}/hot");
    let shape = args.shapes.iter().filter(|s| meta.contains_key(&hot(s))).min_by(|a, b| {
        let bytes = |s: &String| meta[&hot(s)].1;
        bytes(a).total_cmp(&bytes(b))
    })?;
    Some((hot(shape), meta[&hot(shape)].0, shape.clone()))
}

/// The rows of one model and type (criterion group `{prefix}/{shape}/{ty}`) from criterion's
/// estimates.
fn rows_of(
    repo: &Path,
    args: &StepArgs,
    prefix: &str,
    (shape, ty): (&str, &str),
    meta: &HashMap<String, (f64, f64)>,
    bw: f64,
) -> Result<Vec<Row>> {
    let group = format!("{prefix}/{shape}/{ty}");
    let (params, bytes) = *meta.get(&group).with_context(|| format!("{group}: not in the bench's meta"))?;
    let hot_src = hot_source(args, prefix, ty, meta);
    let times: Vec<f64> = args.m.iter().map(|m| median_ms(repo, &group, &format!("m{m}"))).collect::<Result<_>>()?;
    let mut rows = Vec::new();
    for (&m, &t) in args.m.iter().zip(&times) {
        let hot = match &hot_src {
            Some((hot_group, hot_params, _)) => {
                let rate = hot_params * m as f64 / (median_ms(repo, hot_group, &format!("m{m}"))? / 1e3);
                Some((rate, params * m as f64 / rate * 1e3))
            }
            None => None,
        };
        rows.push(Row {
            shape: shape.to_string(),
            ty: ty.to_string(),
            m,
            ms: t,
            vs_m1: t / times[0],
            gmacs: params * m as f64 / (t / 1e3),
            hot,
            memory_ms: bytes / (bw * 1e9) * 1e3,
        });
    }
    Ok(rows)
}

pub fn run(repo: &Path, args: StepArgs) -> Result<()> {
    let backend = quill_kernels::Kernels::init()?.backend();
    let out_dir = args.out.clone().unwrap_or_else(|| repo.join("bench").join(backend.name()));
    let meta = repo.join("target/criterion/quill-step-meta.jsonl");
    std::fs::create_dir_all(meta.parent().context("meta path")?)?;
    if !args.report_only {
        let _ = std::fs::remove_file(&meta);
        sweep(repo, &args, false, &meta)?;
        if !args.no_hot {
            sweep(repo, &args, true, &meta)?;
        }
    }
    let meta = read_meta(&meta)?;
    let threads = std::env::var("QUILL_BENCH_THREADS").unwrap_or_else(|_| "2".into());
    let limits = measure_limits(backend, threads.parse().context("QUILL_BENCH_THREADS")?)?;
    let prefix = format!("decode_step/{}/{threads}t", backend.name());
    let mut rows = Vec::new();
    let mut panels = Vec::new();
    for shape in &args.shapes {
        let mut groups: Vec<svg::Group> =
            args.m.iter().map(|m| svg::Group { label: format!("m = {m}"), bars: Vec::new() }).collect();
        for ty in &args.types {
            let r = rows_of(repo, &args, &prefix, (shape, ty), &meta, limits.bandwidth_gbs)?;
            for (row, g) in r.iter().zip(groups.iter_mut()) {
                g.bars.push((ty.clone(), row.vs_m1));
            }
            rows.extend(r);
        }
        panels.push((format!("GPT-2 {shape}"), groups));
    }
    let hot_shape = args.types.first().and_then(|ty| hot_source(&args, &prefix, ty, &meta)).map(|h| h.2);
    write_outputs(&out_dir, backend, &threads, &limits, &rows, &panels, hot_shape.as_deref().unwrap_or("-"))
}

/// `decode_step.json`, `decode_step.svg` and the generated part of `DECODE_STEP.md`.
fn write_outputs(
    out_dir: &Path,
    backend: quill_kernels::Backend,
    threads: &str,
    limits: &Limits,
    rows: &[Row],
    panels: &[(String, Vec<svg::Group>)],
    hot_shape: &str,
) -> Result<()> {
    std::fs::create_dir_all(out_dir)?;
    let quill_sysinfo::Cpu { name, simd_flags } = quill_sysinfo::cpu();
    let cpu = format!("{name} ({})", simd_flags.join(" "));
    let doc = json!({
        "backend": backend.name(), "threads": threads, "cpu": cpu,
        "read_bandwidth_gbs": limits.bandwidth_gbs, "int8_macs_per_s": limits.int8, "f32_macs_per_s": limits.f32,
        "rows": rows.iter().map(Row::json).collect::<Vec<_>>(),
    });
    std::fs::write(out_dir.join("decode_step.json"), serde_json::to_string_pretty(&doc)? + "\n")?;
    let title = format!("Decode step time as a multiple of one token row ({}, {threads} threads)", backend.name());
    std::fs::write(out_dir.join("decode_step.svg"), svg::chart(&title, panels))?;
    let g = |v: Option<f64>| v.map(|v| format!("{:.0} G", v / 1e9)).unwrap_or_else(|| "-".into());
    let mut table = format!(
        "`cargo xtask bench step` on {cpu}, {threads} threads. Measured by the run that wrote this table: read bandwidth \
         {:.1} GB/s, int8 {} and f32 {} multiply-adds/s (`quill_kernels::ceiling`).\n\n\
         ![decode step](decode_step.svg)\n\n\
         Step ms: every weight product of one decode step, weights streamed from memory (cold). G/s: \
         multiply-adds per second, cold, and hot (one block's matrices over and over, cache-resident: \
         the kernels' compute rate; every shape takes the hot rate of the smallest swept shape, {}, \
         as one block of the larger ones does not fit a last-level cache). Memory ms: the step's \
         weight bytes at the measured bandwidth; compute ms: its multiply-adds at the hot rate; \
         binds: the larger.\n\n\
         | model | type | m | step ms | x m = 1 | G/s | hot G/s | memory ms | compute ms | binds |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n",
        limits.bandwidth_gbs,
        g(limits.int8),
        g(limits.f32),
        hot_shape,
    );
    for r in rows {
        table.push_str(&r.markdown());
    }
    let md_path = out_dir.join("DECODE_STEP.md");
    let md = std::fs::read_to_string(&md_path).unwrap_or_else(|_| format!("# Decode step\n\n{BEGIN}\n{END}\n"));
    let generated = format!("{BEGIN}\n{table}{END}");
    let md = match (md.find(BEGIN), md.find(END)) {
        (Some(a), Some(b)) if a < b => format!("{}{generated}{}", &md[..a], &md[b + END.len()..]),
        _ => format!("{md}\n{generated}\n"),
    };
    std::fs::write(&md_path, md)?;
    eprintln!("wrote {}", out_dir.display());
    Ok(())
}
