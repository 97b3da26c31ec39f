//! `cargo xtask ...`: project tasks.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use quill_convert::synth::{write_checkpoint, SynthSpec};

mod bench;
mod quality;
mod soak;

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Shape {
    /// GPT-2 small (124M parameters).
    #[value(name = "124m")]
    Gpt2_124m,
    /// GPT-2 XL (1558M parameters).
    #[value(name = "1558m")]
    Gpt2_1558m,
}

#[derive(Subcommand)]
enum Command {
    /// Speed and memory of Quill (and llama.cpp, if given) on GPT-2 124M and 1558M shapes.
    Bench(bench::Args),
    /// Perplexity, KL divergence and top-token agreement of every type on the held-out text.
    Quality(quality::Args),
    /// A crowd of mixed clients against `quill serve` on loopback; fails unless it held up.
    Soak(soak::Args),
    /// Write a Hugging Face GPT-2 checkpoint with seeded random weights (for benchmarks).
    Synth {
        #[arg(long, value_enum)]
        shape: Shape,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask is inside the workspace").to_owned()
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Bench(args) => bench::run(&repo(), args),
        Command::Quality(args) => quality::run(&repo(), args),
        Command::Soak(args) => soak::run(&repo(), args),
        Command::Synth { shape, seed, out } => {
            let spec = match shape {
                Shape::Gpt2_124m => SynthSpec::gpt2_124m(seed),
                Shape::Gpt2_1558m => SynthSpec::gpt2_1558m(seed),
            };
            write_checkpoint(&out, &spec, &repo().join("models/tokenizer"))
                .with_context(|| out.display().to_string())?;
            eprintln!("wrote {}", out.display());
            Ok(())
        }
    }
}

/// Replaces the text between `<!-- NAME:begin -->` and `<!-- NAME:end -->` in `path`.
pub fn replace_section(path: &std::path::Path, name: &str, body: &str) -> Result<()> {
    let (begin, end) = (format!("<!-- {name}:begin -->"), format!("<!-- {name}:end -->"));
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    let (Some(a), Some(b)) = (text.find(&begin), text.find(&end)) else {
        anyhow::bail!("{}: no {begin} ... {end} section to update", path.display());
    };
    std::fs::write(path, format!("{}{begin}\n{body}{}", &text[..a], &text[b..]))?;
    Ok(())
}
