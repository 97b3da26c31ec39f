#!/usr/bin/env python3
"""Train Quill's default GPT-2 from scratch on the prepared corpus (CPU).

Standard GPT-2 architecture (transformers.GPT2LMHeadModel: learned positions,
pre-LN, gelu_new, tied input/output embeddings, layer_norm_epsilon 1e-5).
AdamW, linear warmup + cosine decay, gradient clipping, validation every
--eval-every steps, best-by-validation checkpoint kept, log in CSV.

Resumable: a full training state is written to <out>/ckpt/last.pt every eval;
rerunning the same command continues from it (data order is a pure function
of seed and step, so a resumed run sees the same batches).

  python3 train.py --bench 20 ...   # timed throughput run only, writes nothing
"""
import argparse
import csv
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from transformers import GPT2Config, GPT2LMHeadModel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import TOKENIZER_DIR, WORK_DIR, load_tokenizer  # noqa: E402


def get_args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(WORK_DIR / "data"))
    ap.add_argument("--out", default=str(WORK_DIR))
    ap.add_argument("--init", default="", help="start from this Hugging Face checkpoint's weights "
                    "(e.g. gguf_to_hf.py's output) instead of a random initialisation")
    ap.add_argument("--n-layer", type=int, default=12)
    ap.add_argument("--n-embd", type=int, default=256)
    ap.add_argument("--n-head", type=int, default=4)
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8, help="sequences per step")
    ap.add_argument("--max-tokens", type=float, default=5.5e6, help="training budget in tokens")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--min-lr-frac", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=200, help="warmup steps")
    ap.add_argument("--wd", type=float, default=0.1)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast for matmuls (weights stay fp32)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the forward+loss (inductor)")
    ap.add_argument("--bench", type=int, default=0, help="time this many steps and exit")
    return ap.parse_args()


def make_model(a) -> GPT2LMHeadModel:
    cfg = GPT2Config(
        vocab_size=50257, n_positions=a.ctx, n_embd=a.n_embd, n_layer=a.n_layer,
        n_head=a.n_head, n_inner=None, activation_function="gelu_new",
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,  # < 2 epochs: no dropout needed
        layer_norm_epsilon=1e-5, initializer_range=0.02, tie_word_embeddings=True,
        bos_token_id=50256, eos_token_id=50256,
    )
    model = GPT2LMHeadModel(cfg)
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()
    return model


class Batches:
    """Epoch-wise shuffled, non-overlapping windows of ctx+1 tokens.

    Epoch e uses a random start offset and a random permutation, both drawn
    from seed+e, so batch(step) is a pure function of (seed, step)."""

    def __init__(self, tokens, ctx, batch, seed):
        self.t, self.ctx, self.b, self.seed = tokens, ctx, batch, seed
        self.per_epoch = (len(tokens) - ctx - 1) // ctx // batch  # steps per epoch
        self._epoch, self._order = None, None

    def get(self, step):
        e, i = divmod(step, self.per_epoch)
        if e != self._epoch:
            rng = np.random.default_rng(self.seed + e)
            off = int(rng.integers(self.ctx))
            starts = off + self.ctx * np.arange((len(self.t) - off - 1) // self.ctx)
            self._order, self._epoch = rng.permutation(starts), e
        idx = self._order[i * self.b:(i + 1) * self.b]
        w = np.stack([self.t[s:s + self.ctx + 1] for s in idx]).astype(np.int64)
        w = torch.from_numpy(w)
        return w[:, :-1], w[:, 1:]


@torch.no_grad()
def evaluate(model, tokens, ctx, bf16, bs=16):
    """Mean next-token loss over all positions of non-overlapping ctx windows."""
    model.eval()
    n = (len(tokens) - 1) // ctx
    tot, cnt = 0.0, 0
    for c0 in range(0, n, bs):
        w = np.stack([tokens[c * ctx:c * ctx + ctx + 1] for c in range(c0, min(n, c0 + bs))])
        w = torch.from_numpy(w.astype(np.int64))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(w[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(
            logits.float().reshape(-1, logits.size(-1)), w[:, 1:].reshape(-1), reduction="sum")
        tot += loss.item()
        cnt += w[:, 1:].numel()
    model.train()
    return tot / cnt


def lr_at(step, total, a):
    if step < a.warmup:
        return a.lr * (step + 1) / a.warmup
    p = min(1.0, (step - a.warmup) / max(1, total - a.warmup))
    lo = a.lr * a.min_lr_frac
    return lo + 0.5 * (a.lr - lo) * (1 + math.cos(math.pi * p))


def main():
    a = get_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    out = Path(a.out)
    train = np.fromfile(Path(a.data) / "train.bin", dtype=np.uint16)
    val = np.fromfile(Path(a.data) / "val.bin", dtype=np.uint16)

    model = make_model(a)
    if a.init:
        init = GPT2LMHeadModel.from_pretrained(a.init, torch_dtype=torch.float32)
        assert init.config.n_layer == a.n_layer and init.config.n_embd == a.n_embd, "--init has another shape"
        model.load_state_dict(init.state_dict())
        print(f"initialised from {a.init}", flush=True)
    n_params = sum(p.numel() for p in model.parameters())  # tied wte counted once
    n_nonemb = n_params - model.transformer.wte.weight.numel() - model.transformer.wpe.weight.numel()
    tok_per_step = a.batch * a.ctx
    total_steps = int(a.max_tokens // tok_per_step)
    print(f"params {n_params/1e6:.2f}M (non-embedding {n_nonemb/1e6:.2f}M), "
          f"Q8_0 ~{n_params*34/32/2**20:.1f} MiB; train {len(train)} tok, val {len(val)} tok; "
          f"{total_steps} steps x {tok_per_step} tok = {total_steps*tok_per_step/len(train):.2f} epochs",
          flush=True)

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.wd},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8)
    batches = Batches(train, a.ctx, a.batch, a.seed)

    def fwd_loss(x, y):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
            logits = model(x).logits
        return torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1))

    train_loss = torch.compile(fwd_loss) if a.compile else fwd_loss

    if a.bench:
        model.train()
        times, cpu = [], []
        for step in range(a.bench):
            t0, c0 = time.perf_counter(), time.process_time()
            x, y = batches.get(step)
            loss = train_loss(x, y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip)
            opt.step(); opt.zero_grad(set_to_none=True)
            times.append(time.perf_counter() - t0); cpu.append(time.process_time() - c0)
        t = np.min(times[3:])
        # min over steps, and CPU seconds / threads: the box is shared, these approximate a dedicated run
        tc = np.min(cpu[3:]) / a.threads
        print(f"BENCH L{a.n_layer} d{a.n_embd} h{a.n_head} ctx{a.ctx} b{a.batch} bf16={a.bf16} compile={a.compile} "
              f"params {n_params/1e6:.1f}M: "
              f"wall {t:.3f}s/step {tok_per_step/t:.0f} tok/s; cpu/threads {tc:.3f}s/step "
              f"{tok_per_step/tc:.0f} tok/s  loss {loss.item():.3f}", flush=True)
        return

    ck = out / "ckpt"
    ck.mkdir(parents=True, exist_ok=True)
    log_path = out / "log.csv"
    start, best, best_step, elapsed0 = 0, float("inf"), -1, 0.0
    if (ck / "last.pt").exists():
        st = torch.load(ck / "last.pt", weights_only=False)
        model.load_state_dict(st["model"]); opt.load_state_dict(st["opt"])
        start, best, best_step, elapsed0 = st["step"], st["best"], st["best_step"], st["elapsed"]
        torch.set_rng_state(st["torch_rng"])
        print(f"resumed at step {start} (best val {best:.4f} @ {best_step})", flush=True)
    else:
        with open(log_path, "w", newline="") as f:
            csv.writer(f).writerow(["step", "tokens", "lr", "train_loss", "val_loss", "elapsed_s", "tok_per_s"])
    (out / "train_args.json").write_text(json.dumps(vars(a), indent=1))

    model.train()
    t_start, run_loss, run_n, t_win, tok_win = time.time(), 0.0, 0, time.time(), 0
    for step in range(start, total_steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, total_steps, a)
        x, y = batches.get(step)
        loss = train_loss(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        run_loss += loss.item(); run_n += 1; tok_win += tok_per_step
        last = step + 1 == total_steps
        if (step + 1) % a.eval_every == 0 or last:
            vl = evaluate(model, val, a.ctx, a.bf16)
            now = time.time()
            elapsed = elapsed0 + now - t_start
            tps = tok_win / (now - t_win)
            row = [step + 1, (step + 1) * tok_per_step, f"{opt.param_groups[0]['lr']:.3e}",
                   f"{run_loss/run_n:.4f}", f"{vl:.4f}", f"{elapsed:.0f}", f"{tps:.0f}"]
            with open(log_path, "a", newline="") as f:
                csv.writer(f).writerow(row)
            print(f"step {step+1}/{total_steps} tok {(step+1)*tok_per_step} lr {row[2]} "
                  f"train {run_loss/run_n:.4f} val {vl:.4f} ({math.exp(vl):.1f}) "
                  f"{elapsed:.0f}s {tps:.0f} tok/s", flush=True)
            run_loss, run_n = 0.0, 0
            if vl < best:
                best, best_step = vl, step + 1
                if (ck / "best").exists():
                    shutil.rmtree(ck / "best")
                model.save_pretrained(ck / "best")
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step + 1,
                        "best": best, "best_step": best_step, "elapsed": elapsed,
                        "torch_rng": torch.get_rng_state()}, ck / "last.pt.tmp")
            os.replace(ck / "last.pt.tmp", ck / "last.pt")
            t_win, tok_win = time.time(), 0

    # Final export: the best-by-validation weights, safetensors + config + tokenizer.
    hf = out / "hf"
    if hf.exists():
        shutil.rmtree(hf)
    best_model = GPT2LMHeadModel.from_pretrained(ck / "best")
    best_model.save_pretrained(hf, safe_serialization=True)
    tok = load_tokenizer()
    tok.model_max_length = a.ctx
    tok.save_pretrained(hf)  # tokenizer.json (+ tokenizer_config.json)
    for fn in ("vocab.json", "merges.txt"):
        shutil.copy(Path(TOKENIZER_DIR) / fn, hf / fn)
    summary = {"steps": total_steps, "tokens_seen": total_steps * tok_per_step,
               "epochs": total_steps * tok_per_step / len(train), "best_val_loss": best,
               "best_step": best_step, "train_wall_s": elapsed0 + time.time() - t_start,
               "params": n_params, "non_embedding_params": n_nonemb}
    (out / "train_summary.json").write_text(json.dumps(summary, indent=1))
    print("done", json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
