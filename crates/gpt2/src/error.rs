use gguf_file::{GgmlType, MetadataError};

/// Errors of loading or running a GPT-2 model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("unsupported architecture '{0}': quill runs gpt2")]
    UnsupportedArchitecture(String),

    #[error(transparent)]
    Metadata(#[from] MetadataError),

    #[error("invalid model config: {0}")]
    BadConfig(String),

    #[error("tensor '{0}' is missing")]
    MissingTensor(String),

    #[error("tensor '{name}' has shape {found:?}, expected {expected:?}")]
    BadTensorShape { name: String, expected: Vec<u64>, found: Vec<u64> },

    #[error("tensor '{name}' has type {ty}, which quill cannot use here ({reason})")]
    BadTensorType { name: String, ty: GgmlType, reason: &'static str },

    #[error("tensor '{name}': {source}")]
    Kernel { name: String, source: quill_kernels::KernelError },

    #[error("tokenizer: {0}")]
    Tokenizer(String),

    #[error("token id {id} is outside the vocabulary ({n_vocab} tokens)")]
    BadToken { id: u32, n_vocab: usize },

    #[error(
        "context is full: {needed} positions needed, the session holds {n_ctx} (use a larger --ctx, at most {max})"
    )]
    ContextFull { needed: usize, n_ctx: usize, max: usize },

    #[error("requested context {requested} is larger than the model's {max}")]
    ContextTooLarge { requested: usize, max: usize },

    #[error("a session with a context of {n_ctx} needs {} MiB for its KV cache and buffers, only {} MiB are available (use a smaller --ctx or --kv-type f16)", needed / (1 << 20), available / (1 << 20))]
    OutOfMemory { needed: u64, available: u64, n_ctx: usize },

    #[error("empty input: nothing to evaluate")]
    EmptyInput,

    #[error("bad batch: {0}")]
    BadBatch(String),
}
