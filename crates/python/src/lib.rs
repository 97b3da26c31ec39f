//! `quill._quill`: the native half of the `quill` Python package (PyO3, stable ABI). The
//! Python half (`python/quill`) re-exports it and adds `quill.transformers`.

mod engine;
mod errors;
mod gen;
mod model;
mod stream;
mod tokenizer;

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::{value_error, IntoPy};

/// Converts a Hugging Face GPT-2 folder or a GGUF file into a (quantized) GGUF, as ``quill
/// quantize`` does (the same bytes; the output is replaced only when complete).
///
/// Args:
///     src: a Hugging Face checkpoint folder (config.json, model.safetensors, tokenizer) or a
///         GGUF file.
///     dst: the GGUF file to write.
///     type: f32, f16, bf16, q8_0, q4_0, q4_0_8_8 (Q4_0 interleaved by 8 rows), q4_1, q5_0,
///         q5_1, q4_k_m, q5_k_m or q6_k.
///     tensor_types: ``{regex: type}`` (or ``[(regex, type)]``) overrides for tensors whose
///         name matches (first match wins), as ``--tensor-type``.
///     threads: threads to quantize with (default: all cores).
///
/// Returns:
///     ``{"n_tensors", "n_elements", "bytes_in", "bytes_out", "warnings"}``.
#[pyfunction]
#[pyo3(signature = (src, dst, r#type="q4_0", *, tensor_types=None, threads=None))]
fn quantize<'py>(
    py: Python<'py>,
    src: PathBuf,
    dst: PathBuf,
    r#type: &str,
    tensor_types: Option<Bound<'py, PyAny>>,
    threads: Option<usize>,
) -> PyResult<Bound<'py, PyDict>> {
    use quill_convert::{convert, ConvertOptions};
    use quill_quant::{FileType, TensorOverride};
    let file_type = FileType::from_name(r#type).map_err(|e| value_error(format!("type: {e}")))?;
    let mut overrides = Vec::new();
    let pairs: Vec<(String, String)> = match tensor_types {
        None => Vec::new(),
        Some(t) => match t.cast::<PyDict>() {
            Ok(d) => d.items().extract()?,
            Err(_) => t.extract()?,
        },
    };
    for (re, ty) in pairs {
        let spec = format!("{re}={ty}");
        overrides.push(TensorOverride::parse(&spec).map_err(|e| value_error(format!("tensor_types: {e}")))?);
    }
    if !src.exists() {
        return Err(pyo3::exceptions::PyFileNotFoundError::new_err(format!(
            "{}: No such file or directory",
            src.display()
        )));
    }
    let pool = match threads {
        Some(0) => return Err(value_error("threads must be at least 1")),
        Some(n) => Some(rayon::ThreadPoolBuilder::new().num_threads(n).build().py()?),
        None => None,
    };
    let opts = ConvertOptions { file_type, overrides };
    let run = || convert(&src, &dst, &opts, &|_, _, _| {});
    let report = py.detach(|| match &pool {
        Some(p) => p.install(run),
        None => run(),
    });
    let report = report.py()?;
    let d = PyDict::new(py);
    d.set_item("n_tensors", report.tensors.len())?;
    d.set_item("n_elements", report.n_elements())?;
    d.set_item("bytes_in", report.bytes_in())?;
    d.set_item("bytes_out", report.bytes_out())?;
    d.set_item("warnings", report.warnings)?;
    Ok(d)
}

/// A GGUF file's header, metadata and tensor table, as ``quill inspect --json`` prints it:
/// ``{"version", "alignment", "data_offset", "file_size", "metadata": {key: value},
/// "tensors": [{"name", "type", "shape", "n_elements", "bytes", "offset"}]}``.
#[pyfunction]
fn inspect<'py>(py: Python<'py>, path: PathBuf) -> PyResult<Bound<'py, PyAny>> {
    let text = py.detach(|| -> Result<String, gguf_file::Error> {
        let file = gguf_file::GgufFile::open(&path)?;
        Ok(quill_convert::inspect::inspect_json(&file).to_string())
    });
    let text = text.py()?;
    py.import("json")?.call_method1("loads", (text,))
}

/// The default model's path (``$QUILL_MODEL``, else ``models/quill-shakespeare.gguf`` of the
/// repository the package was built from), or ``None``.
#[pyfunction]
fn default_model_path() -> Option<PathBuf> {
    std::env::var_os("QUILL_MODEL")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(quill_gpt2::default_model::path)
}

/// The SIMD kernels in use (``avx512``, ``avx2``, ``neon`` or ``scalar``; ``$QUILL_KERNEL``
/// chooses).
#[pyfunction]
fn kernel_backend() -> PyResult<String> {
    Ok(quill_kernels::Kernels::init().py()?.backend().name().to_owned())
}

/// GPT-2 from memory-mapped, quantized GGUF weights, on CPUs.
#[pymodule]
fn _quill(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<model::Model>()?;
    m.add_class::<engine::Engine>()?;
    m.add_class::<engine::Request>()?;
    m.add_class::<stream::TextStream>()?;
    m.add_class::<tokenizer::Tokenizer>()?;
    m.add_function(wrap_pyfunction!(quantize, m)?)?;
    m.add_function(wrap_pyfunction!(inspect, m)?)?;
    m.add_function(wrap_pyfunction!(default_model_path, m)?)?;
    m.add_function(wrap_pyfunction!(kernel_backend, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
