//! `quill.Tokenizer`: GPT-2's byte-level BPE from a GGUF file, a folder of Hugging Face
//! tokenizer files, or a loaded model.

use std::path::PathBuf;
use std::sync::Arc;

use gguf_file::GgufFile;
use pyo3::prelude::*;

use crate::errors::{value_error, IntoPy};
use crate::model::Inner;

enum Source {
    Own(Box<quill_gpt2::Tokenizer>),
    Model(Arc<Inner>),
}

/// The text of `ids` (checked against the vocabulary): control tokens left out, or written as
/// their token string with `special`.
pub(crate) fn decode(tok: &quill_gpt2::Tokenizer, ids: Vec<i64>, special: bool) -> PyResult<String> {
    let n = tok.n_vocab();
    let mut bytes = Vec::new();
    for id in ids {
        let Some(id) = u32::try_from(id).ok().filter(|&i| (i as usize) < n) else {
            return Err(value_error(format!("token id {id} is outside the vocabulary ({n} tokens)")));
        };
        match tok.token_bytes(id) {
            [] if special => bytes.extend_from_slice(tok.tokens()[id as usize].as_bytes()),
            b => bytes.extend_from_slice(b),
        }
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// GPT-2's tokenizer, without a model: from a GGUF file (its metadata only) or a folder with
/// ``tokenizer.json`` or ``vocab.json`` + ``merges.txt``. ``Model.tokenizer`` is the same
/// class.
#[pyclass(module = "quill", frozen)]
pub struct Tokenizer {
    source: Source,
}

impl Tokenizer {
    pub(crate) fn of_model(inner: Arc<Inner>) -> Tokenizer {
        Tokenizer { source: Source::Model(inner) }
    }

    fn get(&self) -> &quill_gpt2::Tokenizer {
        match &self.source {
            Source::Own(t) => t,
            Source::Model(m) => &m.model().tokenizer,
        }
    }
}

#[pymethods]
impl Tokenizer {
    #[new]
    fn new(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let tok = py.detach(|| -> PyResult<quill_gpt2::Tokenizer> {
            if path.is_dir() {
                return quill_convert::tokenizer_from_hf(&path).py();
            }
            let file = GgufFile::open(&path).py()?;
            quill_gpt2::Tokenizer::from_gguf(file.metadata())
                .map_err(|e| value_error(format!("{}: {}", path.display(), crate::errors::message(&e))))
        })?;
        Ok(Tokenizer { source: Source::Own(Box::new(tok)) })
    }

    /// Token ids of ``text`` (``<|endoftext|>`` in the text is the special token).
    fn encode(&self, py: Python<'_>, text: &str) -> PyResult<Vec<u32>> {
        let tok = self.get();
        py.detach(|| tok.encode(text)).py()
    }

    /// The text of ``ids``; control tokens are left out unless ``special=True``.
    #[pyo3(signature = (ids, *, special=false))]
    fn decode(&self, ids: Vec<i64>, special: bool) -> PyResult<String> {
        decode(self.get(), ids, special)
    }

    /// The token strings in id order, in GPT-2's byte-level form (``"Ġthe"`` for ``" the"``).
    fn vocab(&self) -> Vec<String> {
        self.get().tokens().to_vec()
    }

    /// The bytes a token stands for (empty for control tokens).
    fn token_bytes(&self, id: u32) -> PyResult<Vec<u8>> {
        let tok = self.get();
        if id as usize >= tok.n_vocab() {
            return Err(value_error(format!("token id {id} is outside the vocabulary ({} tokens)", tok.n_vocab())));
        }
        Ok(tok.token_bytes(id).to_vec())
    }

    #[getter]
    fn n_vocab(&self) -> usize {
        self.get().n_vocab()
    }

    fn __len__(&self) -> usize {
        self.get().n_vocab()
    }

    #[getter]
    fn eos_token_id(&self) -> Option<u32> {
        self.get().eos()
    }

    #[getter]
    fn bos_token_id(&self) -> Option<u32> {
        self.get().bos()
    }
}
