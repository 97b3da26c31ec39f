//! ggml-compatible block formats (filled by the quantization issue).
