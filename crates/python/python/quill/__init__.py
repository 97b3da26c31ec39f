"""Quill: GPT-2 from memory-mapped, quantized GGUF weights on ordinary CPUs.

    >>> import quill
    >>> model = quill.Model()            # the default model; or quill.Model("gpt2-q4_0.gguf")
    >>> text = model.generate("To be, or not to be", max_tokens=32, seed=1)
    >>> scores = model.score(["A line of text.", "Another one."])

``quill.transformers`` offers ``GPT2LMHeadModel`` and ``GPT2Tokenizer`` for code written for
Hugging Face ``transformers``.
"""
from quill._quill import (
    Engine,
    Model,
    Request,
    TextStream,
    Tokenizer,
    __version__,
    default_model_path,
    inspect,
    kernel_backend,
    quantize,
)

__all__ = [
    "Engine",
    "Model",
    "Request",
    "TextStream",
    "Tokenizer",
    "__version__",
    "default_model_path",
    "inspect",
    "kernel_backend",
    "quantize",
]
