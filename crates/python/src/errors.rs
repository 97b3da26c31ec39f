//! Quill's errors as Python exceptions: a missing file is `FileNotFoundError`, a refused
//! permission `PermissionError`, another I/O failure `OSError`, everything else (bad model,
//! bad argument, full context) `ValueError`; the message is Quill's, each cause once.

use std::error::Error;
use std::io;

use pyo3::exceptions::{PyFileNotFoundError, PyOSError, PyPermissionError, PyValueError};
use pyo3::PyErr;

/// The chain of causes joined by ": ", skipping a cause whose text the line already holds
/// (as `quill`'s error line).
pub fn message(e: &(dyn Error + 'static)) -> String {
    let mut line = String::new();
    let mut cause = Some(e);
    while let Some(c) = cause {
        let text = c.to_string();
        if !text.is_empty() && !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
        cause = c.source();
    }
    line
}

/// The exception for `e`, chosen by the first I/O error among its causes.
pub fn to_py(e: &(dyn Error + 'static)) -> PyErr {
    let mut cause = Some(e);
    let mut kind = None;
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<io::Error>() {
            kind = Some(io.kind());
            break;
        }
        cause = c.source();
    }
    let msg = message(e);
    match kind {
        Some(io::ErrorKind::NotFound) => PyFileNotFoundError::new_err(msg),
        Some(io::ErrorKind::PermissionDenied) => PyPermissionError::new_err(msg),
        Some(_) => PyOSError::new_err(msg),
        None => PyValueError::new_err(msg),
    }
}

/// `?` for Quill's error types.
pub trait IntoPy<T> {
    fn py(self) -> Result<T, PyErr>;
}

impl<T, E: Error + 'static> IntoPy<T> for Result<T, E> {
    fn py(self) -> Result<T, PyErr> {
        self.map_err(|e| to_py(&e))
    }
}

/// A sampler setting's message with the Python argument's name instead of the `quill
/// generate` flag's.
pub fn sampler_message(e: &quill_sampler::SamplerError) -> String {
    const NAMES: [(&str, &str); 9] = [
        ("--temp ", "temperature "),
        ("--top-k", "top_k"),
        ("--top-p", "top_p"),
        ("--min-p", "min_p"),
        ("--typical", "typical_p"),
        ("--repeat-penalty", "repeat_penalty"),
        ("--frequency-penalty", "frequency_penalty"),
        ("--presence-penalty", "presence_penalty"),
        ("--repeat-last-n", "repeat_last_n"),
    ];
    let mut s = e.to_string();
    for (flag, arg) in NAMES {
        s = s.replace(flag, arg);
    }
    s
}

pub fn value_error(msg: impl Into<String>) -> PyErr {
    PyValueError::new_err(msg.into())
}
