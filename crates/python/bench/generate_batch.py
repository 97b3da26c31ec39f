#!/usr/bin/env python3
"""Batched generation from Python, side by side in one run: `transformers` (PyTorch, float32)
against `quill.transformers` on the same checkpoint (an F32 GGUF converted from it, and a Q8_0
one), then `quill.Model.generate` of many prompts at once against the same prompts one after
another, and one Python stream against `quill generate`.

    python crates/python/bench/generate_batch.py --hf target/bench-models/124M/hf \\
        --f32 target/bench-models/124M/f32.gguf --q8 target/bench-models/124M/q8_0.gguf

Greedy, `--new` new tokens (64), the same `--prompt-tokens`-token prompt (8) in every row,
`--threads` threads (2) for every engine; new tokens per second (rows x new tokens / wall
time of the `generate` call), best of `--repeat` runs (2). `transformers` is optional: its
rows are skipped when it is not installed. Prints a Markdown table, and JSON with `--json`.
"""
import argparse
import importlib.util
import json
import os
import subprocess
import time
from pathlib import Path

import quill
from quill.transformers import GPT2LMHeadModel

REPO = Path(__file__).resolve().parents[3]


def best(f, repeat):
    """Best wall time of `repeat` calls of `f` (after one warm-up call)."""
    f()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return min(times)


def rows_of(prompt, batch):
    return [list(prompt) for _ in range(batch)]


def hf_rows(args, prompt, results):
    """transformers' own generate, float32, at each batch size."""
    import torch
    import transformers

    torch.set_num_threads(args.threads)
    model = transformers.GPT2LMHeadModel.from_pretrained(args.hf, dtype=torch.float32).eval()
    for b in args.batch:
        ids = torch.tensor(rows_of(prompt, b))
        mask = torch.ones_like(ids)

        def run():
            with torch.no_grad():
                model.generate(ids, attention_mask=mask, max_new_tokens=args.new, min_new_tokens=args.new,
                               do_sample=False, pad_token_id=model.config.eos_token_id)

        results.append({"engine": f"transformers {transformers.__version__} (torch {torch.__version__}, F32)",
                        "batch": b, "tps": b * args.new / best(run, args.repeat)})


def quill_rows(args, name, path, prompt, results):
    """quill.transformers' generate (the same call) at each batch size."""
    model = GPT2LMHeadModel.from_pretrained(path, threads=args.threads)
    # The random-weight checkpoint may end a row early: no end token, every row runs `new`.
    for b in args.batch:
        rows = rows_of(prompt, b)

        def run():
            out = model.generate(rows, max_new_tokens=args.new, eos_token_id=None)
            assert all(len(r) == len(prompt) + args.new for r in out)

        results.append({"engine": f"quill.transformers, {name} GGUF", "batch": b,
                        "tps": b * args.new / best(run, args.repeat)})


def model_rows(args, path, prompt, results):
    """Model.generate of `b` prompts at once against the same prompts one after another, and
    one stream against `quill generate`."""
    model = quill.Model(path, threads=args.threads)
    b = max(args.batch)
    prompts = [list(prompt) for _ in range(b)]
    kw = dict(max_tokens=args.new, temperature=0.0, ignore_eos=True)
    together = best(lambda: model.generate(prompts, **kw), args.repeat)
    apart = best(lambda: [model.generate(p, **kw) for p in prompts], args.repeat)
    results.append({"engine": f"quill.Model.generate, {b} prompts at once", "batch": b, "tps": b * args.new / together})
    results.append({"engine": f"quill.Model.generate, {b} prompts one after another", "batch": b,
                    "tps": b * args.new / apart})
    one = best(lambda: model.generate(prompts[0], **kw), args.repeat)
    results.append({"engine": "quill.Model.generate, one stream", "batch": 1, "tps": args.new / one})
    cli = REPO / "target" / "release" / "quill"
    if cli.exists():
        text = model.detokenize(prompt)
        env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
        cmd = [str(cli), "generate", "--json", "-m", str(path), "-p", text, "-n", str(args.new), "--temp", "0",
               "--ignore-eos", "--threads", str(args.threads)]
        runs = [json.loads(subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout)
                for _ in range(args.repeat + 1)]
        secs = min(r["prompt_ms"] + r["gen_ms"] for r in runs[1:]) / 1e3
        results.append({"engine": "quill generate (CLI), one stream", "batch": 1, "tps": args.new / secs})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hf", type=Path, required=True, help="Hugging Face checkpoint folder")
    ap.add_argument("--f32", type=Path, required=True, help="the checkpoint as an F32 GGUF")
    ap.add_argument("--q8", type=Path, help="the checkpoint as a Q8_0 GGUF")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--prompt-tokens", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    prompt = quill.Model(args.f32).tokenize("The quick brown fox jumps over the lazy dog and then")[: args.prompt_tokens]
    results = []
    if importlib.util.find_spec("transformers") and importlib.util.find_spec("torch"):
        hf_rows(args, prompt, results)
    quill_rows(args, "F32", args.f32, prompt, results)
    if args.q8:
        quill_rows(args, "Q8_0", args.q8, prompt, results)
    model_rows(args, args.q8 or args.f32, prompt, results)
    if args.json:
        print(json.dumps(results, indent=1))
    print(f"| engine | batch | new tokens/s |\n| --- | ---: | ---: |")
    for r in results:
        print(f"| {r['engine']} | {r['batch']} | {r['tps']:.1f} |")


if __name__ == "__main__":
    main()
