use gguf_file::GgmlType;

/// Errors of building kernel inputs (shapes and types); the kernels themselves cannot fail.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum KernelError {
    #[error("matrix of type {ty} with {rows}x{cols} needs {expected} bytes, got {found}")]
    WrongSize { ty: GgmlType, rows: usize, cols: usize, expected: usize, found: usize },

    #[error("matrix rows of {cols} elements are not a whole number of {ty} blocks")]
    PartialBlock { ty: GgmlType, cols: usize },

    #[error("weights of type {0} are not supported for matrix products")]
    Unsupported(GgmlType),
}
