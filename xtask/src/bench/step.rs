//! `cargo xtask bench step`: the decode-step sweep (`benches/decode_step.rs`: one decode step's
//! weight products at m = 1 to 64 token rows), weights cold (the whole model per step: the
//! memory rate) and hot (one block's matrices, cache-resident: the compute rate), run through
//! criterion, then read back from criterion's estimates into `bench/<kernels>/decode_step.json`,
//! `decode_step.svg` (each m's cold time as a multiple of m = 1's, per model and type) and the
//! generated table of `DECODE_STEP.md` between its `<!-- step:begin -->` and `<!-- step:end -->`
//! lines (the rest of that file is prose and is kept): both rates and their ratio, near 1 where
//! decoding the weights binds, well below where memory does.

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
    #[arg(long, value_delimiter = ',', default_value = "q4_0,q8_0,q4_k,f16")]
    pub types: Vec<String>,
    /// Token rows per step.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3,4,8,16,32,64")]
    pub m: Vec<usize>,
    /// Where to write the results [default: bench/<kernels>].
    #[arg(long)]
    pub out: Option<PathBuf>,
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

/// Multiply-adds of one step's weight products per token row, cold (every block and the
/// 50257-row output projection) and hot (one block's four matrices), as the bench runs them.
fn step_params(shape: &str) -> Result<(f64, f64)> {
    const SHAPES: [(&str, f64, f64); 4] =
        [("124M", 768., 12.), ("355M", 1024., 24.), ("774M", 1280., 36.), ("1558M", 1600., 48.)];
    let &(_, n, layers) =
        SHAPES.iter().find(|s| s.0 == shape).with_context(|| format!("unknown model shape {shape}"))?;
    let block = 12. * n * n;
    Ok((layers * block + 50257. * n, block))
}

/// G multiply-adds per second of `m` rows of `params` in `ms` milliseconds.
fn gmacs(params: f64, m: usize, ms: f64) -> f64 {
    params * m as f64 / (ms * 1e6)
}

pub fn run(repo: &Path, args: StepArgs) -> Result<()> {
    let backend = quill_kernels::Kernels::init()?.backend();
    let out_dir = args.out.clone().unwrap_or_else(|| repo.join("bench").join(backend.name()));
    let list = |v: &[String]| v.join(",");
    let ms: Vec<String> = args.m.iter().map(|m| m.to_string()).collect();
    // Cold (the whole model streamed per step: the memory rate), then hot (one block's matrices
    // over and over, cache-resident: the compute rate).
    for hot in ["0", "1"] {
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["bench", "--bench", "decode_step", "--", "--noplot"])
            .env("QUILL_BENCH_MODELS", list(&args.shapes))
            .env("QUILL_BENCH_TYPES", list(&args.types))
            .env("QUILL_BENCH_M", ms.join(","))
            .env("QUILL_BENCH_HOT", hot)
            .current_dir(repo)
            .status()
            .context("running cargo bench")?;
        if !status.success() {
            bail!("cargo bench --bench decode_step failed");
        }
    }
    let threads = std::env::var("QUILL_BENCH_THREADS").unwrap_or_else(|_| "2".into());
    let mut rows = Vec::new();
    let mut panels = Vec::new();
    let mut table = String::from(
        "| model | type | m | step ms | x m = 1 | G mul-add/s | hot G mul-add/s | cold / hot |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for shape in &args.shapes {
        let (cold_params, hot_params) = step_params(shape)?;
        let mut groups: Vec<svg::Group> =
            args.m.iter().map(|m| svg::Group { label: format!("m = {m}"), bars: Vec::new() }).collect();
        for ty in &args.types {
            let group = format!("decode_step/{}/{threads}t/{shape}/{ty}", backend.name());
            let medians =
                |g: &str| -> Result<Vec<f64>> { args.m.iter().map(|m| median_ms(repo, g, &format!("m{m}"))).collect() };
            let (times, hot) = (medians(&group)?, medians(&format!("{group}/hot"))?);
            let base = times[0];
            for (((&m, &t), &h), g) in args.m.iter().zip(&times).zip(&hot).zip(groups.iter_mut()) {
                g.bars.push((ty.clone(), t / base));
                let (rate, hot_rate) = (gmacs(cold_params, m, t), gmacs(hot_params, m, h));
                rows.push(json!({
                    "model": shape, "type": ty, "m": m, "ms": t, "vs_m1": t / base,
                    "hot_ms": h, "gmacs": rate, "hot_gmacs": hot_rate,
                }));
                table.push_str(&format!(
                    "| {shape} | {ty} | {m} | {t:.2} | {:.2}x | {rate:.1} | {hot_rate:.1} | {:.2} |\n",
                    t / base,
                    rate / hot_rate
                ));
            }
        }
        panels.push((format!("GPT-2 {shape}"), groups));
    }
    std::fs::create_dir_all(&out_dir)?;
    let quill_sysinfo::Cpu { name, simd_flags } = quill_sysinfo::cpu();
    let cpu = format!("{name} ({})", simd_flags.join(" "));
    let doc = json!({ "backend": backend.name(), "threads": threads, "cpu": cpu, "rows": rows });
    std::fs::write(out_dir.join("decode_step.json"), serde_json::to_string_pretty(&doc)? + "\n")?;
    let title = format!("Decode step time as a multiple of one token row ({}, {threads} threads)", backend.name());
    std::fs::write(out_dir.join("decode_step.svg"), svg::chart(&title, &panels))?;
    let md_path = out_dir.join("DECODE_STEP.md");
    let md = std::fs::read_to_string(&md_path).unwrap_or_else(|_| format!("# Decode step\n\n{BEGIN}\n{END}\n"));
    let generated =
        format!("{BEGIN}\n`cargo xtask bench step` on {cpu}:\n\n![decode step](decode_step.svg)\n\n{table}{END}");
    let md = match (md.find(BEGIN), md.find(END)) {
        (Some(a), Some(b)) if a < b => format!("{}{generated}{}", &md[..a], &md[b + END.len()..]),
        _ => format!("{md}\n{generated}\n"),
    };
    std::fs::write(&md_path, md)?;
    eprintln!("wrote {}", out_dir.display());
    Ok(())
}
