//! `cargo xtask bench step`: the decode-step sweep (`benches/decode_step.rs`: one decode step's
//! weight products at m = 1 to 64 token rows) run through criterion, then read back from
//! criterion's estimates into `bench/<kernels>/decode_step.json`, `decode_step.svg` (each m's
//! time as a multiple of m = 1's, per model and type) and the generated table of
//! `DECODE_STEP.md` (between its `<!-- step:begin -->` and `<!-- step:end -->` lines; the rest
//! of that file is prose and is kept).

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

pub fn run(repo: &Path, args: StepArgs) -> Result<()> {
    let backend = quill_kernels::Kernels::init()?.backend();
    let out_dir = args.out.clone().unwrap_or_else(|| repo.join("bench").join(backend.name()));
    let list = |v: &[String]| v.join(",");
    let ms: Vec<String> = args.m.iter().map(|m| m.to_string()).collect();
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["bench", "--bench", "decode_step", "--", "--noplot"])
        .env("QUILL_BENCH_MODELS", list(&args.shapes))
        .env("QUILL_BENCH_TYPES", list(&args.types))
        .env("QUILL_BENCH_M", ms.join(","))
        .current_dir(repo)
        .status()
        .context("running cargo bench")?;
    if !status.success() {
        bail!("cargo bench --bench decode_step failed");
    }
    let threads = std::env::var("QUILL_BENCH_THREADS").unwrap_or_else(|_| "2".into());
    let mut rows = Vec::new();
    let mut panels = Vec::new();
    let mut table = String::from("| model | type | m | step ms | x m = 1 |\n| --- | --- | ---: | ---: | ---: |\n");
    for shape in &args.shapes {
        let mut groups: Vec<svg::Group> =
            args.m.iter().map(|m| svg::Group { label: format!("m = {m}"), bars: Vec::new() }).collect();
        for ty in &args.types {
            let group = format!("decode_step/{}/{threads}t/{shape}/{ty}", backend.name());
            let times: Vec<f64> =
                args.m.iter().map(|m| median_ms(repo, &group, &format!("m{m}"))).collect::<Result<_>>()?;
            let base = times[0];
            for ((&m, &t), g) in args.m.iter().zip(&times).zip(groups.iter_mut()) {
                g.bars.push((ty.clone(), t / base));
                rows.push(json!({ "model": shape, "type": ty, "m": m, "ms": t, "vs_m1": t / base }));
                table.push_str(&format!("| {shape} | {ty} | {m} | {t:.2} | {:.2}x |\n", t / base));
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
