#!/usr/bin/env python3
"""Turn a GPT-2 GGUF (e.g. the shipped models/quill-shakespeare.gguf) back into a Hugging Face
checkpoint, so that training can continue from it (`train.py --init`).

Quantized tensors are dequantized with llama.cpp's own `gguf` package; matrices are transposed
back to Hugging Face's Conv1D layout ([in, out]; ggml stores [out, in] rows, see DESIGN.md).

  python3 models/train/gguf_to_hf.py models/quill-shakespeare.gguf target/default-model/init
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from gguf import GGUFReader
from gguf.quants import dequantize
from transformers import GPT2Config, GPT2LMHeadModel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import EOT  # noqa: E402

# GGUF name (blk.N. stripped) -> (Hugging Face name, transposed)
PER_LAYER = {
    "attn_norm.weight": ("ln_1.weight", False), "attn_norm.bias": ("ln_1.bias", False),
    "attn_qkv.weight": ("attn.c_attn.weight", True), "attn_qkv.bias": ("attn.c_attn.bias", False),
    "attn_output.weight": ("attn.c_proj.weight", True), "attn_output.bias": ("attn.c_proj.bias", False),
    "ffn_norm.weight": ("ln_2.weight", False), "ffn_norm.bias": ("ln_2.bias", False),
    "ffn_up.weight": ("mlp.c_fc.weight", True), "ffn_up.bias": ("mlp.c_fc.bias", False),
    "ffn_down.weight": ("mlp.c_proj.weight", True), "ffn_down.bias": ("mlp.c_proj.bias", False),
}
GLOBAL = {
    "token_embd.weight": "transformer.wte.weight", "position_embd.weight": "transformer.wpe.weight",
    "output_norm.weight": "transformer.ln_f.weight", "output_norm.bias": "transformer.ln_f.bias",
}


def field(r: GGUFReader, key: str):
    f = r.fields[key]
    return f.parts[f.data[0]][0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("gguf")
    ap.add_argument("out")
    a = ap.parse_args()
    r = GGUFReader(a.gguf)
    assert bytes(r.fields["general.architecture"].parts[-1]).decode() == "gpt2"
    cfg = GPT2Config(
        vocab_size=50257, n_positions=int(field(r, "gpt2.context_length")),
        n_embd=int(field(r, "gpt2.embedding_length")), n_layer=int(field(r, "gpt2.block_count")),
        n_head=int(field(r, "gpt2.attention.head_count")), n_inner=None, activation_function="gelu_new",
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        layer_norm_epsilon=float(field(r, "gpt2.attention.layer_norm_epsilon")),
        tie_word_embeddings=True, bos_token_id=EOT, eos_token_id=EOT,
    )
    state = {}
    for t in r.tensors:
        shape = [int(d) for d in reversed(t.shape)]  # numpy order: [ne1, ne0]
        w = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(shape)
        if t.name in GLOBAL:
            name, transpose = GLOBAL[t.name], False
        else:
            _, n, rest = t.name.split(".", 2)
            hf, transpose = PER_LAYER[rest]
            name = f"transformer.h.{n}.{hf}"
        state[name] = torch.from_numpy(np.ascontiguousarray(w.T if transpose else w))
    model = GPT2LMHeadModel(cfg)
    state["lm_head.weight"] = state["transformer.wte.weight"]
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all("attn.bias" in m or "masked_bias" in m for m in missing), (missing, unexpected)
    model.save_pretrained(a.out, safe_serialization=True)
    print(f"{a.gguf} -> {a.out}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters")


if __name__ == "__main__":
    main()
