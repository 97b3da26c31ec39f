#!/usr/bin/env python3
"""CTranslate2 int8 beside Quill, for `cargo xtask bench --ct2 PYTHON`.

Converts a Hugging Face GPT-2 checkpoint with `ct2-transformers-converter --quantization int8`
(once; the output directory is a cache), then measures, with the given threads:
  pp     prompt processing: generate_batch of an n-token prompt with max_length=1 (the prompt's
         forward pass and one sampled token: llama-bench's pp definition),
  score  score_batch of the same n tokens (computes every row of logits too),
  tg     greedy generation of g tokens after a 1-token prompt,
each the mean of `reps` runs after one warm-up, in tokens per second. Prints one JSON object.

Needs a Python with ctranslate2 (and, for the conversion, torch and transformers).
"""
import argparse
import json
import os
import random
import subprocess
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hf", required=True, help="Hugging Face checkpoint folder")
    ap.add_argument("--out", required=True, help="converted model folder (reused if present)")
    ap.add_argument("-p", type=int, default=512, help="prompt tokens")
    ap.add_argument("-n", type=int, default=128, help="generated tokens")
    ap.add_argument("-r", type=int, default=3, help="repetitions")
    ap.add_argument("-t", type=int, default=2, help="threads")
    a = ap.parse_args()

    import ctranslate2

    if not os.path.isfile(os.path.join(a.out, "model.bin")):
        conv = os.path.join(os.path.dirname(sys.executable), "ct2-transformers-converter")
        cmd = [conv if os.path.exists(conv) else "ct2-transformers-converter", "--model", a.hf,
               "--output_dir", a.out, "--quantization", "int8", "--force"]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    gen = ctranslate2.Generator(a.out, device="cpu", compute_type="int8", intra_threads=a.t, inter_threads=1)
    with open(os.path.join(a.out, "vocabulary.json")) as f:
        vocab = json.load(f)
    rng = random.Random(0)
    prompt = [vocab[rng.randrange(1000, 40000)] for _ in range(a.p)]

    def rate(fn, tokens):
        fn()  # warm-up
        rates = []
        for _ in range(a.r):
            t = time.perf_counter()
            got = fn()
            rates.append((tokens if tokens else got) / (time.perf_counter() - t))
        mean = sum(rates) / len(rates)
        sd = (sum((x - mean) ** 2 for x in rates) / max(1, len(rates) - 1)) ** 0.5
        return {"avg_ts": mean, "stddev_ts": sd}

    pp = rate(lambda: gen.generate_batch([prompt], max_length=1, sampling_topk=1,
                                          include_prompt_in_result=False), a.p)
    score = rate(lambda: gen.score_batch([prompt]), a.p)
    tg = rate(lambda: len(gen.generate_batch([prompt[:1]], max_length=a.n, min_length=a.n, sampling_topk=1,
                                             include_prompt_in_result=False)[0].sequences_ids[0]), None)
    print(json.dumps({"version": ctranslate2.__version__, "compute_type": "int8", "threads": a.t,
                      "n_prompt": a.p, "n_gen": a.n, "pp": pp, "score": score, "tg": tg}))


if __name__ == "__main__":
    main()
