//! `quill.Model`: a mapped GGUF (or a Hugging Face folder converted on load), its tokenizer,
//! and the calls that run it. The weights are mapped once per `Model` and shared read-only by
//! every call and thread; each call makes its own session (KV cache and buffers).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use gguf_file::GgufFile;
use numpy::ndarray::Array2;
use numpy::{PyArray1, PyArray2};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use quill_convert::hf::HfCheckpoint;
use quill_engine::Finish;
use quill_gpt2::score::Scorer;
use quill_gpt2::{Gpt2Model, KvType, SessionOptions};
use self_cell::self_cell;

use crate::errors::{value_error, IntoPy};
use crate::gen::{run_to_end, sampler, Args, Plan, Prompts, Seeds, Shape, Stops};
use crate::stream::TextStream;

/// What the model's views borrow: the file (mapped), and the temporary folder of a GGUF
/// converted from a Hugging Face checkpoint (removed with the model).
pub(crate) struct Owner {
    file: GgufFile,
    _tmp: Option<tempfile::TempDir>,
}

self_cell!(
    pub(crate) struct ModelCell {
        owner: Owner,
        #[covariant]
        dependent: Gpt2Model,
    }
);

/// A loaded model, shared by the Python object and any stream still running on it.
pub(crate) struct Inner {
    cell: ModelCell,
    /// The model's own threads (`threads=N`); `None`: rayon's global pool, all cores.
    pool: Option<rayon::ThreadPool>,
    /// The context of the sessions it makes.
    pub(crate) n_ctx: usize,
    path: PathBuf,
}

impl Inner {
    pub(crate) fn model(&self) -> &Gpt2Model<'_> {
        self.cell.borrow_dependent()
    }

    /// Runs `f` on the model's threads.
    pub(crate) fn compute<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.pool {
            Some(pool) => pool.install(f),
            None => f(),
        }
    }
}

/// A prompt or a text: a string, or token ids.
#[derive(FromPyObject)]
pub(crate) enum Input {
    Text(String),
    Ids(Vec<i64>),
}

impl Input {
    /// The token ids, each checked against the vocabulary.
    pub(crate) fn ids(self, model: &Gpt2Model<'_>, what: &str) -> PyResult<Vec<u32>> {
        match self {
            Input::Text(s) => model.tokenizer.encode(&s).py(),
            Input::Ids(v) => {
                let n_vocab = model.config.n_vocab;
                v.into_iter()
                    .map(|id| match u32::try_from(id) {
                        Ok(id) if (id as usize) < n_vocab => Ok(id),
                        _ => Err(value_error(format!(
                            "{what}: token id {id} is outside the vocabulary ({n_vocab} tokens)"
                        ))),
                    })
                    .collect()
            }
        }
    }
}

/// The model file to open: the argument, else `$QUILL_MODEL`, else the shipped default.
fn resolve(path: Option<PathBuf>) -> PyResult<PathBuf> {
    if let Some(p) = path {
        return Ok(p);
    }
    if let Some(p) = std::env::var_os("QUILL_MODEL").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    quill_gpt2::default_model::path().ok_or_else(|| {
        pyo3::exceptions::PyFileNotFoundError::new_err(format!(
            "no model given: pass a path or set QUILL_MODEL (the default model models/{} was not found)",
            quill_gpt2::default_model::FILE_NAME
        ))
    })
}

/// Opens a GGUF, or converts a Hugging Face folder to an F32 GGUF in a temporary folder.
fn open(path: &Path) -> PyResult<Owner> {
    if path.is_dir() {
        if !HfCheckpoint::is_checkpoint(path) {
            return Err(value_error(format!(
                "{}: a folder, but not a Hugging Face checkpoint (no config.json): give a GGUF file or a checkpoint folder",
                path.display()
            )));
        }
        let tmp = tempfile::Builder::new().prefix("quill-").tempdir().py()?;
        let out = tmp.path().join("model.gguf");
        let opts = quill_convert::ConvertOptions {
            file_type: quill_quant::FileType::from_name("f32").expect("f32 is a file type"),
            overrides: Vec::new(),
        };
        quill_convert::convert(path, &out, &opts, &|_, _, _| {}).py()?;
        let file = GgufFile::open(&out).py()?;
        return Ok(Owner { file, _tmp: Some(tmp) });
    }
    Ok(Owner { file: GgufFile::open(path).py()?, _tmp: None })
}

fn load(path: PathBuf, threads: Option<usize>, ctx: Option<usize>) -> PyResult<Inner> {
    quill_kernels::Kernels::init().py()?;
    let pool = match threads {
        None => None,
        Some(0) => return Err(value_error("threads must be at least 1")),
        Some(n) => Some(rayon::ThreadPoolBuilder::new().num_threads(n).build().py()?),
    };
    let owner = open(&path)?;
    let cell = ModelCell::try_new(owner, |o| Gpt2Model::load(&o.file))
        .map_err(|e| value_error(format!("{}: {}", path.display(), crate::errors::message(&e))))?;
    let max = cell.borrow_dependent().config.n_ctx;
    let n_ctx = match ctx {
        None => max,
        Some(0) => return Err(value_error("ctx must be at least 1")),
        Some(c) if c > max => return Err(value_error(format!("ctx {c} is larger than the model's context of {max}"))),
        Some(c) => c,
    };
    Ok(Inner { cell, pool, n_ctx, path })
}

/// A GPT-2 model from a GGUF file (mapped, never copied) or a Hugging Face folder (converted
/// to a temporary F32 GGUF on load).
///
/// Args:
///     path: the GGUF file or checkpoint folder; default: ``$QUILL_MODEL``, else the model
///         shipped in the repository's ``models/``.
///     threads: threads for this model's computations (default: all cores, shared with other
///         models).
///     ctx: context of the sessions it runs (default: the model's).
///
/// Raises:
///     FileNotFoundError: no such file.
///     ValueError: not a GPT-2 GGUF (the message says what is wrong), or a bad argument.
///
/// Every method releases the GIL while the model computes; several threads may use one
/// ``Model`` at once (each call has its own KV cache). Processes that open the same file share
/// one copy of the weights in the page cache.
#[pyclass(module = "quill", frozen)]
pub struct Model {
    pub(crate) inner: Arc<Inner>,
}

#[pymethods]
impl Model {
    #[new]
    #[pyo3(signature = (path=None, *, threads=None, ctx=None))]
    fn new(py: Python<'_>, path: Option<PathBuf>, threads: Option<usize>, ctx: Option<usize>) -> PyResult<Self> {
        let path = resolve(path)?;
        let inner = py.detach(|| load(path, threads, ctx))?;
        Ok(Model { inner: Arc::new(inner) })
    }

    fn __repr__(&self) -> String {
        let c = &self.inner.model().config;
        format!(
            "quill.Model('{}', n_layer={}, n_embd={}, n_vocab={}, ctx={})",
            self.inner.path.display(),
            c.n_layer,
            c.n_embd,
            c.n_vocab,
            self.inner.n_ctx
        )
    }

    /// The file or folder it was loaded from.
    #[getter]
    fn path(&self) -> PathBuf {
        self.inner.path.clone()
    }

    /// Context of the sessions it runs (the ``ctx`` argument, else the model's).
    #[getter]
    fn n_ctx(&self) -> usize {
        self.inner.n_ctx
    }

    /// The model's own context length (``gpt2.context_length``).
    #[getter]
    fn n_ctx_train(&self) -> usize {
        self.inner.model().config.n_ctx
    }

    #[getter]
    fn n_vocab(&self) -> usize {
        self.inner.model().config.n_vocab
    }

    #[getter]
    fn n_embd(&self) -> usize {
        self.inner.model().config.n_embd
    }

    #[getter]
    fn n_layer(&self) -> usize {
        self.inner.model().config.n_layer
    }

    #[getter]
    fn n_head(&self) -> usize {
        self.inner.model().config.n_head
    }

    /// The end-of-text token's id (``<|endoftext|>``), if the vocabulary has one.
    #[getter]
    fn eos_token_id(&self) -> Option<u32> {
        self.inner.model().tokenizer.eos()
    }

    #[getter]
    fn bos_token_id(&self) -> Option<u32> {
        self.inner.model().tokenizer.bos()
    }

    /// The token strings in id order, in GPT-2's byte-level form (``"Ġthe"`` for ``" the"``).
    fn vocab(&self) -> Vec<String> {
        self.inner.model().tokenizer.tokens().to_vec()
    }

    /// Token ids of ``text`` (GPT-2's byte-level BPE; ``<|endoftext|>`` written in the text is
    /// the special token).
    fn tokenize(&self, py: Python<'_>, text: &str) -> PyResult<Vec<u32>> {
        let model = self.inner.model();
        py.detach(|| model.tokenizer.encode(text)).py()
    }

    /// The text of ``ids``. Control tokens (``<|endoftext|>``) are left out unless
    /// ``special=True``; bytes that are not valid UTF-8 become U+FFFD.
    #[pyo3(signature = (ids, *, special=false))]
    fn detokenize(&self, ids: Vec<i64>, special: bool) -> PyResult<String> {
        crate::tokenizer::decode(&self.inner.model().tokenizer, ids, special)
    }

    /// The model's tokenizer.
    #[getter]
    fn tokenizer(&self) -> crate::tokenizer::Tokenizer {
        crate::tokenizer::Tokenizer::of_model(self.inner.clone())
    }

    /// Logits of a text or of token ids: the last position's, ``float32[n_vocab]``, or with
    /// ``all_positions=True`` every position's, ``float32[n_tokens, n_vocab]`` (the same
    /// numbers as ``quill logits``: F32 KV cache, batches of 512).
    #[pyo3(signature = (text_or_ids, all_positions=false))]
    fn logits<'py>(&self, py: Python<'py>, text_or_ids: Input, all_positions: bool) -> PyResult<Bound<'py, PyAny>> {
        let inner = &*self.inner;
        let model = inner.model();
        let ids = text_or_ids.ids(model, "logits")?;
        if ids.is_empty() {
            return Err(value_error("the input is empty: it has no tokens"));
        }
        if ids.len() > inner.n_ctx {
            return Err(value_error(format!(
                "the input has {} tokens, more than the context of {}",
                ids.len(),
                inner.n_ctx
            )));
        }
        let (n, v) = (ids.len(), model.config.n_vocab);
        let opts = SessionOptions { n_ctx: n, n_batch: 512, kv_type: KvType::F32 };
        let rows = py.detach(|| {
            inner.compute(|| -> Result<Vec<f32>, quill_gpt2::ModelError> {
                let mut session = model.session(opts)?;
                if !all_positions {
                    return Ok(session.prefill(&ids)?.to_vec());
                }
                let mut rows = Vec::with_capacity(n * v);
                session.eval_rows(&ids, 0, &mut |_, row| rows.extend_from_slice(row))?;
                Ok(rows)
            })
        });
        let rows = rows.py()?;
        if !all_positions {
            return Ok(PyArray1::from_vec(py, rows).into_any());
        }
        let array = Array2::from_shape_vec((n, v), rows).expect("n rows of n_vocab");
        Ok(PyArray2::from_owned_array(py, array).into_any())
    }

    /// Scores texts: the log-probability of each token given the ones before it.
    ///
    /// Returns one dict per text: ``ids`` (its tokens), ``logprobs`` (natural log of
    /// p(ids[i+1] | ids[:i+1]) for each token after the first; with ``add_bos=True`` the text
    /// is read after ``<|endoftext|>`` and every token is scored), ``n_scored``,
    /// ``log_likelihood`` (their sum) and ``perplexity`` (exp of minus the mean; NaN when no
    /// token was scored). Texts longer than the context are scored in windows that overlap by
    /// half a context, each token once. Same numbers as ``quill perplexity`` on the same
    /// windows (F32 KV cache).
    #[pyo3(signature = (texts, *, add_bos=false))]
    fn score<'py>(&self, py: Python<'py>, texts: Vec<Input>, add_bos: bool) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let inner = &*self.inner;
        let model = inner.model();
        if inner.n_ctx < 2 {
            return Err(value_error("scoring needs a context of 2 tokens or more"));
        }
        let bos = match (add_bos, model.tokenizer.eos()) {
            (false, _) => None,
            (true, Some(eos)) => Some(eos),
            (true, None) => return Err(value_error("add_bos: the model's vocabulary has no <|endoftext|> token")),
        };
        let mut lists = Vec::with_capacity(texts.len());
        for (i, t) in texts.into_iter().enumerate() {
            let mut ids = t.ids(model, &format!("texts[{i}]"))?;
            if let Some(b) = bos {
                ids.insert(0, b);
            }
            lists.push(ids);
        }
        let mut scorer = py.detach(|| Scorer::new(model, lists, inner.n_ctx)).py()?;
        loop {
            let more = py.detach(|| inner.compute(|| scorer.step())).py()?;
            py.check_signals()?;
            if !more {
                break;
            }
        }
        let skip = usize::from(bos.is_some());
        scorer
            .finish()
            .into_iter()
            .map(|s| {
                let d = PyDict::new(py);
                d.set_item("ids", PyList::new(py, &s.ids[skip..])?)?;
                d.set_item("logprobs", PyList::new(py, &s.logprobs)?)?;
                d.set_item("n_scored", s.logprobs.len())?;
                d.set_item("log_likelihood", s.log_likelihood())?;
                d.set_item("perplexity", s.perplexity())?;
                Ok(d)
            })
            .collect()
    }

    /// Continues ``prompt`` (a string or token ids) and returns the text generated (without
    /// the prompt), or with ``stream=True`` an iterator of text pieces as they come.
    ///
    /// A list of prompts (and ``n`` completions of each) run together on Quill's engine, as
    /// ``quill serve`` runs them (continuous batching, ``parallel`` at a time, default 16):
    /// the result is a list with one entry per prompt, a text (``n=1``) or a list of ``n``
    /// texts; one prompt with ``n > 1`` gives a list of ``n`` texts. Streamed, they yield
    /// ``(index, piece)``, index ``i * n + c`` for prompt ``i``'s completion ``c``. A ``seed``
    /// seeds every prompt's completion ``c`` with ``seed + c`` (as the server and vLLM do); a
    /// list of seeds, one per prompt, seeds prompt ``i``'s with ``seed[i] + c``. Each
    /// completion's tokens do not depend on what runs beside it.
    ///
    /// The defaults and the tokens are ``quill generate``'s (llama.cpp's sampler chain:
    /// penalties, top-k, typical, top-p, min-p, temperature; ``temperature=0`` is greedy):
    /// the same seed and settings give the same text. ``max_tokens=None`` runs until
    /// ``<|endoftext|>`` or a full context; ``stop`` ends the text before the first stop
    /// string. ``kv_type`` is the KV cache's storage (``"f16"``, as ``quill generate``,
    /// ``"f32"``, or ``"q8_0"``: 53% of F16's memory). Ctrl-C raises ``KeyboardInterrupt`` within a token.
    #[pyo3(signature = (
        prompt, max_tokens=Some(128), temperature=0.8, top_k=40, top_p=0.95, min_p=0.05,
        repeat_penalty=1.0, seed=None, stop=None, stream=false, *, n=1, parallel=None,
        typical_p=1.0, repeat_last_n=64, frequency_penalty=0.0, presence_penalty=0.0,
        ignore_eos=false, kv_type="f16"
    ))]
    #[allow(clippy::too_many_arguments)]
    fn generate<'py>(
        &self,
        py: Python<'py>,
        prompt: Prompts,
        max_tokens: Option<i64>,
        temperature: f32,
        top_k: i32,
        top_p: f32,
        min_p: f32,
        repeat_penalty: f32,
        seed: Option<Seeds>,
        stop: Option<Stops>,
        stream: bool,
        n: usize,
        parallel: Option<usize>,
        typical_p: f32,
        repeat_last_n: usize,
        frequency_penalty: f32,
        presence_penalty: f32,
        ignore_eos: bool,
        kv_type: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (sampling, seeds) = sampler(
            temperature,
            top_k,
            top_p,
            min_p,
            typical_p,
            repeat_penalty,
            frequency_penalty,
            presence_penalty,
            repeat_last_n,
            seed,
        );
        let s = Args { max_tokens, sampling, stop, ignore_eos, kv_type: kv_type.to_owned(), n, parallel, seeds }
            .settings()?;
        let inner = &*self.inner;
        let plan = py.detach(|| Plan::new(inner, prompt))?;
        if stream {
            let stream = TextStream::new(self.inner.clone(), &plan, &s)?;
            return Ok(Py::new(py, stream)?.into_bound(py).into_any());
        }
        let mut g = plan.start(inner, &s)?;
        let texts = run_to_end(py, inner, &mut g)?;
        Shape { single: plan.single, n: s.n }.group(py, texts)
    }

    /// ``generate`` at the level of tokens: returns the generated ids (without the prompt or
    /// the end token), why it ended (``"eos"``, ``"stop"``, ``"length"``, ``"context"``) and
    /// the end token that ended it, if one did; for a list of prompts or ``n > 1``, a list of
    /// these as ``generate`` gives texts. ``end_ids``: the tokens that end it (default:
    /// ``<|endoftext|>``).
    #[pyo3(signature = (
        prompt, max_tokens=Some(128), temperature=0.8, top_k=40, top_p=0.95, min_p=0.05,
        repeat_penalty=1.0, seed=None, stop=None, *, n=1, parallel=None, typical_p=1.0,
        repeat_last_n=64, frequency_penalty=0.0, presence_penalty=0.0, ignore_eos=false,
        end_ids=None, kv_type="f16"
    ))]
    #[allow(clippy::too_many_arguments)]
    fn generate_ids<'py>(
        &self,
        py: Python<'py>,
        prompt: Prompts,
        max_tokens: Option<i64>,
        temperature: f32,
        top_k: i32,
        top_p: f32,
        min_p: f32,
        repeat_penalty: f32,
        seed: Option<Seeds>,
        stop: Option<Stops>,
        n: usize,
        parallel: Option<usize>,
        typical_p: f32,
        repeat_last_n: usize,
        frequency_penalty: f32,
        presence_penalty: f32,
        ignore_eos: bool,
        end_ids: Option<Vec<i64>>,
        kv_type: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (sampling, seeds) = sampler(
            temperature,
            top_k,
            top_p,
            min_p,
            typical_p,
            repeat_penalty,
            frequency_penalty,
            presence_penalty,
            repeat_last_n,
            seed,
        );
        let mut s = Args { max_tokens, sampling, stop, ignore_eos, kv_type: kv_type.to_owned(), n, parallel, seeds }
            .settings()?;
        let inner = &*self.inner;
        if let Some(ids) = end_ids {
            s.end_tokens = Some(Input::Ids(ids).ids(inner.model(), "end_ids")?);
        }
        let plan = py.detach(|| Plan::new(inner, prompt))?;
        let mut g = plan.start(inner, &s)?;
        run_to_end(py, inner, &mut g)?;
        let items: Vec<(Vec<u32>, &'static str, Option<u32>)> = (0..g.len())
            .map(|i| {
                let t = g.text(i);
                (t.ids().to_vec(), t.finish().map_or("", Finish::name), t.end_token())
            })
            .collect();
        Shape { single: plan.single, n: s.n }.group(py, items)
    }
}
