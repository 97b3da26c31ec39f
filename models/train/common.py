"""Shared helpers for the Quill default-model scripts."""
from pathlib import Path

from transformers import GPT2TokenizerFast

EOT = 50256  # <|endoftext|>
REPO = Path(__file__).resolve().parents[2]
TOKENIZER_DIR = str(REPO / "models" / "tokenizer")
# Everything a run makes (data, checkpoints, exports) goes here, outside git's view.
WORK_DIR = REPO / "target" / "default-model"


def load_tokenizer(d: str = TOKENIZER_DIR) -> GPT2TokenizerFast:
    """GPT-2's own byte-level BPE from vocab.json + merges.txt.

    transformers 5 takes the file paths as `vocab=` / `merges=` (4.x called
    them `vocab_file=` / `merges_file=`); try both so either major works.
    """
    try:
        tok = GPT2TokenizerFast(vocab=f"{d}/vocab.json", merges=f"{d}/merges.txt")
        if len(tok) != 50257:
            raise TypeError
    except TypeError:
        tok = GPT2TokenizerFast(vocab_file=f"{d}/vocab.json", merges_file=f"{d}/merges.txt")
    assert len(tok) == 50257, len(tok)
    assert tok.convert_tokens_to_ids("<|endoftext|>") == EOT
    assert tok("Hello world")["input_ids"] == [15496, 995]
    return tok
