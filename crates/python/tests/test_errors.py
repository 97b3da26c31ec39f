"""Bad input raises FileNotFoundError or ValueError (TypeError for wrong types) with Quill's
message naming the file or the argument, never a crash."""
import os

import pytest

import quill
from conftest import TINY_HF


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.gguf: No such file"):
        quill.Model(tmp_path / "nope.gguf")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a model at all, just bytes " * 10)
    with pytest.raises(ValueError, match=r"junk.gguf: not a GGUF file"):
        quill.Model(junk)
    truncated = tmp_path / "trunc.gguf"
    truncated.write_bytes(b"GGUF\x03\x00\x00\x00")
    with pytest.raises(ValueError, match="trunc.gguf"):
        quill.Model(truncated)
    with pytest.raises(FileNotFoundError, match="nope.gguf"):
        quill.inspect(tmp_path / "nope.gguf")
    with pytest.raises(FileNotFoundError, match="nope"):
        quill.Tokenizer(tmp_path / "nope")
    with pytest.raises(ValueError, match="not a Hugging Face checkpoint"):
        quill.Model(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="config.json"):
        quill.Model(tmp_path)


def test_a_gguf_that_is_not_gpt2(tmp_path, tiny):
    # Change the architecture string in place ("gpt2" -> "gptx"): a valid GGUF, not a GPT-2.
    data = bytearray(tiny.read_bytes())
    at = data.find(b"gpt2")
    data[at:at + 4] = b"gptx"
    other = tmp_path / "other.gguf"
    other.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"other.gguf: .*gptx"):
        quill.Model(other)


def test_bad_model_arguments(default_path):
    with pytest.raises(ValueError, match="threads must be at least 1"):
        quill.Model(default_path, threads=0)
    with pytest.raises(ValueError, match="ctx 4096 is larger than the model's context of 256"):
        quill.Model(default_path, ctx=4096)
    with pytest.raises(ValueError, match="ctx must be at least 1"):
        quill.Model(default_path, ctx=0)
    with pytest.raises(TypeError):
        quill.Model(default_path, threads="two")


def test_bad_generate_arguments(model):
    cases = [
        (dict(top_p=1.5), "top_p must be in \\(0, 1\\], got 1.5"),
        (dict(temperature=-1), "temperature must be a finite number >= 0"),
        (dict(top_k=-3), "top_k must be >= 0"),
        (dict(min_p=2), "min_p must be in \\[0, 1\\]"),
        (dict(repeat_penalty=0), "repeat_penalty must be a finite number > 0"),
        (dict(max_tokens=-2), "max_tokens must be at least 0 or None, got -2"),
        (dict(stop=""), "stop strings must not be empty"),
        (dict(stop=["a", ""]), "stop strings must not be empty"),
        (dict(kv_type="q8"), "kv_type must be 'f16', 'f32' or 'q8_0', got 'q8'"),
    ]
    for kwargs, msg in cases:
        with pytest.raises(ValueError, match=msg):
            model.generate("To be", **kwargs)
        if "stop" not in kwargs:
            with pytest.raises(ValueError, match=msg):
                model.generate_ids("To be", **kwargs)
    with pytest.raises(ValueError, match="the prompt is empty: it has no tokens"):
        model.generate("")
    with pytest.raises(ValueError, match="the prompt is empty"):
        model.generate("", stream=True)
    long = "word" + " word" * 399
    with pytest.raises(ValueError, match="the prompt has 400 tokens, more than the context of 256"):
        model.generate(long)
    with pytest.raises(ValueError, match=r"prompt: token id 50257 is outside the vocabulary \(50257 tokens\)"):
        model.generate([1, 50257])
    with pytest.raises(ValueError, match="prompt: token id -1 is outside"):
        model.generate_ids([-1])
    with pytest.raises(ValueError, match="end_ids: token id 99999 is outside"):
        model.generate_ids("To be", end_ids=[99999])
    with pytest.raises(TypeError):
        model.generate(3.5)


def test_bad_logits_score_and_token_arguments(model):
    with pytest.raises(ValueError, match="the input is empty"):
        model.logits("")
    with pytest.raises(ValueError, match="the input has 400 tokens, more than the context of 256"):
        model.logits("word" + " word" * 399)
    with pytest.raises(ValueError, match=r"logits: token id 60000 is outside"):
        model.logits([60000])
    with pytest.raises(ValueError, match=r"texts\[1\]: token id -5 is outside"):
        model.score(["fine", [1, -5]])
    with pytest.raises(TypeError):
        model.score("a string, not a list of texts")
    with pytest.raises(ValueError, match="token id 50300 is outside the vocabulary"):
        model.detokenize([50300])
    with pytest.raises(ValueError, match="token id 50300 is outside"):
        model.tokenizer.token_bytes(50300)


def test_bad_quantize_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing-folder"):
        quill.quantize(tmp_path / "missing-folder", tmp_path / "out.gguf")
    with pytest.raises(ValueError, match="type: .*q3_z"):
        quill.quantize(TINY_HF, tmp_path / "out.gguf", "q3_z")
    with pytest.raises(ValueError, match="tensor_types"):
        quill.quantize(TINY_HF, tmp_path / "out.gguf", tensor_types={"(": "q8_0"})
    with pytest.raises(ValueError, match="threads must be at least 1"):
        quill.quantize(TINY_HF, tmp_path / "out.gguf", threads=0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a Hugging Face checkpoint directory"):
        quill.quantize(tmp_path / "empty", tmp_path / "out.gguf")
    assert not (tmp_path / "out.gguf").exists()


def test_missing_default_model(monkeypatch, tmp_path):
    monkeypatch.setenv("QUILL_MODEL", str(tmp_path / "gone.gguf"))
    with pytest.raises(FileNotFoundError, match="gone.gguf"):
        quill.Model()
    assert os.fspath(quill.default_model_path()).endswith("gone.gguf")
