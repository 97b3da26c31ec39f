"""`quill.quantize` writes the same bytes as `quill quantize`; `quill.inspect` returns what
`quill inspect --json` prints; the tokenizer alone reads GGUF files and Hugging Face folders."""
import subprocess

import quill
from conftest import REPO, TINY_HF


def test_quantize_is_byte_identical_to_the_cli(quill_bin, tmp_path):
    for ty in ("q8_0", "q4_k_m", "q4_0_8_8"):
        ours, theirs = tmp_path / f"py-{ty}.gguf", tmp_path / f"cli-{ty}.gguf"
        report = quill.quantize(TINY_HF, ours, ty)
        subprocess.run([str(quill_bin), "quantize", str(TINY_HF), str(theirs), "--type", ty], check=True, capture_output=True)
        assert ours.read_bytes() == theirs.read_bytes()
        assert report["n_tensors"] == len(quill.inspect(ours)["tensors"])
        assert report["bytes_out"] < report["bytes_in"]
    over = tmp_path / "override.gguf"
    quill.quantize(TINY_HF, over, "q8_0", tensor_types={"ffn_down": "q4_0"})
    types = {t["name"]: t["type"] for t in quill.inspect(over)["tensors"]}
    assert types["blk.0.ffn_down.weight"] == "q4_0" and types["blk.0.ffn_up.weight"] == "q8_0"


def test_inspect_equals_the_cli(cli, default_path):
    assert quill.inspect(default_path) == cli("inspect", "--json", str(default_path))
    info = quill.inspect(str(default_path))
    assert info["metadata"]["general.architecture"] == "gpt2"


def test_tokenizer_from_a_gguf_a_folder_or_a_model(model, default_path, tiny):
    text = "To be, or not to be: naïve café <|endoftext|> done"
    a = quill.Tokenizer(default_path)
    b = quill.Tokenizer(REPO / "models" / "tokenizer")  # vocab.json + merges.txt
    c = model.tokenizer
    assert a.encode(text) == b.encode(text) == c.encode(text) == model.tokenize(text)
    ids = a.encode(text)
    assert a.decode(ids) == text.replace("<|endoftext|>", "")
    assert a.decode(ids, special=True) == text
    assert len(a) == a.n_vocab == 50257 and a.eos_token_id == 50256
    assert a.token_bytes(ids[0]) == b"To" and a.token_bytes(50256) == b""
    t = quill.Tokenizer(TINY_HF)  # tokenizer.json
    assert t.encode("Shall I compare thee") == quill.Model(tiny).tokenize("Shall I compare thee")
