//! `Model.generate(..., stream=True)`: an iterator of text pieces that runs the generation one
//! engine step at a time, as Python asks for them.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use quill_engine::{Finish, Generation};
use self_cell::self_cell;

use crate::gen::{generate_error, GenSettings, Plan, Shape};
use crate::model::Inner;

type Gen<'a> = Generation<'a, 'a>;

self_cell!(
    /// A generation and the model it runs on (kept alive by the `Arc`).
    struct StreamCell {
        owner: Arc<Inner>,
        #[not_covariant]
        dependent: Gen,
    }
);

/// A generation being read, and the pieces that came and are not yet handed out.
struct State {
    cell: StreamCell,
    ready: VecDeque<(usize, String)>,
    running: bool,
}

/// An iterator of the text pieces of a generation (``Model.generate(..., stream=True)``): text
/// pieces for one prompt, ``(index, piece)`` for a list of prompts or ``n > 1``.
///
/// Each step releases the GIL; Ctrl-C raises ``KeyboardInterrupt`` from ``next()``. After the
/// last piece, ``stop_reason`` says why it ended (``"eos"``, ``"stop"``, ``"length"``,
/// ``"context"``, or ``"interrupted"`` after ``close()``) and ``ids`` holds the generated
/// tokens (lists of them, one per completion, for several).
#[pyclass(module = "quill")]
pub struct TextStream {
    state: Mutex<State>,
    shape: Shape,
}

impl TextStream {
    pub(crate) fn new(inner: Arc<Inner>, plan: &Plan, s: &GenSettings) -> PyResult<Self> {
        let cell = StreamCell::try_new(inner, |inner| plan.start(inner, s))?;
        let shape = Shape { single: plan.single, n: s.n };
        Ok(TextStream { state: Mutex::new(State { cell, ready: VecDeque::new(), running: true }), shape })
    }

    fn lock(&self) -> PyResult<MutexGuard<'_, State>> {
        // Only `next()` holds the lock across computation, with the GIL released; another
        // thread asking at the same time is told so rather than made to wait.
        self.state.try_lock().map_err(|_| PyRuntimeError::new_err("the stream is being read by another thread"))
    }

    /// Per completion, from the generation.
    fn each<T>(&self, f: impl Fn(&Gen<'_>, usize) -> T) -> PyResult<Vec<T>> {
        Ok(self.lock()?.cell.with_dependent(|_, g| (0..g.len()).map(|i| f(g, i)).collect()))
    }
}

#[pymethods]
impl TextStream {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let mut guard = self.lock()?;
        let st: &mut State = &mut guard;
        loop {
            if let Some(item) = st.ready.pop_front() {
                return self.shape.piece(py, item).map(Some);
            }
            if !st.running {
                return Ok(None);
            }
            let (cell, ready) = (&mut st.cell, &mut st.ready);
            st.running = py
                .detach(|| {
                    cell.with_dependent_mut(|inner, g| {
                        inner.compute(move || g.step(&mut |i, p| ready.push_back((i, p.to_owned()))))
                    })
                })
                .map_err(generate_error)?;
            if let Some(why) = st.cell.with_dependent(|_, g| g.aborted().map(str::to_owned)) {
                st.running = false;
                return Err(PyRuntimeError::new_err(format!("generation failed: {why}")));
            }
            py.check_signals()?;
        }
    }

    /// Ends the generation (``stop_reason`` becomes ``"interrupted"``); the rest of the text
    /// already decided is dropped.
    fn close(&self) -> PyResult<()> {
        let mut guard = self.lock()?;
        guard.cell.with_dependent_mut(|_, g| g.interrupt(&mut |_, _| ()));
        guard.ready.clear();
        guard.running = false;
        Ok(())
    }

    /// Why the generation ended; ``None`` while it runs (a list, one per completion, for
    /// several).
    #[getter]
    fn stop_reason<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.shape.group(py, self.each(|g, i| g.finish(i).map(Finish::name))?)
    }

    /// The tokens generated so far (without the prompt or the end token).
    #[getter]
    fn ids<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.shape.group(py, self.each(|g, i| g.text(i).ids().to_vec())?)
    }
}
