use gguf_file::GgmlType;

use crate::Backend;

/// Errors of building kernel inputs (shapes and types) and of choosing a backend; the kernels
/// themselves cannot fail.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum KernelError {
    #[error("matrix of type {ty} with {rows}x{cols} needs {expected} bytes, got {found}")]
    WrongSize { ty: GgmlType, rows: usize, cols: usize, expected: usize, found: usize },

    #[error("matrix rows of {cols} elements are not a whole number of {ty} blocks")]
    PartialBlock { ty: GgmlType, cols: usize },

    #[error("weights of type {0} are not supported for matrix products")]
    Unsupported(GgmlType),

    #[error("QUILL_KERNEL={0:?} is not a backend (expected scalar, avx2, avx512 or neon)")]
    UnknownBackend(String),

    #[error("QUILL_KERNEL={0} asks for instructions this CPU does not have")]
    BackendUnsupported(Backend),
}
