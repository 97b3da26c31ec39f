use gguf_file::{GgmlType, MetadataError};

/// Errors of loading or running a GPT-2 model. Messages state what is wrong, with the values;
/// advice on which option to change belongs to the program that has the options.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("unsupported architecture '{0}': quill runs gpt2")]
    UnsupportedArchitecture(String),

    #[error(transparent)]
    Metadata(#[from] MetadataError),

    #[error("invalid model config: {key} = {value} is outside 1..={max}")]
    ConfigOutOfRange { key: &'static str, value: u64, max: u64 },

    #[error("invalid model config: embedding length {n_embd} is not divisible by the head count {n_head}")]
    HeadsDoNotDivide { n_embd: usize, n_head: usize },

    #[error("invalid model config: layer norm epsilon {eps} must be positive")]
    BadEpsilon { eps: f32 },

    #[error("invalid model config: token_embd.weight has {rows} rows but the tokenizer has {n_tokens} tokens")]
    VocabMismatch { rows: usize, n_tokens: usize },

    #[error("tensor '{0}' is missing")]
    MissingTensor(String),

    #[error("tensor '{name}' has shape {found:?}, expected {expected:?}")]
    BadTensorShape { name: String, expected: Vec<u64>, found: Vec<u64> },

    #[error("tensor '{name}' has type {ty}, which quill cannot use here ({reason})")]
    BadTensorType { name: String, ty: GgmlType, reason: &'static str },

    #[error("tensor '{name}': {source}")]
    Kernel { name: String, source: quill_kernels::KernelError },

    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),

    #[error("token id {id} is outside the vocabulary ({n_vocab} tokens)")]
    BadToken { id: u32, n_vocab: usize },

    #[error("context is full: {needed} positions needed, the session holds {n_ctx} (the model's context is {max})")]
    ContextFull { needed: usize, n_ctx: usize, max: usize },

    #[error("--kv-type {kv}: the model's head size {head_dim} is not a multiple of 32 (a Q8_0 block)")]
    KvTypeUnsupported { kv: &'static str, head_dim: usize },

    #[error("requested context {requested} is larger than the model's {max}")]
    ContextTooLarge { requested: usize, max: usize },

    #[error("a session with a context of {n_ctx} needs {} MiB for its KV cache and buffers, only {} MiB are available", needed / (1 << 20), available / (1 << 20))]
    OutOfMemory { needed: u64, available: u64, n_ctx: usize },

    #[error("empty input: nothing to evaluate")]
    EmptyInput,

    #[error("bad batch: {0}")]
    BadBatch(String),
}

/// Errors of building the tokenizer from a model's metadata or a `tokenizer.json`, and of
/// encoding with it.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("tokenizer.ggml.model is '{0}', quill supports 'gpt2' (byte-level BPE)")]
    UnsupportedModel(String),

    #[error("tokenizer.ggml.token_type must be an array of {n_tokens} i32")]
    BadTokenTypes { n_tokens: usize },

    #[error("{key} = {value} is not a token id below {n_tokens}")]
    BadSpecialId { key: &'static str, value: String, n_tokens: usize },

    #[error("tokenizer merge #{index} '{merge}' is not two tokens separated by a space")]
    MalformedMerge { index: usize, merge: String },

    #[error("tokenizer merge #{index} '{merge}' uses '{part}', which is not a token")]
    MergeOfUnknown { index: usize, merge: String, part: String },

    #[error("tokenizer merge #{index} '{merge}' makes '{result}', which is not a token")]
    MergeMakesUnknown { index: usize, merge: String, result: String },

    #[error("tokenizer: token '{0}' appears twice in the vocabulary")]
    DuplicateToken(String),

    #[error("tokenizer: token id {id} of '{token}' is beyond the vocabulary size {n_vocab}")]
    IdBeyondVocab { id: u32, token: String, n_vocab: usize },

    /// An error of the `tokenizers` library, whose errors are boxed messages.
    #[error("tokenizer: {stage}: {message}")]
    Library { stage: &'static str, message: String },
}
