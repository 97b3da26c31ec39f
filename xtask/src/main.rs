//! `cargo xtask ...`: project tasks.

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Speed and memory benchmarks, side by side with llama.cpp (not implemented yet).
    Bench,
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Bench => bail!("cargo xtask bench is not implemented yet (issue: bench suite)"),
    }
}
