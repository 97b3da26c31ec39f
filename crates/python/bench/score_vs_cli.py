#!/usr/bin/env python3
"""Scoring speed from Python against the CLI on the same text: `quill perplexity --stride
ctx-1` (windows of --ctx tokens scored on every position but the first, as `score` scores a
text) and `quill.Model.score` on the same windows, alternated, the median of each.

    python crates/python/bench/score_vs_cli.py --model target/bench-models/124M/q4_0.gguf \
        --text models/heldout.txt --ctx 512 --chunks 8 --threads 2 --reps 5

Both count the tokens evaluated (windows x ctx) over the time of the scoring loop (the CLI's
own `seconds`, the Python call's wall time: tokenizing and loading are outside both).
"""
import argparse
import math
import json
import os
import statistics
import subprocess
import time
from pathlib import Path

import quill

REPO = Path(__file__).resolve().parents[3]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(REPO / "target/bench-models/124M/q4_0.gguf"))
    ap.add_argument("--text", default=str(REPO / "models/heldout.txt"))
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--chunks", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--quill", default=str(REPO / "target/release/quill"))
    a = ap.parse_args()

    model = quill.Model(a.model, threads=a.threads, ctx=a.ctx)
    ids = model.tokenize(Path(a.text).read_text())
    stride = a.ctx - 1
    windows = [ids[i * stride:i * stride + a.ctx] for i in range(a.chunks)]
    n_eval = a.chunks * a.ctx
    model.score(windows[:1])  # warm the page cache and the allocator
    cli_tps, py_tps = [], []
    env = {k: v for k, v in os.environ.items() if k != "QUILL_MODEL"}
    for _ in range(a.reps):
        out = subprocess.run(
            [a.quill, "perplexity", "-m", a.model, "-f", a.text, "--ctx", str(a.ctx), "--stride", str(stride),
             "--chunks", str(a.chunks), "--threads", str(a.threads), "--json"],
            capture_output=True, text=True, check=True, env=env,
        )
        cli = json.loads(out.stdout)
        cli_tps.append(n_eval / cli["seconds"])
        t = time.perf_counter()
        res = model.score(windows)
        py_tps.append(n_eval / (time.perf_counter() - t))
        nll = -sum(lp for r in res for lp in r["logprobs"])
        assert abs(nll / cli["count"] - math.log(cli["ppl"])) < 1e-9, "not the same numbers"
    c, p = statistics.median(cli_tps), statistics.median(py_tps)
    print(json.dumps({
        "model": a.model, "ctx": a.ctx, "chunks": a.chunks, "threads": a.threads, "reps": a.reps,
        "cli_tps": [round(x, 1) for x in cli_tps], "python_tps": [round(x, 1) for x in py_tps],
        "cli_median": round(c, 1), "python_median": round(p, 1), "python_over_cli": round(p / c, 4),
        "load": os.getloadavg(),
    }, indent=1))


if __name__ == "__main__":
    main()
