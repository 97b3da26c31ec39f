//! Conversion to a GGUF of arch `gpt2` with llama.cpp's names and metadata, from a Hugging Face
//! checkpoint or from another GGUF, with each tensor's type chosen by llama.cpp's per-tensor
//! policy. Tensors are quantized with their rows split across threads and streamed to a
//! temporary file that replaces the output only when complete.

use std::path::{Path, PathBuf};

use gguf_file::{Array, GgmlType, GgufBuilder, GgufFile, Metadata, Value};
use quill_quant::{FileType, QuantPolicy, TensorOverride};
use rayon::prelude::*;

use crate::hf::{GgufVocab, HfCheckpoint, HfError, HfTensor};
use quill_gpt2::{Gpt2Config, ModelError};

/// Errors of a conversion; each names the file or tensor at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error(transparent)]
    Hf(#[from] HfError),
    #[error("{path}: {source}")]
    Gguf { path: PathBuf, source: Box<gguf_file::Error> },
    #[error("{path}: {source}")]
    Model { path: PathBuf, source: Box<ModelError> },
    #[error("{0}: not a Hugging Face checkpoint directory (no config.json) or a GGUF file")]
    UnknownInput(PathBuf),
    #[error("{output}: refusing to write over the input")]
    SameFile { output: PathBuf },
    #[error("tensor '{name}': {source}")]
    Quant { name: String, source: quill_quant::QuantError },
    #[error("tensor '{name}' holds {what} at element {index}")]
    NonFinite { name: String, what: &'static str, index: usize },
    #[error("{path}: {source}")]
    Write { path: PathBuf, source: gguf_file::WriteError },
}

/// What to produce.
#[derive(Clone, Debug)]
pub struct ConvertOptions {
    pub file_type: FileType,
    pub overrides: Vec<TensorOverride>,
}

/// One tensor's outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorReport {
    pub name: String,
    pub dims: Vec<u64>,
    pub from: GgmlType,
    pub to: GgmlType,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// What a conversion did.
#[derive(Clone, Debug, Default)]
pub struct ConvertReport {
    pub tensors: Vec<TensorReport>,
    /// Things the user should know (requantizing already-quantized weights...).
    pub warnings: Vec<String>,
}

impl ConvertReport {
    pub fn bytes_in(&self) -> u64 {
        self.tensors.iter().map(|t| t.bytes_in).sum()
    }
    pub fn bytes_out(&self) -> u64 {
        self.tensors.iter().map(|t| t.bytes_out).sum()
    }
    pub fn n_elements(&self) -> u64 {
        self.tensors.iter().map(|t| t.dims.iter().product::<u64>()).sum()
    }
}

/// A tensor of the source, in llama.cpp naming.
struct SrcTensor {
    name: String,
    dims: Vec<u64>,
    ty: GgmlType,
    hf: Option<HfTensor>,
}

enum Source {
    Hf(HfCheckpoint),
    Gguf(GgufFile),
}

impl Source {
    fn read_f32(&self, t: &SrcTensor) -> Result<Vec<f32>, ConvertError> {
        match (self, &t.hf) {
            (Source::Hf(ck), Some(h)) => Ok(ck.read_f32(h)?),
            (Source::Gguf(f), _) => {
                let view = f.tensor(&t.name).expect("listed from this file");
                let mut out = vec![0.0f32; view.info.n_elements as usize];
                quill_quant::dequantize_rows(view.ty(), view.data, t.dims[0] as usize, &mut out)
                    .map_err(|source| ConvertError::Quant { name: t.name.clone(), source })?;
                if let Some(index) = out.iter().position(|v| !v.is_finite()) {
                    let what = if out[index].is_nan() { "NaN" } else { "an infinity" };
                    return Err(ConvertError::NonFinite { name: t.name.clone(), what, index });
                }
                Ok(out)
            }
            (Source::Hf(_), None) => unreachable!("HF tensors carry their HF name"),
        }
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// The metadata of a GGUF from a Hugging Face checkpoint, as llama.cpp's converter writes it.
fn hf_metadata(ck: &HfCheckpoint, vocab: &GgufVocab) -> Metadata {
    let mut m = Metadata::new();
    m.insert("general.architecture", "gpt2");
    let name = ck.config.name.clone().or_else(|| ck.dir.file_name().map(|n| n.to_string_lossy().into_owned()));
    m.insert("general.name", name.unwrap_or_else(|| "gpt2".into()));
    ck.config.model.write_metadata(&mut m);
    vocab_metadata(&mut m, vocab);
    m
}

/// The tokenizer's keys, as llama.cpp's converter writes them.
pub fn vocab_metadata(m: &mut Metadata, vocab: &GgufVocab) {
    m.insert("tokenizer.ggml.model", "gpt2");
    m.insert("tokenizer.ggml.pre", "gpt-2");
    m.insert("tokenizer.ggml.tokens", Array::String(vocab.tokens.clone()));
    m.insert("tokenizer.ggml.token_type", Array::I32(vocab.token_types.clone()));
    m.insert("tokenizer.ggml.merges", Array::String(vocab.merges.clone()));
    m.insert("tokenizer.ggml.bos_token_id", vocab.bos);
    m.insert("tokenizer.ggml.eos_token_id", vocab.eos);
}

/// GPT-2's tokenizer from a folder of Hugging Face tokenizer files (`tokenizer.json`, or
/// `vocab.json` + `merges.txt`), without a model.
pub fn tokenizer_from_hf(dir: &Path) -> Result<quill_gpt2::Tokenizer, ConvertError> {
    let vocab = crate::hf::tokenizer_vocab(dir)?;
    let mut m = Metadata::new();
    vocab_metadata(&mut m, &vocab);
    quill_gpt2::Tokenizer::from_gguf(&m).map_err(|e| ConvertError::Model { path: dir.to_owned(), source: Box::new(e) })
}

/// Converts `input` (a Hugging Face directory or a GGUF) into `output`.
/// `progress(done, total, report)` is called after each tensor.
pub fn convert(
    input: &Path,
    output: &Path,
    opts: &ConvertOptions,
    progress: &(dyn Fn(usize, usize, &TensorReport) + Sync),
) -> Result<ConvertReport, ConvertError> {
    if same_file(input, output) {
        return Err(ConvertError::SameFile { output: output.to_owned() });
    }
    let mut report = ConvertReport::default();
    let (source, mut meta, tensors, n_layer) = if HfCheckpoint::is_checkpoint(input) {
        let ck = HfCheckpoint::open(input)?;
        let vocab = ck.vocab()?;
        let meta = hf_metadata(&ck, &vocab);
        let tensors = ck
            .tensors()?
            .into_iter()
            .map(|h| SrcTensor { name: h.name.clone(), dims: h.dims.clone(), ty: GgmlType::F32, hf: Some(h) })
            .collect();
        let n_layer = ck.config.model.n_layer;
        (Source::Hf(ck), meta, tensors, n_layer)
    } else if input.is_file() {
        let f =
            GgufFile::open(input).map_err(|e| ConvertError::Gguf { path: input.to_owned(), source: Box::new(e) })?;
        let cfg = Gpt2Config::from_metadata(f.metadata())
            .map_err(|e| ConvertError::Model { path: input.to_owned(), source: Box::new(e) })?;
        let mut meta = f.metadata().clone();
        for key in ["general.file_type", "general.quantization_version", "general.alignment"] {
            meta.remove(key);
        }
        let tensors: Vec<SrcTensor> = f
            .tensor_infos()
            .iter()
            .map(|t| SrcTensor { name: t.name.clone(), dims: t.dims.clone(), ty: t.ty, hf: None })
            .collect();
        if let Some(t) = tensors.iter().find(|t| t.ty.is_quantized()) {
            report.warnings.push(format!(
                "{} holds quantized tensors (first: '{}' in {}): requantizing loses quality; convert from the original weights if you can",
                input.display(),
                t.name,
                t.ty
            ));
        }
        (Source::Gguf(f), meta, tensors, cfg.n_layer)
    } else {
        return Err(ConvertError::UnknownInput(input.to_owned()));
    };

    let has_output = tensors.iter().any(|t| t.name == "output.weight");
    let policy = QuantPolicy::new(opts.file_type, n_layer, has_output).with_overrides(opts.overrides.iter().cloned());
    meta.insert("general.file_type", opts.file_type.ftype_id());
    let mut builder = GgufBuilder::new();
    for (k, v) in meta.iter() {
        builder.set(k, v.clone()).expect("metadata from a valid source");
    }
    let mut plan = Vec::with_capacity(tensors.len());
    for t in &tensors {
        let to = policy.tensor_type(&t.name, &t.dims, t.ty);
        let spec = builder
            .add_tensor(t.name.clone(), to, &t.dims)
            .map_err(|source| ConvertError::Write { path: output.to_owned(), source })?;
        let bytes_in = t.ty.row_bytes(t.dims[0]).unwrap_or(0) * t.dims[1..].iter().product::<u64>();
        plan.push(TensorReport {
            name: t.name.clone(),
            dims: t.dims.clone(),
            from: t.ty,
            to,
            bytes_in,
            bytes_out: spec.n_bytes,
        });
    }
    if plan.iter().any(|t| t.to.is_quantized()) {
        builder.set("general.quantization_version", 2u32).expect("a u32 key");
    }

    let write_err = |source| ConvertError::Write { path: output.to_owned(), source };
    let mut w = builder.create(output).map_err(write_err)?;
    let total = tensors.len();
    for (i, (t, rep)) in tensors.iter().zip(&plan).enumerate() {
        let data = source.read_f32(t)?;
        let ne0 = t.dims[0] as usize;
        let mut out = vec![0u8; rep.bytes_out as usize];
        let row_out = (rep.bytes_out as usize) / (data.len() / ne0).max(1);
        // Rows in parallel, in chunks large enough to amortise the scheduling (whole groups of
        // an interleaved type's rows).
        let rows_per_task = ((1 << 16) / ne0 + 1).next_multiple_of(rep.to.row_group() as usize);
        data.par_chunks(ne0 * rows_per_task).zip(out.par_chunks_mut(row_out * rows_per_task)).try_for_each(
            |(src, dst)| {
                quill_quant::quantize(rep.to, src, ne0, dst)
                    .map_err(|source| ConvertError::Quant { name: t.name.clone(), source })
            },
        )?;
        drop(data);
        w.write_tensor(&out).map_err(write_err)?;
        progress(i + 1, total, rep);
    }
    w.commit().map_err(write_err)?;
    report.tensors = plan;
    Ok(report)
}

/// The value of `general.file_type` as a [`FileType`], if known.
pub fn file_type_of(m: &Metadata) -> Option<FileType> {
    m.get("general.file_type").and_then(Value::as_u64).and_then(|id| FileType::from_ftype_id(id as u32))
}
