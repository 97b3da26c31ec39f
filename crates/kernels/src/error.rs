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

    #[error("matrix of type {ty} has {rows} rows, not a whole number of its {group}-row interleaved groups")]
    PartialGroup { ty: GgmlType, rows: usize, group: usize },

    #[error("weights of type {0} are not supported for matrix products")]
    Unsupported(GgmlType),

    #[error("QUILL_KERNEL={value:?} is not a backend; this CPU has: {}", names(available))]
    UnknownBackend { value: String, available: Vec<Backend> },

    #[error("QUILL_KERNEL={backend} asks for instructions this CPU does not have; it has: {}", names(available))]
    BackendUnsupported { backend: Backend, available: Vec<Backend> },
}

/// `scalar, avx2` for the error messages.
fn names(backends: &[Backend]) -> String {
    backends.iter().map(|b| b.name()).collect::<Vec<_>>().join(", ")
}
