#!/usr/bin/env python3
"""Held-out perplexity of a saved HF GPT-2, computed the way llama.cpp's
`llama-perplexity` does it, so `quill perplexity` can be checked against it.

Method (llama.cpp tools/perplexity/perplexity.cpp, perplexity()):
  * tokenize the whole file once (no special-token parsing, no BOS for GPT-2);
  * cut it into n_chunk = len(tokens) // n_ctx non-overlapping chunks of n_ctx
    tokens (the tail that does not fill a chunk is dropped; >= 2 chunks needed);
  * with --add-bos, the first token of every chunk is replaced by BOS (50256);
  * run each chunk from an empty cache; score only its second half: the
    logits at positions first = n_ctx/2 .. n_ctx-2 against tokens first+1 ..
    n_ctx-1, i.e. n_ctx - 1 - n_ctx/2 predictions per chunk;
  * PPL = exp(mean NLL); its error = PPL * sqrt((E[nll^2] - E[nll]^2) / (count-1)),
    printed like llama.cpp's "Final estimate: PPL = x +/- y".
Also reported: the mean NLL over all positions of the same chunks ("full").

  python3 eval_ppl.py --model target/default-model/hf --text models/heldout.txt [--ctx 256]
"""
import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
from transformers import GPT2LMHeadModel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import EOT, WORK_DIR, load_tokenizer  # noqa: E402


def main():
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(WORK_DIR / "hf"))
    ap.add_argument("--text", default=str(here.parent / "heldout.txt"))
    ap.add_argument("--ctx", type=int, default=0, help="n_ctx (default: the model's n_positions)")
    ap.add_argument("--add-bos", action="store_true", help="replace each chunk's first token by BOS")
    ap.add_argument("--chunks", type=int, default=-1, help="max chunks (-1 = all)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default="", help="also write the result here")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    model = GPT2LMHeadModel.from_pretrained(a.model, torch_dtype=torch.float32).eval()
    n_ctx = a.ctx or model.config.n_positions
    text = Path(a.text).read_text(encoding="utf-8")
    assert "<|endoftext|>" not in text, "special-token text would tokenize differently"
    tokens = load_tokenizer()(text)["input_ids"]
    n_chunk = len(tokens) // n_ctx
    if n_chunk < 2:
        sys.exit(f"need at least {2 * n_ctx} tokens, have {len(tokens)}")
    if a.chunks >= 0:
        n_chunk = min(n_chunk, a.chunks)
    first = n_ctx // 2
    chunks = np.array(tokens[: n_chunk * n_ctx], dtype=np.int64).reshape(n_chunk, n_ctx)
    if a.add_bos:
        chunks[:, 0] = EOT

    nlls, full = [], []
    with torch.no_grad():
        for c0 in range(0, n_chunk, a.batch):
            x = torch.from_numpy(chunks[c0:c0 + a.batch])
            logp = torch.log_softmax(model(x).logits.double(), dim=-1)
            nll = -logp[:, :-1].gather(-1, x[:, 1:, None])[..., 0]  # [b, n_ctx-1]
            nlls.append(nll[:, first:].reshape(-1))   # predictions of tokens first+1 .. n_ctx-1
            full.append(nll.reshape(-1))
    nll = torch.cat(nlls).numpy()
    count = len(nll)
    assert count == n_chunk * (n_ctx - 1 - first)
    mean, mean2 = nll.mean(), (nll ** 2).mean()
    ppl = math.exp(mean)
    err = ppl * math.sqrt(max(mean2 - mean * mean, 0.0) / (count - 1))
    full_mean = float(torch.cat(full).mean())
    res = {"text": a.text, "model": a.model, "n_tokens": len(tokens), "n_ctx": n_ctx,
           "n_chunk": n_chunk, "scored": count, "add_bos": a.add_bos,
           "nll": float(mean), "ppl": ppl, "ppl_err": err,
           "full_window_nll": full_mean, "full_window_ppl": math.exp(full_mean)}
    print(f"tokens {len(tokens)}, n_ctx {n_ctx}, {n_chunk} chunks, {count} scored")
    print(f"Final estimate: PPL = {ppl:.4f} +/- {err:.5f}   (mean NLL {mean:.4f})")
    print(f"all positions of the same chunks: NLL {full_mean:.4f}, PPL {math.exp(full_mean):.4f}")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
