"""Hugging Face ``transformers``' GPT-2 classes on Quill, without PyTorch.

The code people copy from tutorials runs with only the import changed::

    from quill.transformers import GPT2LMHeadModel, GPT2Tokenizer

    tokenizer = GPT2Tokenizer.from_pretrained("gpt2")
    model = GPT2LMHeadModel.from_pretrained("gpt2")
    input_ids = tokenizer.encode("Once upon a time", return_tensors="pt")
    output = model.generate(input_ids, max_length=50, num_return_sequences=1)
    print(tokenizer.decode(output[0], skip_special_tokens=True))

``from_pretrained`` takes a GGUF file, a Hugging Face checkpoint folder (converted to an F32
GGUF on load, so that the numbers are ``transformers``' own), or a model id already in the
local Hugging Face cache (Quill downloads nothing). ``generate`` is greedy unless
``do_sample=True``, as in ``transformers``, and gives ``transformers``' greedy tokens on the
same weights. ``return_tensors="pt"`` needs PyTorch; ``"np"`` and plain lists do not, and
``generate`` returns what it was given (a tensor, an array or lists).
"""
import json
import os
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from quill._quill import Model, Tokenizer, default_model_path

__all__ = [
    "AutoModelForCausalLM",
    "TextGenerationPipeline",
    "pipeline",
    "AutoTokenizer",
    "BatchEncoding",
    "CausalLMOutput",
    "GPT2LMHeadModel",
    "GPT2Tokenizer",
    "GPT2TokenizerFast",
]

# Hub ids whose tokenizer is GPT-2's own 50257-token vocabulary (the default model's).
_GPT2_IDS = {
    f"{org}{name}"
    for org in ("", "openai-community/")
    for name in ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")
} | {"distilgpt2", "distilbert/distilgpt2"}


def _hf_cache_dirs() -> List[Path]:
    dirs = []
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            dirs.append(Path(os.environ[var]))
    home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    dirs.append(Path(home) / "hub")
    return dirs


def _from_hf_cache(model_id: str) -> Optional[Path]:
    """The snapshot folder of ``model_id`` in the local Hugging Face cache, if there is one."""
    names = [model_id] + ([f"openai-community/{model_id}"] if "/" not in model_id else [])
    for cache in _hf_cache_dirs():
        for name in names:
            repo = cache / ("models--" + name.replace("/", "--"))
            snapshots = repo / "snapshots"
            if not snapshots.is_dir():
                continue
            ref = repo / "refs" / "main"
            if ref.is_file():
                snap = snapshots / ref.read_text().strip()
                if snap.is_dir():
                    return snap
            found = sorted(snapshots.iterdir(), key=lambda p: p.stat().st_mtime)
            if found:
                return found[-1]
    return None


def _resolve(name_or_path: Union[str, "os.PathLike[str]"]) -> Path:
    path = Path(name_or_path)
    if path.exists():
        return path
    snap = _from_hf_cache(str(name_or_path))
    if snap is not None:
        return snap
    raise FileNotFoundError(
        f"{str(name_or_path)!r} is not a file or folder, and not a model in the local Hugging Face cache "
        f"({', '.join(str(d) for d in _hf_cache_dirs())}); Quill downloads nothing: give a GGUF file "
        "(`quill quantize`) or a Hugging Face checkpoint folder"
    )


def _read_json(path: Path) -> Dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError as e:
        raise ValueError(f"{path}: not valid JSON: {e}") from None


def _is_torch(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


def _to_rows(ids: Any) -> List[List[int]]:
    """Token ids given as a tensor, an array, a list or a list of lists, as lists of rows."""
    if hasattr(ids, "tolist"):
        ids = ids.tolist()
    if isinstance(ids, int):
        return [[ids]]
    ids = list(ids)
    if not ids or not isinstance(ids[0], (list, tuple)) and not hasattr(ids[0], "tolist"):
        return [[int(i) for i in ids]]
    return [[int(i) for i in (r.tolist() if hasattr(r, "tolist") else r)] for r in ids]


def _to_list(ids: Any) -> List[int]:
    if hasattr(ids, "tolist"):
        ids = ids.tolist()
    if isinstance(ids, int):
        return [ids]
    return [int(i) for i in ids]


def _tensor(rows: List[List[int]], kind: Optional[str]) -> Any:
    """Rows as ``kind`` asks: "pt" (PyTorch), "np" (NumPy int64) or None (lists)."""
    if kind is None:
        return rows
    if kind == "np":
        return np.array(rows, dtype=np.int64)
    if kind == "pt":
        try:
            import torch
        except ImportError:
            raise ImportError(
                "return_tensors='pt' needs PyTorch (pip install torch); Quill itself does not: "
                "use return_tensors='np' or None"
            ) from None
        return torch.tensor(rows, dtype=torch.long)
    raise ValueError(f"return_tensors must be 'pt', 'np' or None, got {kind!r}")


class BatchEncoding(dict):
    """What the tokenizer returns: a dict (``input_ids``, ``attention_mask``) that also reads as
    attributes."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class GPT2Tokenizer:
    """GPT-2's byte-level BPE, as ``transformers.GPT2Tokenizer`` (encode, decode, ``__call__``
    with padding, ``batch_decode``, ``convert_ids_to_tokens``...)."""

    model_input_names = ["input_ids", "attention_mask"]

    def __init__(self, tokenizer: Tokenizer, name_or_path: str = "", model_max_length: int = 1024):
        self._tok = tokenizer
        self.name_or_path = name_or_path
        self.model_max_length = model_max_length
        self._vocab = tokenizer.vocab()
        self._ids: Optional[Dict[str, int]] = None
        eos = tokenizer.eos_token_id
        self.eos_token: Optional[str] = None if eos is None else self._vocab[eos]
        self.bos_token = self.eos_token
        self.unk_token = self.eos_token
        self.pad_token: Optional[str] = None
        self.padding_side = "right"
        self.clean_up_tokenization_spaces = False

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Union[str, "os.PathLike[str]"], **kwargs: Any) -> "GPT2Tokenizer":
        """From a GGUF file, a folder with ``tokenizer.json`` or ``vocab.json`` + ``merges.txt``,
        or a model id in the local Hugging Face cache. GPT-2's own ids (``"gpt2"``,
        ``"gpt2-xl"``...) fall back to the default model's tokenizer, which is GPT-2's."""
        name = str(pretrained_model_name_or_path)
        try:
            path = _resolve(pretrained_model_name_or_path)
        except FileNotFoundError:
            default = default_model_path()
            if name not in _GPT2_IDS or default is None:
                raise
            path = Path(default)
        tok = cls(Tokenizer(path), name_or_path=name)
        if path.is_dir():
            cfg = _read_json(path / "tokenizer_config.json")
            if isinstance(cfg.get("model_max_length"), int) and cfg["model_max_length"] < 10**9:
                tok.model_max_length = cfg["model_max_length"]
        for key in ("pad_token", "padding_side", "model_max_length", "clean_up_tokenization_spaces"):
            if key in kwargs:
                setattr(tok, key, kwargs.pop(key))
        if kwargs:
            warnings.warn(f"quill.transformers: ignored tokenizer arguments {sorted(kwargs)}", stacklevel=2)
        return tok

    # --- vocabulary -------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._vocab)

    @property
    def vocab_size(self) -> int:
        return len(self._vocab)

    def get_vocab(self) -> Dict[str, int]:
        if self._ids is None:
            self._ids = {t: i for i, t in enumerate(self._vocab)}
        return dict(self._ids)

    def _id_of(self, token: Optional[str]) -> Optional[int]:
        if token is None:
            return None
        if self._ids is None:
            self._ids = {t: i for i, t in enumerate(self._vocab)}
        return self._ids.get(token)

    @property
    def eos_token_id(self) -> Optional[int]:
        return self._id_of(self.eos_token)

    @property
    def bos_token_id(self) -> Optional[int]:
        return self._id_of(self.bos_token)

    @property
    def unk_token_id(self) -> Optional[int]:
        return self._id_of(self.unk_token)

    @property
    def pad_token_id(self) -> Optional[int]:
        return self._id_of(self.pad_token)

    @property
    def all_special_ids(self) -> List[int]:
        return sorted({i for i in (self.eos_token_id, self.bos_token_id, self.unk_token_id, self.pad_token_id) if i is not None})

    def tokenize(self, text: str, **kwargs: Any) -> List[str]:
        """The byte-level token strings of ``text`` (``"Ġworld"``)."""
        return [self._vocab[i] for i in self._tok.encode(text)]

    def convert_tokens_to_ids(self, tokens: Union[str, Sequence[str]]) -> Union[int, List[int]]:
        if isinstance(tokens, str):
            i = self._id_of(tokens)
            return self.unk_token_id if i is None else i
        return [self.convert_tokens_to_ids(t) for t in tokens]  # type: ignore[misc]

    def convert_ids_to_tokens(self, ids: Any, skip_special_tokens: bool = False) -> Union[str, List[str]]:
        if isinstance(ids, int):
            return self._vocab[ids]
        special = set(self.all_special_ids) if skip_special_tokens else set()
        return [self._vocab[i] for i in _to_list(ids) if i not in special]

    def convert_tokens_to_string(self, tokens: Sequence[str]) -> str:
        return self._tok.decode([self._id_of(t) or 0 for t in tokens], special=True)

    # --- encode / decode ----------------------------------------------------------------
    def encode(
        self,
        text: str,
        add_special_tokens: bool = True,
        return_tensors: Optional[str] = None,
        truncation: bool = False,
        max_length: Optional[int] = None,
        **kwargs: Any,
    ) -> Any:
        """Token ids of ``text``: a list, or ``[1, n]`` with ``return_tensors`` "pt" or "np".
        GPT-2 adds no special tokens."""
        ids = self._tok.encode(text)
        if truncation and max_length is not None:
            ids = ids[:max_length]
        if return_tensors is None:
            return ids
        return _tensor([ids], return_tensors)

    def __call__(
        self,
        text: Union[str, Sequence[str]],
        padding: Union[bool, str] = False,
        truncation: bool = False,
        max_length: Optional[int] = None,
        return_tensors: Optional[str] = None,
        return_attention_mask: bool = True,
        **kwargs: Any,
    ) -> BatchEncoding:
        single = isinstance(text, str)
        rows = [self._tok.encode(t) for t in ([text] if single else text)]  # type: ignore[list-item]
        if truncation and max_length is not None:
            rows = [r[:max_length] for r in rows]
        masks = [[1] * len(r) for r in rows]
        if padding in (True, "longest", "max_length"):
            if self.pad_token_id is None:
                raise ValueError(
                    "padding needs a pad token: set tokenizer.pad_token = tokenizer.eos_token (GPT-2 has none)"
                )
            width = max_length if padding == "max_length" and max_length else max(map(len, rows))
            for r, m in zip(rows, masks):
                pad = width - len(r)
                if self.padding_side == "left":
                    r[:0], m[:0] = [self.pad_token_id] * pad, [0] * pad
                else:
                    r.extend([self.pad_token_id] * pad)
                    m.extend([0] * pad)
        if return_tensors is not None and len({len(r) for r in rows}) > 1:
            raise ValueError("texts of different lengths need padding=True to become one tensor")
        if single and return_tensors is None:
            out = BatchEncoding(input_ids=rows[0], attention_mask=masks[0])
        else:
            out = BatchEncoding(input_ids=_tensor(rows, return_tensors), attention_mask=_tensor(masks, return_tensors))
        if not return_attention_mask:
            del out["attention_mask"]
        return out

    def decode(
        self,
        token_ids: Any,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: Optional[bool] = None,
        **kwargs: Any,
    ) -> str:
        """The text of ``token_ids`` (a list, an array or a tensor); ``<|endoftext|>`` is
        written unless ``skip_special_tokens``."""
        text = self._tok.decode(_to_list(token_ids), special=not skip_special_tokens)
        clean = self.clean_up_tokenization_spaces if clean_up_tokenization_spaces is None else clean_up_tokenization_spaces
        if clean:
            for a, b in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                         (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
                text = text.replace(a, b)
        return text

    def batch_decode(self, sequences: Any, skip_special_tokens: bool = False, **kwargs: Any) -> List[str]:
        return [self.decode(s, skip_special_tokens=skip_special_tokens, **kwargs) for s in _to_rows(sequences)]


GPT2TokenizerFast = GPT2Tokenizer
AutoTokenizer = GPT2Tokenizer


class _Config:
    """Attribute access to a checkpoint's ``config.json`` / ``generation_config.json``."""

    def __init__(self, **values: Any):
        self.__dict__.update(values)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return None

    def to_dict(self) -> Dict[str, Any]:
        return dict(self.__dict__)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.__dict__})"


class CausalLMOutput:
    """``model(input_ids, labels=...)``: ``logits`` ``[batch, n, vocab]`` and, with labels, the
    mean cross-entropy ``loss`` of each position predicting the next label."""

    def __init__(self, logits: Any, loss: Any = None):
        self.logits = logits
        self.loss = loss

    def __getitem__(self, key: Union[int, str]) -> Any:
        items = [v for v in (self.loss, self.logits) if v is not None]
        return items[key] if isinstance(key, int) else getattr(self, key)


# The generate() arguments this implementation reads; others are refused, not ignored.
_HARMLESS = {"use_cache", "output_scores", "return_dict_in_generate", "early_stopping", "length_penalty"}


class GPT2LMHeadModel:
    """GPT-2 with its language-model head, run by Quill: ``generate`` (greedy, or sampling
    with ``do_sample=True``) and ``model(input_ids, labels=...)`` for logits and loss."""

    def __init__(self, model: Model, config: Optional[Dict[str, Any]] = None, generation_config: Optional[Dict[str, Any]] = None):
        self.model = model
        eos = model.eos_token_id
        cfg = {
            "model_type": "gpt2",
            "vocab_size": model.n_vocab,
            "n_positions": model.n_ctx_train,
            "max_position_embeddings": model.n_ctx_train,
            "n_embd": model.n_embd,
            "n_layer": model.n_layer,
            "n_head": model.n_head,
            "bos_token_id": model.bos_token_id,
            "eos_token_id": eos,
        }
        cfg.update(config or {})
        self.config = _Config(**cfg)
        gen = {"bos_token_id": cfg["bos_token_id"], "eos_token_id": cfg["eos_token_id"], "pad_token_id": cfg.get("pad_token_id")}
        gen.update({k: v for k, v in (generation_config or {}).items() if v is not None or k not in gen})
        self.generation_config = _Config(**gen)
        self.device = "cpu"
        self.name_or_path = str(model.path)

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: Union[str, "os.PathLike[str]"],
        *,
        threads: Optional[int] = None,
        ctx: Optional[int] = None,
        **kwargs: Any,
    ) -> "GPT2LMHeadModel":
        """From a GGUF file (mapped as it is, quantized or not), a Hugging Face checkpoint folder
        (converted to an F32 GGUF on load) or a model id in the local Hugging Face cache.
        ``threads`` and ``ctx`` are Quill's; ``torch_dtype``/``dtype``, ``device_map="cpu"`` and
        the download options are accepted and have no effect."""
        for key in ("torch_dtype", "dtype", "low_cpu_mem_usage", "local_files_only", "revision",
                    "cache_dir", "trust_remote_code", "use_safetensors", "force_download", "token"):
            kwargs.pop(key, None)
        device_map = kwargs.pop("device_map", None)
        if device_map not in (None, "cpu", "auto"):
            raise ValueError(f"device_map={device_map!r}: Quill runs on the CPU")
        if kwargs:
            raise TypeError(f"from_pretrained() got arguments Quill does not support: {sorted(kwargs)}")
        path = _resolve(pretrained_model_name_or_path)
        model = Model(path, threads=threads, ctx=ctx)
        config = generation = None
        if path.is_dir():
            config = {k: v for k, v in _read_json(path / "config.json").items() if k in ("bos_token_id", "eos_token_id", "pad_token_id")}
            generation = _read_json(path / "generation_config.json")
        return cls(model, config, generation)

    def eval(self) -> "GPT2LMHeadModel":
        return self

    def to(self, *args: Any, **kwargs: Any) -> "GPT2LMHeadModel":
        device = args[0] if args else kwargs.get("device", "cpu")
        if str(device) not in ("cpu", "torch.float32") and not str(device).startswith("torch."):
            raise ValueError(f"to({device!r}): Quill runs on the CPU")
        return self

    def cpu(self) -> "GPT2LMHeadModel":
        return self

    def num_parameters(self) -> int:
        c = self.config
        e, v, p, n = c.n_embd, c.vocab_size, c.n_positions, c.n_layer
        return v * e + p * e + n * (12 * e * e + 13 * e) + 2 * e

    def __repr__(self) -> str:
        return f"quill.transformers.GPT2LMHeadModel({self.model!r})"

    # --- forward --------------------------------------------------------------------
    def __call__(self, input_ids: Any = None, attention_mask: Any = None, labels: Any = None, **kwargs: Any) -> CausalLMOutput:
        """Logits of every position (``[batch, n, vocab]``, float32; zeros where the attention
        mask is 0) and, with ``labels``, the mean cross-entropy of predicting ``labels[:, 1:]``
        (positions labelled -100 are skipped)."""
        if input_ids is None:
            raise ValueError("input_ids is required")
        kind = "pt" if _is_torch(input_ids) else "np"
        rows = _to_rows(input_ids)
        masks = _to_rows(attention_mask) if attention_mask is not None else [[1] * len(r) for r in rows]
        width = max(map(len, rows))
        logits = np.zeros((len(rows), width, self.model.n_vocab), dtype=np.float32)
        for b, (row, mask) in enumerate(zip(rows, masks)):
            keep = [i for i, m in enumerate(mask) if m]
            if keep:
                logits[b, keep] = self.model.logits([row[i] for i in keep], all_positions=True)
        loss = None
        if labels is not None:
            nll, count = 0.0, 0
            for b, lab in enumerate(_to_rows(labels)):
                for i in range(len(lab) - 1):
                    if lab[i + 1] == -100:
                        continue
                    row = logits[b, i].astype(np.float64)
                    m = row.max()
                    nll -= row[lab[i + 1]] - m - np.log(np.exp(row - m).sum())
                    count += 1
            loss = nll / count if count else float("nan")
        if kind == "pt":
            import torch

            return CausalLMOutput(torch.from_numpy(logits), None if loss is None else torch.tensor(loss, dtype=torch.float32))
        return CausalLMOutput(logits, loss)

    forward = __call__

    # --- generate ---------------------------------------------------------------------
    def generate(
        self,
        inputs: Any = None,
        generation_config: Any = None,
        *,
        input_ids: Any = None,
        attention_mask: Any = None,
        max_length: Optional[int] = None,
        max_new_tokens: Optional[int] = None,
        do_sample: Optional[bool] = None,
        num_return_sequences: Optional[int] = None,
        temperature: Optional[float] = None,
        top_k: Optional[int] = None,
        top_p: Optional[float] = None,
        min_p: Optional[float] = None,
        typical_p: Optional[float] = None,
        repetition_penalty: Optional[float] = None,
        eos_token_id: Union[int, Sequence[int], None] = None,
        pad_token_id: Optional[int] = None,
        bos_token_id: Optional[int] = None,
        num_beams: Optional[int] = None,
        seed: Optional[int] = None,
        **kwargs: Any,
    ) -> Any:
        """``transformers``' ``generate`` for decoder-only GPT-2: each row of ``input_ids``
        (left-padded rows with their ``attention_mask``) continued ``num_return_sequences``
        times; returns prompt + new tokens, each sequence ending with its end token and padded
        with ``pad_token_id``, as a tensor, an array or lists, as given. Greedy by default (the
        same tokens as ``transformers``); ``do_sample=True`` samples with ``temperature``,
        ``top_k`` (default 50) and ``top_p`` in llama.cpp's order (top-k, top-p, then
        temperature), seeded by ``seed`` (sequence ``i`` by ``seed + i``) when given."""
        for key in list(kwargs):
            if key in _HARMLESS and not (key in ("output_scores", "return_dict_in_generate") and kwargs[key]):
                kwargs.pop(key)
        if kwargs:
            raise TypeError(f"generate() got arguments Quill does not support: {sorted(kwargs)}")
        given = {
            "max_length": max_length, "max_new_tokens": max_new_tokens, "do_sample": do_sample,
            "num_return_sequences": num_return_sequences, "temperature": temperature, "top_k": top_k,
            "top_p": top_p, "min_p": min_p, "typical_p": typical_p, "repetition_penalty": repetition_penalty,
            "eos_token_id": eos_token_id, "pad_token_id": pad_token_id, "bos_token_id": bos_token_id,
            "num_beams": num_beams, "seed": seed,
        }
        gen = _Generate(self, given, generation_config)
        ids = input_ids if input_ids is not None else inputs
        if ids is None:
            raise ValueError("generate() needs input_ids (an unconditional start is not supported)")
        kind = "pt" if _is_torch(ids) else "np" if isinstance(ids, np.ndarray) else None
        rows = _to_rows(ids)
        masks = _to_rows(attention_mask) if attention_mask is not None else [[1] * len(r) for r in rows]
        if len(masks) != len(rows) or any(len(m) != len(r) for m, r in zip(masks, rows)):
            raise ValueError("attention_mask must have the shape of input_ids")
        n_seq, pad = gen.n_seq, gen.pad
        prompts = [[t for t, m in zip(row, mask) if m] for row, mask in zip(rows, masks)]
        news = self._run(prompts, [gen.n_new(len(r)) for r in rows], n_seq, gen.end_ids, gen.seed, gen.opts)
        out: List[List[int]] = []
        for k, (new, _, end) in enumerate(news):
            out.append(rows[k // n_seq] + new + ([end] if end is not None else []))
        width = max(map(len, out))
        out = [r + [pad] * (width - len(r)) for r in out]
        return _tensor(out, kind)

    def _run(
        self,
        prompts: List[List[int]],
        n_new: List[int],
        n_seq: int,
        end_ids: List[int],
        seed: Optional[int],
        opts: Dict[str, Any],
        parallel: Optional[int] = None,
    ) -> List[Any]:
        """Every prompt's ``n_seq`` sequences on Quill's engine, all at once (each prompt
        evaluated once and shared by its sequences); ``(new ids, reason, end id)`` per
        sequence, prompt-major. Sequence ``k`` is seeded ``seed + k`` wherever it runs. Prompts
        asking for different numbers of new tokens run in one call per number."""
        if not prompts:
            return []
        out: List[Any] = [None] * (len(prompts) * n_seq)
        for n in sorted(set(n_new)):
            which = [i for i, m in enumerate(n_new) if m == n]
            seeds = None if seed is None else [seed + i * n_seq for i in which]
            got = self.model.generate_ids(
                [prompts[i] for i in which], max_tokens=n, seed=seeds, end_ids=end_ids, n=n_seq,
                parallel=parallel or min(len(which) * n_seq, 64), **opts,
            )
            for i, res in zip(which, got):
                for c, r in enumerate(res if n_seq > 1 else [res]):
                    out[i * n_seq + c] = r
        return out

    def _new_tokens(self, gc: Dict[str, Any], n_input: int) -> int:
        """How many tokens to generate at most: ``max_new_tokens``, else ``max_length`` minus the
        input (20 new tokens when neither is given, as ``transformers``)."""
        if gc.get("max_new_tokens") is not None:
            return int(gc["max_new_tokens"])
        if gc.get("max_length") is not None:
            n = int(gc["max_length"]) - n_input
            if n <= 0:
                warnings.warn(
                    f"input length {n_input} is not below max_length {gc['max_length']}: nothing is generated; "
                    "use max_new_tokens",
                    stacklevel=3,
                )
            return max(n, 0)
        return min(20, max(self.model.n_ctx - n_input, 0))


AutoModelForCausalLM = GPT2LMHeadModel


_GENERATE_KEYS = (
    "max_length", "max_new_tokens", "do_sample", "num_return_sequences", "temperature", "top_k",
    "top_p", "min_p", "typical_p", "repetition_penalty", "eos_token_id", "pad_token_id",
    "bos_token_id", "num_beams", "seed",
)


class _Generate:
    """A call's generation settings, ``transformers``' way: the model's generation config,
    then ``generation_config``, then the keyword arguments given (``None``: not given)."""

    def __init__(self, lm: "GPT2LMHeadModel", given: Dict[str, Any], generation_config: Any = None):
        gc = dict(lm.generation_config.to_dict())
        if generation_config is not None:
            gc.update({k: v for k, v in (generation_config.to_dict() if hasattr(generation_config, "to_dict") else dict(generation_config)).items() if v is not None})
        gc.update({k: v for k, v in given.items() if v is not None and k != "seed"})
        if (gc.get("num_beams") or 1) != 1:
            raise ValueError("num_beams > 1: beam search is not supported by Quill")
        self._lm, self._gc, self.seed = lm, gc, given.get("seed")
        eos = gc.get("eos_token_id")
        self.end_ids = [] if eos is None else [eos] if isinstance(eos, int) else [int(e) for e in eos]
        pad = gc.get("pad_token_id")
        self.pad = pad if pad is not None else self.end_ids[0] if self.end_ids else 0
        self.n_seq = int(gc.get("num_return_sequences") or 1)
        if self.n_seq < 1:
            raise ValueError(f"num_return_sequences must be at least 1, got {self.n_seq}")
        sample = bool(gc.get("do_sample"))
        if self.n_seq > 1 and not sample:
            raise ValueError(
                f"greedy generation (do_sample=False) gives one sequence: num_return_sequences must be 1, got {self.n_seq} "
                "(as in transformers)"
            )
        self.opts: Dict[str, Any] = {
            "repeat_penalty": float(gc.get("repetition_penalty") or 1.0),
            "repeat_last_n": lm.model.n_ctx,
            "min_p": float(gc.get("min_p") or 0.0),
            "typical_p": 1.0,
            "frequency_penalty": 0.0,
            "presence_penalty": 0.0,
            "kv_type": "f32",  # transformers keeps its cache in float32
        }
        if sample:
            self.opts.update(
                temperature=float(1.0 if gc.get("temperature") is None else gc["temperature"]),
                top_k=int(50 if gc.get("top_k") is None else gc["top_k"]),
                top_p=float(1.0 if gc.get("top_p") is None else gc["top_p"]),
                typical_p=float(gc.get("typical_p") or 1.0),
            )
        else:
            self.opts.update(temperature=0.0, top_k=0, top_p=1.0, min_p=0.0)

    def n_new(self, n_input: int) -> int:
        return self._lm._new_tokens(self._gc, n_input)


class TextGenerationPipeline:
    """``transformers``' text-generation pipeline on Quill: ``pipe(text or texts,
    max_new_tokens=..., do_sample=..., num_return_sequences=..., return_full_text=...)``
    gives ``[{"generated_text": ...}]`` per text (a list of those for a list of texts). All
    texts and their sequences run together on Quill's engine; ``batch_size`` is how many
    sequences at once (default: all, at most 64)."""

    def __init__(self, model: GPT2LMHeadModel, tokenizer: GPT2Tokenizer, **defaults: Any):
        self.model = model
        self.tokenizer = tokenizer
        self.task = "text-generation"
        self._defaults = defaults

    def __call__(self, text_inputs: Union[str, Sequence[str]], **kwargs: Any) -> Any:
        kwargs = {**self._defaults, **kwargs}
        return_full_text = kwargs.pop("return_full_text", True)
        return_text = kwargs.pop("return_text", True)
        clean = kwargs.pop("clean_up_tokenization_spaces", False)
        batch_size = kwargs.pop("batch_size", None)
        kwargs.pop("prefix", None)
        if kwargs.pop("return_tensors", False) or not return_text:
            raise ValueError("return_tensors: Quill's pipeline returns text only")
        single = isinstance(text_inputs, str)
        texts = [text_inputs] if single else list(text_inputs)
        if not all(isinstance(t, str) for t in texts):
            raise TypeError("text_inputs must be a string or a list of strings")
        prompts = [self.tokenizer.encode(t) for t in texts]
        if any(not p for p in prompts):
            raise ValueError("the prompt is empty: it has no tokens")
        unknown = sorted(k for k in kwargs if k not in _GENERATE_KEYS and k not in _HARMLESS)
        if unknown:
            raise TypeError(f"pipeline() got generation arguments Quill does not support: {unknown}")
        gen = _Generate(self.model, {k: v for k, v in kwargs.items() if k in _GENERATE_KEYS})
        news = self.model._run(prompts, [gen.n_new(len(p)) for p in prompts], gen.n_seq, gen.end_ids, gen.seed, gen.opts, batch_size)
        out = []
        for i, text in enumerate(texts):
            seqs = []
            for new, _, _ in news[i * gen.n_seq:(i + 1) * gen.n_seq]:
                cont = self.tokenizer.decode(new, skip_special_tokens=True, clean_up_tokenization_spaces=clean)
                seqs.append({"generated_text": text + cont if return_full_text else cont})
            out.append(seqs)
        return out[0] if single else out


def pipeline(task: str = "text-generation", model: Any = None, tokenizer: Any = None, **kwargs: Any) -> TextGenerationPipeline:
    """``transformers.pipeline`` for ``"text-generation"``: ``model`` is a GGUF file, a
    checkpoint folder, a cached model id or a ``GPT2LMHeadModel``; ``tokenizer`` defaults to
    the model's. Other keyword arguments become the pipeline's generation defaults."""
    if task != "text-generation":
        raise ValueError(f"task {task!r}: Quill's pipeline does text-generation only")
    for key in ("device", "device_map", "torch_dtype", "dtype", "framework", "trust_remote_code"):
        kwargs.pop(key, None)
    if model is None:
        model = default_model_path()
        if model is None:
            raise ValueError("pipeline() needs a model: a GGUF file, a checkpoint folder or a GPT2LMHeadModel")
    if not isinstance(model, GPT2LMHeadModel):
        model = GPT2LMHeadModel.from_pretrained(model)
    if tokenizer is None:
        tokenizer = GPT2Tokenizer.from_pretrained(model.name_or_path)
    elif not isinstance(tokenizer, GPT2Tokenizer):
        tokenizer = GPT2Tokenizer.from_pretrained(tokenizer)
    return TextGenerationPipeline(model, tokenizer, **kwargs)
