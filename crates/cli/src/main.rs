//! `quill`: run, quantize and inspect GPT-2 models in GGUF files.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod inspect;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect(args) => inspect::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quill: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
