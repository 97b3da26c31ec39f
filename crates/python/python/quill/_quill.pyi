"""Type stubs of quill._quill, the native half of the quill package."""
import os
import pathlib
from typing import Any, AsyncIterator, Awaitable, Iterator, List, Mapping, Literal, Optional, Sequence, Tuple, TypedDict, Union, overload

import numpy as np
import numpy.typing as npt

__version__: str

PathLike = Union[str, "os.PathLike[str]"]
TextOrIds = Union[str, Sequence[int]]

class ScoreResult(TypedDict):
    ids: List[int]
    """The text's tokens."""
    logprobs: List[float]
    """Natural-log probability of each token after the first (of every token with add_bos)."""
    n_scored: int
    log_likelihood: float
    """Sum of ``logprobs``."""
    perplexity: float
    """exp(-log_likelihood / n_scored); NaN when nothing was scored."""

class TextStream(Iterator[str]):
    """Text pieces of a generation, as they come (``Model.generate(..., stream=True)``)."""

    def __iter__(self) -> "TextStream": ...
    def __next__(self) -> str: ...
    def close(self) -> None:
        """Ends the generation; ``stop_reason`` becomes ``"interrupted"``."""
    @property
    def stop_reason(self) -> Optional[str]:
        """``"eos"``, ``"stop"``, ``"length"``, ``"context"`` or ``"interrupted"``; None while running."""
    @property
    def ids(self) -> List[int]:
        """The tokens generated so far."""

class Tokenizer:
    """GPT-2's tokenizer, without a model: from a GGUF file (its metadata only) or a folder
    with ``tokenizer.json`` or ``vocab.json`` + ``merges.txt``."""

    def __init__(self, path: PathLike) -> None: ...
    def encode(self, text: str) -> List[int]:
        """Token ids of ``text`` (``<|endoftext|>`` in the text is the special token)."""
    def decode(self, ids: Sequence[int], *, special: bool = False) -> str:
        """Text of ``ids``; control tokens are left out unless ``special=True``."""
    def vocab(self) -> List[str]:
        """Token strings in id order, in GPT-2's byte-level form (``"Ġthe"``)."""
    def token_bytes(self, id: int) -> bytes:
        """The bytes a token stands for (empty for control tokens)."""
    @property
    def n_vocab(self) -> int: ...
    def __len__(self) -> int: ...
    @property
    def eos_token_id(self) -> Optional[int]: ...
    @property
    def bos_token_id(self) -> Optional[int]: ...

class Model:
    """A GPT-2 model from a GGUF file (mapped, never copied) or a Hugging Face folder
    (converted to a temporary F32 GGUF on load).

    Every method releases the GIL while the model computes. Raises FileNotFoundError for a
    missing file and ValueError for a file that is not a GPT-2 GGUF or a bad argument.
    """

    def __init__(
        self,
        path: Optional[PathLike] = None,
        *,
        threads: Optional[int] = None,
        ctx: Optional[int] = None,
    ) -> None:
        """Loads ``path`` (default: ``$QUILL_MODEL``, else the shipped default model).

        ``threads``: threads for this model (default: all cores); ``ctx``: context of its
        sessions (default: the model's).
        """
    @property
    def path(self) -> pathlib.Path:
        """The file or folder it was loaded from."""
    @property
    def n_ctx(self) -> int:
        """Context of the sessions it runs."""
    @property
    def n_ctx_train(self) -> int:
        """The model's own context length."""
    @property
    def n_vocab(self) -> int: ...
    @property
    def n_embd(self) -> int: ...
    @property
    def n_layer(self) -> int: ...
    @property
    def n_head(self) -> int: ...
    @property
    def eos_token_id(self) -> Optional[int]: ...
    @property
    def bos_token_id(self) -> Optional[int]: ...
    @property
    def tokenizer(self) -> Tokenizer:
        """The model's tokenizer."""
    def vocab(self) -> List[str]:
        """Token strings in id order, in GPT-2's byte-level form (``"Ġthe"``)."""
    def tokenize(self, text: str) -> List[int]:
        """Token ids of ``text`` (``<|endoftext|>`` in the text is the special token)."""
    def detokenize(self, ids: Sequence[int], *, special: bool = False) -> str:
        """Text of ``ids``; control tokens are left out unless ``special=True``."""
    @overload
    def logits(self, text_or_ids: TextOrIds, all_positions: Literal[False] = ...) -> npt.NDArray[np.float32]: ...
    @overload
    def logits(self, text_or_ids: TextOrIds, all_positions: bool) -> npt.NDArray[np.float32]: ...
    def score(self, texts: Sequence[TextOrIds], *, add_bos: bool = False) -> List[ScoreResult]:
        """Per-token log-probabilities, log-likelihood and perplexity of each text."""
    @overload
    def generate(
        self,
        prompt: TextOrIds,
        max_tokens: Optional[int] = 128,
        temperature: float = 0.8,
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.05,
        repeat_penalty: float = 1.0,
        seed: Optional[int] = None,
        stop: Union[str, Sequence[str], None] = None,
        stream: Literal[False] = False,
        *,
        n: Literal[1] = 1,
        parallel: Optional[int] = None,
        typical_p: float = 1.0,
        repeat_last_n: int = 64,
        frequency_penalty: float = 0.0,
        presence_penalty: float = 0.0,
        ignore_eos: bool = False,
        kv_type: Literal["f16", "f32", "q8_0"] = "f16",
    ) -> str: ...
    @overload
    def generate(
        self,
        prompt: Union[TextOrIds, Sequence[TextOrIds]],
        max_tokens: Optional[int] = 128,
        temperature: float = 0.8,
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.05,
        repeat_penalty: float = 1.0,
        seed: Optional[int] = None,
        stop: Union[str, Sequence[str], None] = None,
        stream: Literal[False] = False,
        *,
        n: int = 1,
        parallel: Optional[int] = None,
        typical_p: float = 1.0,
        repeat_last_n: int = 64,
        frequency_penalty: float = 0.0,
        presence_penalty: float = 0.0,
        ignore_eos: bool = False,
        kv_type: Literal["f16", "f32", "q8_0"] = "f16",
    ) -> List[Union[str, List[str]]]:
        """A list of prompts (or ``n > 1``): all run together on the engine; one entry per
        prompt (a text, or a list of ``n``), or the ``n`` texts of one prompt."""
    @overload
    def generate(
        self,
        prompt: Union[TextOrIds, Sequence[TextOrIds]],
        max_tokens: Optional[int] = 128,
        temperature: float = 0.8,
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.05,
        repeat_penalty: float = 1.0,
        seed: Optional[int] = None,
        stop: Union[str, Sequence[str], None] = None,
        *,
        stream: Literal[True],
        n: int = 1,
        parallel: Optional[int] = None,
        typical_p: float = 1.0,
        repeat_last_n: int = 64,
        frequency_penalty: float = 0.0,
        presence_penalty: float = 0.0,
        ignore_eos: bool = False,
        kv_type: Literal["f16", "f32", "q8_0"] = "f16",
    ) -> TextStream:
        """Streamed: text pieces for one prompt, ``(index, piece)`` for a list or ``n > 1``."""
    def generate_ids(
        self,
        prompt: Union[TextOrIds, Sequence[TextOrIds]],
        max_tokens: Optional[int] = 128,
        temperature: float = 0.8,
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.05,
        repeat_penalty: float = 1.0,
        seed: Optional[int] = None,
        stop: Union[str, Sequence[str], None] = None,
        *,
        n: int = 1,
        parallel: Optional[int] = None,
        typical_p: float = 1.0,
        repeat_last_n: int = 64,
        frequency_penalty: float = 0.0,
        presence_penalty: float = 0.0,
        ignore_eos: bool = False,
        end_ids: Optional[Sequence[int]] = None,
        kv_type: Literal["f16", "f32", "q8_0"] = "f16",
    ) -> Union[Tuple[List[int], str, Optional[int]], List[Tuple[List[int], str, Optional[int]]], List[List[Tuple[List[int], str, Optional[int]]]]]:
        """``generate`` for token ids: the generated ids (without the prompt or the end token),
        why it ended, and the end token that ended it (``end_ids``, default ``<|endoftext|>``);
        shaped as ``generate``'s texts for a list of prompts or ``n > 1``."""

class Request(Iterator[Union[str, Tuple[int, str]]], AsyncIterator[Union[str, Tuple[int, str]]]):
    """A request on an ``Engine``: its text pieces as they come (``(index, piece)`` with
    ``n > 1``), by ``for`` or ``async for``. Dropping it cancels it."""

    def __iter__(self) -> "Request": ...
    def __next__(self) -> Union[str, Tuple[int, str]]: ...
    def __aiter__(self) -> "Request": ...
    def __anext__(self) -> Awaitable[Union[str, Tuple[int, str]]]: ...
    def poll(self) -> Any:
        """The next piece if one has come, ``None`` once ended, ``...`` while nothing has come."""
    def cancel(self) -> None:
        """Ends it now; ``stop_reason`` becomes ``"interrupted"``."""
    @property
    def stop_reason(self) -> Union[Optional[str], List[Optional[str]]]: ...
    @property
    def ids(self) -> Union[List[int], List[List[int]]]: ...
    @property
    def done(self) -> bool: ...

class Engine:
    """``quill serve``'s continuous-batching engine in this process: ``submit`` from any thread
    or asyncio task, read each request as it comes; ``close()`` or a ``with`` block ends it."""

    def __init__(self, model: Model, *, parallel: int = 8, ctx: Optional[int] = None,
                 kv_type: Literal["f16", "f32", "q8_0"] = "f16", queue: int = 1024, prefix_cache: bool = True) -> None: ...
    def submit(
        self,
        prompt: TextOrIds,
        max_tokens: Optional[int] = 128,
        temperature: float = 0.8,
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.05,
        repeat_penalty: float = 1.0,
        seed: Optional[int] = None,
        stop: Union[str, Sequence[str], None] = None,
        *,
        n: int = 1,
        typical_p: float = 1.0,
        repeat_last_n: int = 64,
        frequency_penalty: float = 0.0,
        presence_penalty: float = 0.0,
        ignore_eos: bool = False,
        end_ids: Optional[Sequence[int]] = None,
    ) -> Request: ...
    def stats(self) -> Mapping[str, int]:
        """running, waiting, steps, generated_tokens, prompt_tokens, finished, cancelled,
        prefix_cache_hits, prefix_tokens_reused."""
    def close(self, *, abort: bool = False) -> None: ...
    def __enter__(self) -> "Engine": ...
    def __exit__(self, *exc: object) -> bool: ...

class QuantizeReport(TypedDict):
    n_tensors: int
    n_elements: int
    bytes_in: int
    bytes_out: int
    warnings: List[str]

def quantize(
    src: PathLike,
    dst: PathLike,
    type: str = "q4_0",
    *,
    tensor_types: Union[Mapping[str, str], Sequence[Tuple[str, str]], None] = None,
    threads: Optional[int] = None,
) -> QuantizeReport:
    """Converts a Hugging Face folder or a GGUF into a (quantized) GGUF, as ``quill quantize``."""

def inspect(path: PathLike) -> dict:
    """Header, metadata and tensors of a GGUF file, as ``quill inspect --json``."""

def default_model_path() -> Optional[pathlib.Path]:
    """The default model's path, or None."""

def kernel_backend() -> str:
    """The SIMD kernels in use: ``avx512``, ``avx2``, ``neon`` or ``scalar``."""
