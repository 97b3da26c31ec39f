//! `quill`: run, quantize and inspect GPT-2 models in GGUF files.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod common;
mod default_model;
mod inspect;
mod logits;

#[derive(Parser)]
#[command(name = "quill", version, about = "GPT-2 inference from memory-mapped, quantized GGUF weights")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show a GGUF file's header, metadata and tensor table.
    Inspect(inspect::Args),
    /// Print a prompt's token ids and the logits at its last position.
    Logits(logits::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect(args) => inspect::run(args),
        Command::Logits(args) => logits::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quill: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
