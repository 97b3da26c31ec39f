#!/usr/bin/env python3
"""Score (perplexity) or continue every line of a text corpus with Quill on Ray Data.

Each Ray worker loads one `quill.Model`; workers on a node map the same GGUF file, so the node
holds one copy of the weights in its page cache whatever the number of workers. Results go to
Parquet or JSON lines, one row per input line.

    pip install ./crates/python "ray[data]"
    # a laptop: a local Ray with 2 workers of 1 thread each
    python examples/ray_score.py models/heldout.txt --workers 2 --output /tmp/scores
    # continue each line by 20 tokens instead
    python examples/ray_score.py models/heldout.txt --generate 20 --output /tmp/continued --format json
    # a cluster: the same command with --address (the model and the input must be readable at
    # the same path on every node, e.g. a shared file system or s3:// for the input)
    python examples/ray_score.py s3://bucket/corpus/ --model /shared/gpt2-xl-q4_0.gguf \
        --address auto --workers 32 --output s3://bucket/scores
"""
import argparse
import math
import time
from typing import Any, Dict, List, Optional

import numpy as np
import ray

import quill


class Scorer:
    """One model per worker: adds ``n_tokens``, ``log_likelihood`` and ``perplexity``
    columns (``add_bos``: every token is scored, the first after ``<|endoftext|>``)."""

    def __init__(self, model: Optional[str], threads: int, ctx: Optional[int]):
        self.model = quill.Model(model, threads=threads, ctx=ctx)

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, Any]:
        texts = [str(t) for t in batch["text"]]
        results = self.model.score(texts, add_bos=True)
        out = dict(batch)
        out["n_tokens"] = np.array([r["n_scored"] for r in results], dtype=np.int64)
        out["log_likelihood"] = np.array([r["log_likelihood"] for r in results])
        out["perplexity"] = np.array([r["perplexity"] for r in results])
        return out


class Continuer:
    """One model per worker: adds a ``continuation`` column of ``max_tokens`` sampled tokens
    (seeded by ``seed``, so a rerun gives the same text)."""

    def __init__(self, model: Optional[str], threads: int, ctx: Optional[int], max_tokens: int, seed: int):
        self.model = quill.Model(model, threads=threads, ctx=ctx)
        self.max_tokens, self.seed = max_tokens, seed

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, Any]:
        texts = [str(t) for t in batch["text"]]
        out = dict(batch)
        # The batch's lines run together on the engine (one weight read per step for all of
        # them); each line is seeded alike, so its text does not depend on its batch.
        todo = [i for i, t in enumerate(texts) if t]
        got = self.model.generate([texts[i] for i in todo], max_tokens=self.max_tokens, seed=self.seed) if todo else []
        cont = [""] * len(texts)
        for i, text in zip(todo, got):
            cont[i] = text
        out["continuation"] = np.array(cont, dtype=object)
        return out


def pipeline(
    ds: "ray.data.Dataset",
    model: Optional[str] = None,
    workers: int = 2,
    threads: int = 1,
    batch_size: int = 64,
    ctx: Optional[int] = None,
    generate: int = 0,
    seed: int = 1,
) -> "ray.data.Dataset":
    """``ds`` (a ``text`` column, any others passed through) mapped by ``workers`` actors of
    ``threads`` CPUs each, one model per actor."""
    if generate:
        fn, kwargs = Continuer, dict(model=model, threads=threads, ctx=ctx, max_tokens=generate, seed=seed)
    else:
        fn, kwargs = Scorer, dict(model=model, threads=threads, ctx=ctx)
    return ds.map_batches(
        fn,
        fn_constructor_kwargs=kwargs,
        batch_size=batch_size,
        batch_format="numpy",
        concurrency=workers,
        num_cpus=threads,
    )


def summary(rows: List[Dict[str, Any]], seconds: float) -> str:
    n = sum(int(r["n_tokens"]) for r in rows)
    ll = sum(float(r["log_likelihood"]) for r in rows)
    ppl = math.exp(-ll / n) if n else float("nan")
    return f"{len(rows)} lines, {n} tokens scored in {seconds:.1f} s ({n / seconds:.0f} tokens/s), corpus perplexity {ppl:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("input", help="text file(s) or folder, one document per line (ray.data.read_text)")
    ap.add_argument("--model", help="GGUF file (default: $QUILL_MODEL, else the shipped default model)")
    ap.add_argument("--workers", type=int, default=2, help="model replicas (Ray actors)")
    ap.add_argument("--threads", type=int, default=1, help="threads (CPUs) per worker")
    ap.add_argument("--batch-size", type=int, default=64, help="lines per call")
    ap.add_argument("--ctx", type=int, help="context (default: the model's)")
    ap.add_argument("--generate", type=int, default=0, metavar="N", help="continue each line by N tokens instead of scoring")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--output", help="output folder (default: print a summary only)")
    ap.add_argument("--format", choices=["parquet", "json"], default="parquet")
    ap.add_argument("--address", help="Ray cluster address (default: start a local Ray)")
    a = ap.parse_args()

    if a.address:
        ray.init(address=a.address)
    else:
        # One CPU more than the workers hold, for the tasks that read and write the data.
        ray.init(num_cpus=a.workers * a.threads + 1, include_dashboard=False)
    model = a.model or (str(quill.default_model_path()) if quill.default_model_path() else None)
    start = time.perf_counter()
    ds = pipeline(ray.data.read_text(a.input), model, a.workers, a.threads, a.batch_size, a.ctx, a.generate, a.seed)
    if a.output:
        (ds.write_parquet if a.format == "parquet" else ds.write_json)(a.output)
        print(f"wrote {a.output} in {time.perf_counter() - start:.1f} s")
    elif a.generate:
        for row in ds.take(5):
            print(repr(row["text"]), "->", repr(row["continuation"]))
    else:
        rows = ds.select_columns(["n_tokens", "log_likelihood"]).take_all()
        print(summary(rows, time.perf_counter() - start))
    ray.shutdown()


if __name__ == "__main__":
    main()
