//! `quill`: run, quantize and inspect GPT-2 models in GGUF files.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod common;
mod default_model;
mod error;
mod generate;
mod inspect;
mod logits;
mod mem;
mod perplexity;
mod quantize;
mod serve;
mod sigbus;

#[derive(Parser)]
#[command(name = "quill", version, about = "GPT-2 inference from memory-mapped, quantized GGUF weights")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Measure prompt processing (pp) and generation (tg) speed, like llama-bench.
    Bench(bench::Args),
    /// Generate text from a prompt, streaming it as it comes.
    Generate(generate::Args),
    /// Show a GGUF file's header, metadata and tensor table.
    Inspect(inspect::Args),
    /// Perplexity of a model on a text (llama.cpp's method), and KL divergence to a base model.
    Perplexity(perplexity::Args),
    /// Convert a Hugging Face checkpoint or a GGUF into a (quantized) GGUF.
    Quantize(quantize::Args),
    /// Print a prompt's token ids and the logits at its last position.
    Logits(logits::Args),
    /// Serve the model over HTTP: OpenAI-compatible completions, many clients at once.
    Serve(serve::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Choose the kernels before any output: a bad `QUILL_KERNEL` is a usage error (exit 2, as
    // for a bad flag), never a panic in a worker thread halfway through a run.
    if let Err(e) = quill_kernels::Kernels::init() {
        eprintln!("quill: error: {e}");
        return ExitCode::from(2);
    }
    // Writing past a file-size limit (`ulimit -f`) must fail the write, so that the error is
    // reported and the temporary file removed, instead of killing the process (SIGXFSZ).
    #[cfg(unix)]
    let _ = signal_hook::flag::register(
        signal_hook::consts::SIGXFSZ,
        std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
    );
    sigbus::install();
    let result = match cli.command {
        Command::Bench(args) => bench::run(args),
        Command::Generate(args) => generate::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Logits(args) => logits::run(args),
        Command::Perplexity(args) => perplexity::run(args),
        Command::Quantize(args) => quantize::run(args),
        Command::Serve(args) => serve::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quill: error: {}", error::message(&e));
            ExitCode::FAILURE
        }
    }
}
