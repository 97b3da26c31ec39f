//! `quill quantize`: Hugging Face checkpoint or GGUF in, quantized GGUF out.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use quill_convert::convert::{convert, ConvertOptions, TensorReport};
use quill_quant::{FileType, TensorOverride};

#[derive(clap::Args)]
pub struct Args {
    /// A Hugging Face GPT-2 directory (config.json, model.safetensors, tokenizer) or a GGUF file.
    input: PathBuf,
    /// The GGUF file to write (replaced atomically when complete).
    output: PathBuf,
    /// Target type: f32, f16, bf16, q8_0, q4_0, q4_0_8_8 (Q4_0 interleaved by 8 rows for the decode kernels), q4_1, q5_0, q5_1, q4_k_m, q5_k_m, q6_k.
    #[arg(short = 't', long = "type", value_parser = parse_file_type)]
    file_type: FileType,
    /// Override the type of tensors whose name matches REGEX (repeatable; first match wins).
    #[arg(long = "tensor-type", value_name = "REGEX=TYPE", value_parser = parse_override)]
    tensor_type: Vec<TensorOverride>,
    /// Threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
}

fn parse_file_type(s: &str) -> Result<FileType, String> {
    FileType::from_name(s).map_err(|e| e.to_string())
}

fn parse_override(s: &str) -> Result<TensorOverride, String> {
    TensorOverride::parse(s).map_err(|e| e.to_string())
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn line(t: &TensorReport) -> String {
    format!(
        "{:<28} {:<18} {:>6} -> {:<6} {:>9.2} MiB -> {:>8.2} MiB",
        t.name,
        format!("{:?}", t.dims),
        t.from.name(),
        t.to.name(),
        mib(t.bytes_in),
        mib(t.bytes_out)
    )
}

pub fn run(args: Args) -> Result<()> {
    let start = Instant::now();
    let opts = ConvertOptions { file_type: args.file_type, overrides: args.tensor_type };
    let tty = std::io::stderr().is_terminal();
    let bar = if tty {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {wide_msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        Some(bar)
    } else {
        None
    };
    let progress = |done: usize, total: usize, t: &TensorReport| match &bar {
        Some(bar) => {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
            bar.println(line(t));
            bar.set_message(t.name.clone());
        }
        None => eprintln!("[{done:>3}/{total}] {}", line(t)),
    };
    crate::common::init_threads(args.threads)?;
    let report = convert(&args.input, &args.output, &opts, &progress);
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let report = report?;
    for w in &report.warnings {
        eprintln!("quill: warning: {w}");
    }
    let n = report.n_elements().max(1) as f64;
    eprintln!(
        "{}: {} tensors, {:.2} MiB -> {:.2} MiB ({:.2} -> {:.2} bits per weight), type {}, {:.2} s",
        args.output.display(),
        report.tensors.len(),
        mib(report.bytes_in()),
        mib(report.bytes_out()),
        report.bytes_in() as f64 * 8.0 / n,
        report.bytes_out() as f64 * 8.0 / n,
        args.file_type.name(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
