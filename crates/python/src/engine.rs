//! `quill.Engine`: the server's engine inside a Python process (vLLM's `AsyncLLMEngine` for
//! GPT-2): requests submitted from any thread or asyncio task, continuous batching on a thread
//! of its own (no GIL held while it computes), each request's text read as it comes, and
//! cancelled by dropping or `cancel()`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use quill_engine::{queue, Client, EngineConfig, Event, Finish, SeqReader, SeqText, SubmitError};

use crate::errors::{sampler_message, value_error};
use crate::gen::{sampler, Args, Plan, Prompts, Seeds, Shape, Stops};
use crate::model::{Inner, Input, Model};

/// How long a blocking read waits before it looks for Ctrl-C again.
const SIGNAL_SLICE: Duration = Duration::from_millis(50);

/// The continuous-batching engine of ``quill serve``, in this process: ``submit`` requests from
/// any thread (or asyncio task) and read each one's text as it comes.
///
///     engine = quill.Engine(model, parallel=8)
///     req = engine.submit("To be, or not to be", max_tokens=32, seed=1)
///     for piece in req:            # or: async for piece in req
///         print(piece, end="")
///     req.stop_reason              # "length"
///
/// ``parallel`` requests run at once (KV slots of ``ctx`` positions, default the model's
/// ``ctx``), each step reading the weights once for all of them; the rest wait in order.
/// A request's tokens do not depend on what runs beside it (the server's batch invariance).
/// ``prefix_cache``: a prompt that begins with whole chunks (256 tokens) some other request
/// has evaluated takes their KV instead of evaluating them again (the same results).
/// The engine runs on its own thread and the model's threads; ``close()`` (or leaving a
/// ``with`` block) finishes what is running and stops it.
#[pyclass(module = "quill", frozen)]
pub struct Engine {
    inner: Arc<Inner>,
    client: Client,
    thread: Mutex<Option<JoinHandle<()>>>,
}

#[pymethods]
impl Engine {
    #[new]
    #[pyo3(signature = (model, *, parallel=8, ctx=None, kv_type="f16", queue=1024, prefix_cache=true))]
    fn new(
        py: Python<'_>,
        model: &Model,
        parallel: usize,
        ctx: Option<usize>,
        kv_type: &str,
        queue: usize,
        prefix_cache: bool,
    ) -> PyResult<Self> {
        let inner = model.inner.clone();
        if parallel == 0 {
            return Err(value_error("parallel must be at least 1"));
        }
        let kv_type = crate::gen::kv_type(kv_type)?;
        let n_ctx = match ctx {
            None => inner.n_ctx,
            Some(c) if c == 0 || c > inner.n_ctx => {
                return Err(value_error(format!("ctx must be in 1..={}, got {c}", inner.n_ctx)))
            }
            Some(c) => c,
        };
        let cfg = EngineConfig {
            n_parallel: parallel,
            n_ctx,
            max_queue: queue,
            kv_type,
            prefix_cache,
            ..EngineConfig::default()
        };
        let (client, inbox) = queue_pair(queue)?;
        let (tx, rx) = std::sync::mpsc::channel();
        let owner = inner.clone();
        let thread = std::thread::Builder::new()
            .name("quill-engine".into())
            .spawn(move || {
                let inner = owner;
                let model = inner.model();
                let mut engine = match quill_engine::Engine::new(model, cfg, &inbox) {
                    Ok(e) => {
                        let _ = tx.send(Ok(()));
                        e
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                };
                inner.compute(|| engine.run(&inbox));
            })
            .map_err(|e| PyRuntimeError::new_err(format!("could not start the engine thread: {e}")))?;
        let started = py.detach(move || rx.recv());
        match started {
            Ok(Ok(())) => Ok(Engine { inner, client, thread: Mutex::new(Some(thread)) }),
            Ok(Err(msg)) => {
                let _ = thread.join();
                Err(value_error(msg))
            }
            Err(_) => Err(PyRuntimeError::new_err("the engine thread ended while starting")),
        }
    }

    /// Queues a prompt (a string or token ids) and returns its ``Request``, an iterator of text
    /// pieces (``(index, piece)`` with ``n > 1``). The settings are ``Model.generate``'s;
    /// ``max_tokens=None`` runs until ``<|endoftext|>`` or a full context.
    #[pyo3(signature = (
        prompt, max_tokens=Some(128), temperature=0.8, top_k=40, top_p=0.95, min_p=0.05,
        repeat_penalty=1.0, seed=None, stop=None, *, n=1, typical_p=1.0, repeat_last_n=64,
        frequency_penalty=0.0, presence_penalty=0.0, ignore_eos=false, end_ids=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn submit(
        &self,
        py: Python<'_>,
        prompt: Input,
        max_tokens: Option<i64>,
        temperature: f32,
        top_k: i32,
        top_p: f32,
        min_p: f32,
        repeat_penalty: f32,
        seed: Option<Seeds>,
        stop: Option<Stops>,
        n: usize,
        typical_p: f32,
        repeat_last_n: usize,
        frequency_penalty: f32,
        presence_penalty: f32,
        ignore_eos: bool,
        end_ids: Option<Vec<i64>>,
    ) -> PyResult<Request> {
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
        let args = Args { max_tokens, sampling, stop, ignore_eos, kv_type: "f16".into(), n, parallel: None, seeds };
        let mut s = args.settings()?;
        let inner = &*self.inner;
        if let Some(ids) = end_ids {
            s.end_tokens = Some(Input::Ids(ids).ids(inner.model(), "end_ids")?);
        }
        let plan = py.detach(|| Plan::new(inner, Prompts::One(prompt)))?;
        plan.check_seeds(&s)?;
        let job = plan.jobs(&s).pop().expect("one prompt");
        let streams = self.client.submit(vec![job.request]).map_err(submit_error)?;
        let readers = streams.into_iter().flatten().map(|s| SeqReader::new(s, &job.stop)).collect();
        let state = ReqState { readers, events: Vec::new(), ready: VecDeque::new() };
        Ok(Request { inner: self.inner.clone(), state: Mutex::new(state), shape: Shape { single: true, n } })
    }

    /// Counters: ``running`` sequences, ``waiting`` prompts, forward ``steps``,
    /// ``generated_tokens``, ``prompt_tokens``, ``finished`` and ``cancelled`` sequences.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        use std::sync::atomic::Ordering::Relaxed;
        let st = self.client.stats();
        let d = PyDict::new(py);
        d.set_item("running", st.running.load(Relaxed))?;
        d.set_item("waiting", self.client.queue_depth())?;
        d.set_item("steps", st.steps.load(Relaxed))?;
        d.set_item("generated_tokens", st.generated_tokens.load(Relaxed))?;
        d.set_item("prompt_tokens", st.prompt_tokens.load(Relaxed))?;
        d.set_item("finished", st.finished.load(Relaxed))?;
        d.set_item("cancelled", st.cancelled.load(Relaxed))?;
        d.set_item("prefix_cache_hits", st.prefix_hits.load(Relaxed))?;
        d.set_item("prefix_tokens_reused", st.prefix_tokens_reused.load(Relaxed))?;
        Ok(d)
    }

    /// Refuses new requests, lets the running and waiting ones finish, and stops the thread
    /// (waiting for it, the GIL released). ``abort=True`` ends them now instead.
    #[pyo3(signature = (*, abort=false))]
    fn close(&self, py: Python<'_>, abort: bool) -> PyResult<()> {
        if abort {
            self.client.abort();
        } else {
            self.client.close();
        }
        let handle = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = handle {
            py.detach(|| h.join()).map_err(|_| PyRuntimeError::new_err("the engine thread panicked"))?;
        }
        Ok(())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.close(py, false)?;
        Ok(false)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // Dropped without close(): end what runs and let the thread go.
        self.client.abort();
    }
}

fn queue_pair(n: usize) -> PyResult<(Client, quill_engine::Inbox)> {
    if n == 0 {
        return Err(value_error("queue must be at least 1"));
    }
    Ok(queue(n))
}

fn submit_error(e: SubmitError) -> PyErr {
    match e {
        SubmitError::Sampler(s) => value_error(sampler_message(&s)),
        SubmitError::Closed => PyRuntimeError::new_err("the engine is closed"),
        SubmitError::QueueFull { .. } => PyRuntimeError::new_err(e.to_string()),
        e => value_error(e.to_string()),
    }
}

struct ReqState {
    readers: Vec<SeqReader>,
    events: Vec<Event>,
    ready: VecDeque<(usize, String)>,
}

impl ReqState {
    /// Moves what has come into `ready`; returns whether anything is still running.
    fn pump(&mut self, inner: &Inner) -> bool {
        let tok = &inner.model().tokenizer;
        let mut running = false;
        for (i, r) in self.readers.iter_mut().enumerate() {
            let mut piece = String::new();
            running |= r.pump(tok, &mut self.events, &mut piece);
            if !piece.is_empty() {
                self.ready.push_back((i, piece));
            }
        }
        running
    }

    /// Waits up to `timeout` for the first running completion to have something.
    fn wait(&self, timeout: Duration) {
        if let Some(r) = self.readers.iter().find(|r| r.is_running()) {
            r.wait(timeout);
        }
    }
}

/// A request on an ``Engine``: iterate it (``for`` or ``async for``) for its text pieces,
/// ``(index, piece)`` with ``n > 1``; ``cancel()`` ends it; ``stop_reason`` and ``ids`` say
/// how it went. Dropping it cancels it.
#[pyclass(module = "quill")]
pub struct Request {
    inner: Arc<Inner>,
    state: Mutex<ReqState>,
    shape: Shape,
}

/// What `poll` says when nothing has come yet.
enum Polled {
    Item((usize, String)),
    Pending,
    Done,
}

impl Request {
    fn lock(&self) -> MutexGuard<'_, ReqState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn poll_once(&self) -> PyResult<Polled> {
        let mut st = self.lock();
        if let Some(item) = st.ready.pop_front() {
            return Ok(Polled::Item(item));
        }
        let running = st.pump(&self.inner);
        if let Some(item) = st.ready.pop_front() {
            return Ok(Polled::Item(item));
        }
        if let Some(why) = st.readers.iter().find_map(|r| r.text().aborted()) {
            return Err(PyRuntimeError::new_err(format!("generation failed: {why}")));
        }
        Ok(if running { Polled::Pending } else { Polled::Done })
    }

    fn each<T>(&self, f: impl Fn(&SeqText) -> T) -> Vec<T> {
        self.lock().readers.iter().map(|r| f(r.text())).collect()
    }
}

#[pymethods]
impl Request {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// The next piece, waiting for it (the GIL released; Ctrl-C raises ``KeyboardInterrupt``).
    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        loop {
            match self.poll_once()? {
                Polled::Item(it) => return self.shape.piece(py, it).map(Some),
                Polled::Done => return Ok(None),
                Polled::Pending => {
                    py.detach(|| self.lock().wait(SIGNAL_SLICE));
                    py.check_signals()?;
                }
            }
        }
    }

    /// The next piece if one has come, ``None`` once the request has ended, ``...`` while
    /// nothing has come yet (never waits).
    fn poll<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match self.poll_once()? {
            Polled::Item(it) => self.shape.piece(py, it),
            Polled::Done => Ok(py.None().into_bound(py)),
            Polled::Pending => Ok(py.Ellipsis().into_bound(py)),
        }
    }

    fn __aiter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// ``async for``: awaits the next piece without blocking the event loop.
    fn __anext__<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        py.import("quill._aio")?.getattr("anext")?.call1((slf,))
    }

    /// Ends the request now (``stop_reason`` becomes ``"interrupted"``); its slot is freed at
    /// the engine's next step.
    fn cancel(&self) {
        let mut st = self.lock();
        for r in &mut st.readers {
            r.interrupt(&mut String::new());
        }
        st.ready.clear();
    }

    /// Why it ended (``"eos"``, ``"stop"``, ``"length"``, ``"context"``, ``"interrupted"``);
    /// ``None`` while it runs; a list with ``n > 1``.
    #[getter]
    fn stop_reason<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let v = self.each(|t| t.finish().map(Finish::name));
        self.shape.group(py, v)
    }

    /// The tokens received so far (a list per completion with ``n > 1``).
    #[getter]
    fn ids<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let v = self.each(|t| t.ids().to_vec());
        self.shape.group(py, v)
    }

    /// Whether every completion has ended.
    #[getter]
    fn done(&self) -> bool {
        let mut st = self.lock();
        !st.pump(&self.inner) && st.ready.is_empty()
    }
}
