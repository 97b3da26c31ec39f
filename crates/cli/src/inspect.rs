//! `quill inspect`: a GGUF file's header, metadata and tensors, like `gguf-dump`.

use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::Result;
use gguf_file::GgufFile;
use quill_convert::inspect::inspect_json;

#[derive(clap::Args)]
pub struct Args {
    /// The GGUF file.
    file: PathBuf,
    /// Print one JSON object with `metadata` and `tensors` instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<()> {
    let file = GgufFile::open(&args.file)?;
    let mut out = io::stdout().lock();
    let r = if args.json { print_json(&file, &mut out) } else { print_text(&file, &args, &mut out) };
    match r {
        // A closed pipe (`quill inspect f | head`) is not an error.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

fn print_text(file: &GgufFile, args: &Args, out: &mut impl Write) -> io::Result<()> {
    writeln!(out, "{}: GGUF v{}, {} bytes", args.file.display(), file.version(), file.file_len())?;
    writeln!(
        out,
        "{} metadata keys, {} tensors, alignment {}, data at offset {}",
        file.metadata().len(),
        file.tensor_infos().len(),
        file.alignment(),
        file.data_offset()
    )?;
    writeln!(out, "\nmetadata:")?;
    for (key, value) in file.metadata().iter() {
        writeln!(out, "  {key:<40} {value}")?;
    }
    writeln!(out, "\ntensors:")?;
    writeln!(out, "  {:<32} {:<6} {:<22} {:>12} {:>12}", "name", "type", "shape", "bytes", "offset")?;
    let mut total = 0u64;
    let mut params = 0u64;
    for t in file.tensor_infos() {
        let shape = format!("{:?}", t.dims);
        writeln!(out, "  {:<32} {:<6} {:<22} {:>12} {:>12}", t.name, t.ty.name(), shape, t.n_bytes, t.offset)?;
        total += t.n_bytes;
        params += t.n_elements;
    }
    let bpw = if params > 0 { total as f64 * 8.0 / params as f64 } else { 0.0 };
    writeln!(out, "\n{params} elements in {total} bytes ({bpw:.2} bits per weight)")?;
    Ok(())
}

fn print_json(file: &GgufFile, out: &mut impl Write) -> io::Result<()> {
    serde_json::to_writer(&mut *out, &inspect_json(file))?;
    writeln!(out)
}
