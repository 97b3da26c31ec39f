#!/usr/bin/env python3
"""examples/ray_serve.py on a local Ray: aggregate throughput and replica memory for a few
(replicas x threads) layouts under the same load, one run.

    python crates/python/bench/ray_serve_replicas.py --model target/bench-models/124M/q8_0.gguf \\
        --layouts 1x2 2x1 --clients 16 --tokens 64

Each layout starts the Serve app with a fixed number of replicas (`R`x`T`: R replicas of T
threads, `--parallel` slots each), warms it up, then `--clients` threads each send `--requests`
plain completions of `--tokens` tokens (`ignore_eos`, seeded) back to back. Reported: generated
tokens per second over the whole load, and the replicas' memory from /proc (resident set split
into file-backed, i.e. the mapped weights, and anonymous; PSS summed over the replicas, which
counts a page shared by N processes as 1/N in each).
"""
import argparse
import json
import os
import socket
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import ray
from ray import serve

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "examples"))
import ray_serve  # noqa: E402

# The replicas cannot import the example by name: ship it by value.
ray.cloudpickle.register_pickle_by_value(ray_serve)

os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def replica_memory():
    """Sum over the replica processes of RSS (file, anon) and PSS, in MiB."""
    rss_file = rss_anon = pss = 0
    n = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"ServeReplica" not in cmd:
                continue
            status = Path(f"/proc/{pid}/status").read_text()
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        n += 1
        for line in status.splitlines():
            if line.startswith("RssFile:"):
                rss_file += int(line.split()[1])
            elif line.startswith("RssAnon:"):
                rss_anon += int(line.split()[1])
        for line in rollup.splitlines():
            if line.startswith("Pss:"):
                pss += int(line.split()[1])
    return {"replica_processes": n, "rss_file_mib": rss_file / 1024, "rss_anon_mib": rss_anon / 1024,
            "pss_mib": pss / 1024}


def post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


def load(url, clients, requests, tokens):
    """Generated tokens per second with `clients` threads of `requests` requests each."""
    done = [0] * clients

    def client(c):
        for r in range(requests):
            out = post(url, {"prompt": "The quick brown fox", "max_tokens": tokens, "ignore_eos": True,
                             "seed": c * 1000 + r, "temperature": 0.8})
            assert out["choices"][0]["finish_reason"] == "length", out
            done[c] += tokens  # ignore_eos: every request generates exactly `tokens`

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--layouts", nargs="+", default=["1x2", "2x1"])
    ap.add_argument("--parallel", type=int, default=16)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--requests", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=64)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="qsrb") as tmp:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, _temp_dir=tmp, configure_logging=False)
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        url = f"http://127.0.0.1:{port}/v1/completions"
        for layout in args.layouts:
            r, t = (int(x) for x in layout.split("x"))
            serve.run(ray_serve.app(args.model, threads=t, parallel=args.parallel, min_replicas=r, max_replicas=r),
                      route_prefix="/v1/completions", name="quill")
            load(url, r, 1, 8)  # warm-up: every replica maps and touches the weights
            tps = load(url, args.clients, args.requests, args.tokens)
            rows.append({"layout": f"{r} x {t} threads", "tokens_per_s": tps, **replica_memory()})
            serve.delete("quill")
        serve.shutdown()
        ray.shutdown()
    print("| replicas x threads | generated tokens/s | replicas' RSS file / anon (MiB) | PSS (MiB) |")
    print("| --- | ---: | ---: | ---: |")
    for row in rows:
        print(f"| {row['layout']} | {row['tokens_per_s']:.1f} | {row['rss_file_mib']:.0f} / {row['rss_anon_mib']:.0f} "
              f"| {row['pss_mib']:.0f} |")


if __name__ == "__main__":
    main()
