#!/usr/bin/env python3
"""After training: fp32 train/val/test losses, llama-style held-out perplexity
(via eval_ppl.py), metrics.json and samples.txt for the exported HF model."""
import argparse
import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from transformers import GPT2LMHeadModel

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import EOT, WORK_DIR, load_tokenizer  # noqa: E402

PROMPTS = [
    "ACT I.\n\nSCENE I. A room in the palace.\n\n[Enter the King, Queen, and Lords.]\n\nKING.\n",
    "O gentle night, ",
    "Of Heav'n and Earth, and of the deep Abyss\n",
]


@torch.no_grad()
def window_nll(model, tokens, ctx, max_windows=None, bs=8):
    """fp32 mean NLL over all positions of non-overlapping ctx+1 windows
    (evenly spaced over the array if max_windows caps their number)."""
    n = (len(tokens) - 1) // ctx
    idx = np.arange(n) if not max_windows or n <= max_windows else \
        np.linspace(0, n - 1, max_windows).round().astype(int)
    tot, cnt = 0.0, 0
    for i in range(0, len(idx), bs):
        w = torch.from_numpy(np.stack([tokens[c * ctx:c * ctx + ctx + 1] for c in idx[i:i + bs]]).astype(np.int64))
        lg = model(w[:, :-1]).logits
        tot += torch.nn.functional.cross_entropy(lg.reshape(-1, lg.size(-1)), w[:, 1:].reshape(-1), reduction="sum").item()
        cnt += w[:, 1:].numel()
    return tot / cnt, cnt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(WORK_DIR))
    ap.add_argument("--data", default=str(WORK_DIR / "data"))
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    out = Path(a.out)
    hf, data = out / "hf", Path(a.data)
    model = GPT2LMHeadModel.from_pretrained(hf, torch_dtype=torch.float32).eval()
    ctx = model.config.n_positions

    tr_loss, tr_n = window_nll(model, np.fromfile(data / "train.bin", dtype=np.uint16), ctx, max_windows=400)
    va_loss, va_n = window_nll(model, np.fromfile(data / "val.bin", dtype=np.uint16), ctx)
    subprocess.run([sys.executable, str(HERE / "eval_ppl.py"), "--model", str(hf),
                    "--json", str(out / "test_ppl.json"), "--threads", str(a.threads)], check=True)
    test = json.loads((out / "test_ppl.json").read_text())
    summ = json.loads((out / "train_summary.json").read_text())
    rows = list(csv.DictReader(open(out / "log.csv")))
    meta = json.loads((data / "meta.json").read_text())
    n_params = sum(p.numel() for p in model.parameters())
    c = model.config
    metrics = {
        "shape": {"n_layer": c.n_layer, "n_embd": c.n_embd, "n_head": c.n_head, "n_ctx": ctx,
                  "vocab": c.vocab_size},
        "params": n_params, "non_embedding_params": summ["non_embedding_params"],
        "q8_0_bytes_est": n_params * 34 // 32,
        "data_tokens": {s: v["tokens"] for s, v in meta["splits"].items()},
        "steps": summ["steps"], "tokens_seen": summ["tokens_seen"], "epochs": summ["epochs"],
        "best_step": summ["best_step"], "train_wall_s": summ["train_wall_s"],
        "train_args": json.loads((out / "train_args.json").read_text()),
        "train_loss_last_window_running": float(rows[-1]["train_loss"]),
        "train_loss": tr_loss, "train_ppl": math.exp(tr_loss), "train_loss_tokens": tr_n,
        "val_loss": va_loss, "val_ppl": math.exp(va_loss), "val_loss_tokens": va_n,
        "test_loss": test["full_window_nll"], "test_ppl": test["full_window_ppl"],
        "test_llama_style": {k: test[k] for k in ("n_tokens", "n_ctx", "n_chunk", "scored", "nll", "ppl", "ppl_err")},
        "note": "train/val/test loss: fp32 mean NLL (nats/token) over all positions of non-overlapping "
                f"{ctx}-token windows (train: 400 evenly spaced windows). test_llama_style: "
                "llama-perplexity method on models/heldout.txt (second half of each chunk scored).",
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    print(json.dumps(metrics, indent=1))

    tok = load_tokenizer()
    lines = []
    for i, p in enumerate(PROMPTS):
        ids = torch.tensor([tok(p)["input_ids"]])
        for mode in ("greedy", "top-k 40, temperature 0.8, seed 1234"):
            kw = dict(do_sample=False) if mode == "greedy" else dict(do_sample=True, top_k=40, temperature=0.8)
            torch.manual_seed(1234)
            g = model.generate(ids, max_new_tokens=100, pad_token_id=EOT, **kw)
            lines += [f"=== prompt {i + 1}, {mode}", p + tok.decode(g[0, ids.size(1):]), ""]
    (out / "samples.txt").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
