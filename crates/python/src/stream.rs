//! `Model.generate(..., stream=True)`: an iterator of text pieces that runs the generation one
//! token at a time, as Python asks for them.

use std::sync::{Arc, Mutex, MutexGuard};

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use quill_generate::Generator;
use self_cell::self_cell;

use crate::model::{generate_error, GenSettings, Inner, Model};

type Gen<'a> = Generator<'a, 'a>;

self_cell!(
    /// A generation and the model it runs on (kept alive by the `Arc`).
    struct StreamCell {
        owner: Arc<Inner>,
        #[not_covariant]
        dependent: Gen,
    }
);

/// An iterator of the text pieces of a generation (``Model.generate(..., stream=True)``).
///
/// Each step releases the GIL; Ctrl-C raises ``KeyboardInterrupt`` from ``next()``. After the
/// last piece, ``stop_reason`` says why it ended (``"eos"``, ``"stop"``, ``"length"``,
/// ``"context"``, or ``"interrupted"`` after ``close()``) and ``ids`` holds the generated
/// tokens.
#[pyclass(module = "quill")]
pub struct TextStream {
    cell: Mutex<StreamCell>,
}

impl TextStream {
    pub(crate) fn new(inner: Arc<Inner>, ids: Vec<u32>, s: &GenSettings) -> PyResult<Self> {
        let cell = StreamCell::try_new(inner, |inner| Model::generator(inner, ids, s))?;
        Ok(TextStream { cell: Mutex::new(cell) })
    }

    fn lock(&self) -> PyResult<MutexGuard<'_, StreamCell>> {
        // Only `next()` holds the lock across computation, with the GIL released; another
        // thread asking at the same time is told so rather than made to wait.
        self.cell.try_lock().map_err(|_| PyRuntimeError::new_err("the stream is being read by another thread"))
    }
}

#[pymethods]
impl TextStream {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<String>> {
        let mut guard = self.lock()?;
        let cell: &mut StreamCell = &mut guard;
        loop {
            let mut piece = String::new();
            let running = py
                .detach(|| {
                    cell.with_dependent_mut(|inner, g| {
                        let piece = &mut piece;
                        inner.compute(move || g.step(piece))
                    })
                })
                .map_err(generate_error)?;
            if !piece.is_empty() {
                return Ok(Some(piece));
            }
            if !running {
                return Ok(None);
            }
            py.check_signals()?;
        }
    }

    /// Ends the generation (``stop_reason`` becomes ``"interrupted"``); the rest of the text
    /// already decided is dropped.
    fn close(&self) -> PyResult<()> {
        let mut guard = self.lock()?;
        guard.with_dependent_mut(|_, g| g.interrupt(&mut String::new()));
        Ok(())
    }

    /// Why the generation ended; ``None`` while it runs.
    #[getter]
    fn stop_reason(&self) -> PyResult<Option<&'static str>> {
        Ok(self.lock()?.with_dependent(|_, g| g.stop().map(|s| s.name())))
    }

    /// The tokens generated so far (without the prompt or ``<|endoftext|>``).
    #[getter]
    fn ids(&self) -> PyResult<Vec<u32>> {
        Ok(self.lock()?.with_dependent(|_, g| g.ids().to_vec()))
    }
}
