#!/usr/bin/env python3
"""Batch scoring on Ray with 1 and then 2 workers (1 thread each) on one node: throughput and
memory, with examples/ray_score.py's pipeline.

    python crates/python/bench/ray_workers.py --model target/bench-models/1558M/q4_0.gguf --docs 24

Throughput counts the tokens scored between the start of the first batch and the end of the
last (the workers' own clocks), so Ray's start-up and the actors' launch are left out. Memory
is sampled every 0.2 s from /proc: each worker's resident set split into file-backed (the
mapped weights) and anonymous (KV cache, buffers, Python), and its proportional share (PSS,
which divides a page shared by N processes by N), so that the workers' PSS summed is the memory
they really use together; Ray's own processes are counted apart.
"""
import argparse
import importlib.util
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List

import ray

REPO = Path(__file__).resolve().parents[3]
spec = importlib.util.spec_from_file_location("ray_score", REPO / "examples" / "ray_score.py")
ray_score = importlib.util.module_from_spec(spec)
sys.modules["ray_score"] = ray_score
spec.loader.exec_module(ray_score)
ray.cloudpickle.register_pickle_by_value(ray_score)


class TimedScorer(ray_score.Scorer):
    """The example's scorer, with each batch's clock times and process id."""

    def __call__(self, batch):
        t0 = time.time()
        out = super().__call__(batch)
        n = len(out["text"])
        out.update(t0=[t0] * n, t1=[time.time()] * n, pid=[os.getpid()] * n)
        return out


def mem(pid: int) -> Dict[str, int]:
    """kB figures of one process (0 when it is gone)."""
    out = {}
    try:
        for line in open(f"/proc/{pid}/status"):
            k, _, v = line.partition(":")
            if k in ("RssAnon", "RssFile", "VmRSS"):
                out[k] = int(v.split()[0])
        for line in open(f"/proc/{pid}/smaps_rollup"):
            k, _, v = line.partition(":")
            if k in ("Pss", "Pss_Anon", "Pss_File"):
                out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


def ray_processes() -> Dict[int, str]:
    procs = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            cmd = open(f"/proc/{d}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "ray::" in cmd or "raylet" in cmd or "gcs_server" in cmd or "/ray/" in cmd:
            procs[int(d)] = cmd.strip()
    return procs


class Sampler(threading.Thread):
    """Peak memory of the scoring workers (and of Ray's other processes) while a job runs."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.peak_workers: Dict[str, int] = {}
        self.per_worker: Dict[int, Dict[str, int]] = {}
        self.peak_ray_other_pss = 0

    def run(self):
        while not self.stop.is_set():
            procs = ray_processes()
            workers = {p: mem(p) for p, c in procs.items() if "Scorer" in c}
            others = sum(mem(p).get("Pss", 0) for p, c in procs.items() if "Scorer" not in c)
            self.peak_ray_other_pss = max(self.peak_ray_other_pss, others)
            total = {k: sum(m.get(k, 0) for m in workers.values()) for k in ("Pss", "Pss_File", "Pss_Anon", "VmRSS")}
            if total["Pss"] > self.peak_workers.get("Pss", 0):
                self.peak_workers = dict(total, n=len(workers))
            for p, m in workers.items():
                if m.get("VmRSS", 0) > self.per_worker.get(p, {}).get("VmRSS", 0):
                    self.per_worker[p] = m
            time.sleep(0.2)


def docs(text: str, n: int, chars: int) -> List[str]:
    """`n` documents of about `chars` characters, whole lines."""
    out, cur = [], ""
    for line in text.splitlines(keepends=True):
        cur += line
        if len(cur) >= chars:
            out.append(cur)
            cur = ""
            if len(out) == n:
                break
    return out


def run(model: str, texts: List[str], workers: int, batch: int) -> Dict:
    ds = ray.data.from_items([{"id": i, "text": t} for i, t in enumerate(texts)])
    sampler = Sampler()
    sampler.start()
    ds = ds.map_batches(TimedScorer, fn_constructor_kwargs=dict(model=model, threads=1, ctx=None), batch_size=batch,
                        batch_format="numpy", concurrency=workers, num_cpus=1)
    rows = ds.take_all()
    sampler.stop.set()
    sampler.join()
    t0, t1 = min(r["t0"] for r in rows), max(r["t1"] for r in rows)
    tokens = sum(int(r["n_tokens"]) for r in rows)
    mib = lambda kb: round(kb / 1024, 1)  # noqa: E731
    return {
        "workers": workers,
        "pids": sorted({int(r["pid"]) for r in rows}),
        "tokens": tokens,
        "seconds": round(t1 - t0, 2),
        "tokens_per_s": round(tokens / (t1 - t0), 2),
        "per_worker_peak_mib": [{k: mib(v) for k, v in m.items()} for m in sampler.per_worker.values()],
        "workers_total_at_peak_mib": {k: (mib(v) if k != "n" else v) for k, v in sampler.peak_workers.items()},
        "ray_other_pss_mib": mib(sampler.peak_ray_other_pss),
        "log_likelihood": {int(r["id"]): float(r["log_likelihood"]) for r in rows},
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(REPO / "target/bench-models/1558M/q4_0.gguf"))
    ap.add_argument("--text", default=str(REPO / "models/heldout.txt"))
    ap.add_argument("--docs", type=int, default=24)
    ap.add_argument("--chars", type=int, default=500)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--out")
    a = ap.parse_args()
    texts = docs(Path(a.text).read_text(), a.docs, a.chars)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False, object_store_memory=256 * 1024 * 1024)
    try:
        result = {"model": a.model, "file_mib": round(os.path.getsize(a.model) / 2**20, 1), "load_before": os.getloadavg()}
        one = run(a.model, texts, 1, a.batch)
        two = run(a.model, texts, 2, a.batch)
        assert one.pop("log_likelihood") == two.pop("log_likelihood"), "2 workers changed the scores"
        result.update(one_worker=one, two_workers=two, speedup=round(two["tokens_per_s"] / one["tokens_per_s"], 3),
                      load_after=os.getloadavg())
    finally:
        ray.shutdown()
    text = json.dumps(result, indent=1)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
