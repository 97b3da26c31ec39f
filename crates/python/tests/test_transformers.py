"""`quill.transformers` against `transformers` itself: greedy tokens, decoded texts, the
tokenizer's padding and the loss, from fixtures made once by fixtures/make_fixtures.py (no
torch or transformers needed here)."""
import importlib.util
import json

import numpy as np
import pytest

import quill
from conftest import FIXTURES, REPO, TINY_HF
from quill.transformers import AutoModelForCausalLM, GPT2LMHeadModel, GPT2Tokenizer

REF = json.loads((FIXTURES / "transformers.json").read_text())
HAS_TORCH = importlib.util.find_spec("torch") is not None


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """(model, tokenizer) per fixture model: the tiny Hugging Face folder converted on load,
    and the default model's weights as F32 (what make_fixtures.py gave transformers)."""
    f32 = tmp_path_factory.mktemp("shakespeare") / "shakespeare-f32.gguf"
    quill.quantize(REPO / "models" / "quill-shakespeare.gguf", f32, "f32")
    return {
        "tiny": (GPT2LMHeadModel.from_pretrained(TINY_HF), GPT2Tokenizer.from_pretrained(TINY_HF)),
        "shakespeare": (GPT2LMHeadModel.from_pretrained(f32), GPT2Tokenizer.from_pretrained(REPO / "models" / "tokenizer")),
    }


@pytest.mark.parametrize("name", ["tiny", "shakespeare"])
def test_greedy_tokens_equal_transformers(pair, name):
    model, tok = pair[name]
    for case in REF[name]["generate"]:
        assert case["min_margin"] > 1e-3, "fixture too close to a tie to compare"
        ids = tok.encode(case["prompt"], return_tensors="np")
        assert ids.tolist() == [case["input_ids"]]
        out = model.generate(ids, **case["kwargs"])
        assert isinstance(out, np.ndarray) and out.dtype == np.int64
        assert out.tolist() == case["output"], (case["prompt"], case["kwargs"])
        assert tok.decode(out[0], skip_special_tokens=True) == case["text"]
        assert tok.decode(out[0]) == case["text_special"]
        # Plain lists in, lists out.
        assert model.generate([case["input_ids"]], **case["kwargs"]) == case["output"]


@pytest.mark.parametrize("name", ["tiny", "shakespeare"])
def test_padded_batches_and_the_tokenizer_equal_transformers(pair, name):
    model, tok = pair[name]
    for case in REF[name]["tokenizer"]:
        enc = tok(case["texts"], padding=isinstance(case["texts"], list)) if tok.pad_token else None
        if enc is None:
            tok.pad_token = tok.eos_token
            enc = tok(case["texts"], padding=True)
        assert enc["input_ids"] == case["input_ids"] and enc.attention_mask == case["attention_mask"]
    (case,) = REF[name]["batch"]
    tok.pad_token, tok.padding_side = tok.eos_token, "left"
    enc = tok(case["texts"], padding=True, return_tensors="np")
    assert enc["input_ids"].tolist() == case["input_ids"]
    assert enc["attention_mask"].tolist() == case["attention_mask"]
    out = model.generate(**enc, max_new_tokens=16, pad_token_id=tok.eos_token_id)
    assert out.tolist() == case["output"]
    assert tok.batch_decode(out, skip_special_tokens=True) == case["texts_out"]
    tok.padding_side = "right"


@pytest.mark.parametrize("name", ["tiny", "shakespeare"])
def test_loss_equals_transformers(pair, name):
    model, tok = pair[name]
    ref = REF[name]["loss"]
    ids = tok.encode(ref["text"], return_tensors="np")
    out = model(ids, labels=ids)
    assert out.logits.shape == (1, ids.shape[1], model.config.vocab_size)
    assert out.loss == pytest.approx(ref["loss"], rel=1e-5)


def test_the_tutorial_runs_with_only_the_import_changed(default_path):
    tokenizer = GPT2Tokenizer.from_pretrained("gpt2")  # GPT-2's vocabulary, from the default model
    model = AutoModelForCausalLM.from_pretrained(default_path)
    input_ids = tokenizer.encode("Once upon a time", return_tensors="pt" if HAS_TORCH else "np")
    output = model.generate(input_ids, max_length=50, num_return_sequences=1)
    text = tokenizer.decode(output[0], skip_special_tokens=True)
    assert text.startswith("Once upon a time") and len(output[0]) == 50
    assert text == "Once upon a time" + quill.Model(default_path).generate(
        "Once upon a time", max_tokens=46, temperature=0, kv_type="f32"
    )


def test_return_tensors_pt_needs_torch(default_path):
    tok = GPT2Tokenizer.from_pretrained(default_path)
    if HAS_TORCH:
        import torch

        ids = tok.encode("Hello", return_tensors="pt")
        assert isinstance(ids, torch.Tensor) and ids.dtype == torch.long
        out = GPT2LMHeadModel.from_pretrained(default_path).generate(ids, max_new_tokens=3)
        assert isinstance(out, torch.Tensor) and out.shape == (1, 4)
    else:
        with pytest.raises(ImportError, match="return_tensors='pt' needs PyTorch"):
            tok.encode("Hello", return_tensors="pt")
    with pytest.raises(ValueError, match="return_tensors must be"):
        tok.encode("Hello", return_tensors="tf")


def test_sampling_and_refusals(default_path):
    model = GPT2LMHeadModel.from_pretrained(default_path)
    ids = [[7454, 2402, 257, 640]]
    a = model.generate(ids, do_sample=True, max_new_tokens=20, top_k=0, temperature=0.9, num_return_sequences=3, seed=5)
    assert len(a) == 3 and a == model.generate(ids, do_sample=True, max_new_tokens=20, top_k=0, temperature=0.9,
                                               num_return_sequences=3, seed=5)
    assert a[0] != a[1]
    with pytest.raises(ValueError, match="num_return_sequences must be 1"):
        model.generate(ids, num_return_sequences=2)
    with pytest.raises(ValueError, match="beam search"):
        model.generate(ids, num_beams=4)
    with pytest.raises(TypeError, match="no_repeat_ngram_size"):
        model.generate(ids, no_repeat_ngram_size=2)
    with pytest.raises(TypeError, match="load_in_8bit"):
        GPT2LMHeadModel.from_pretrained(default_path, load_in_8bit=True)
    with pytest.raises(FileNotFoundError, match="Quill downloads nothing"):
        GPT2LMHeadModel.from_pretrained("surely-not-a-cached-model/xyz")
    with pytest.raises(ValueError, match="padding needs a pad token"):
        GPT2Tokenizer.from_pretrained(default_path)(["a", "b c"], padding=True)


def test_hub_ids_resolve_from_the_local_cache(tmp_path, monkeypatch):
    snap = tmp_path / "hub" / "models--someone--tiny" / "snapshots" / "abc123"
    snap.parent.mkdir(parents=True)
    snap.symlink_to(TINY_HF, target_is_directory=True)
    (tmp_path / "hub" / "models--someone--tiny" / "refs").mkdir()
    (tmp_path / "hub" / "models--someone--tiny" / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    model = GPT2LMHeadModel.from_pretrained("someone/tiny")
    tok = GPT2Tokenizer.from_pretrained("someone/tiny")
    assert model.config.vocab_size == 320 and len(tok) == 320


def test_rows_and_their_sequences_run_together_as_each_alone(default_path):
    model = GPT2LMHeadModel.from_pretrained(default_path)
    tok = GPT2Tokenizer.from_pretrained(default_path)
    tok.pad_token, tok.padding_side = tok.eos_token, "left"
    texts = ["To be, or not to be", "HAMLET.", "Friends, Romans, countrymen, lend me"]
    enc = tok(texts, padding=True, return_tensors="np")
    out = model.generate(**enc, max_new_tokens=12, do_sample=True, num_return_sequences=2, seed=40)
    assert out.shape[0] == 6
    width = enc["input_ids"].shape[1]
    for k in range(6):
        row = enc["input_ids"][k // 2 : k // 2 + 1]
        mask = enc["attention_mask"][k // 2 : k // 2 + 1]
        # Sequence k alone, seeded as it was in the batch.
        alone = model.generate(input_ids=row, attention_mask=mask, max_new_tokens=12, do_sample=True, seed=40 + k)
        n = alone.shape[1]
        assert out[k, :n].tolist() == alone[0].tolist()
        assert all(t == tok.eos_token_id for t in out[k, n:])
    assert out[:, :width].tolist() == np.repeat(enc["input_ids"], 2, axis=0).tolist()


def test_the_text_generation_pipeline(default_path):
    from quill.transformers import pipeline

    pipe = pipeline("text-generation", model=str(default_path))
    model, tok = pipe.model, pipe.tokenizer
    ids = tok.encode("To be, or not to be", return_tensors="np")
    ref = tok.decode(model.generate(ids, max_new_tokens=10)[0], skip_special_tokens=True)
    assert pipe("To be, or not to be", max_new_tokens=10) == [{"generated_text": ref}]
    cont = pipe(["To be, or not to be", "KING."], max_new_tokens=10, return_full_text=False)
    assert cont[0] == [{"generated_text": ref[len("To be, or not to be"):]}] and len(cont[1]) == 1
    many = pipe("HAMLET.", max_new_tokens=8, do_sample=True, num_return_sequences=3, batch_size=2)
    assert len(many) == 3 and all(m["generated_text"].startswith("HAMLET.") for m in many)
    with pytest.raises(ValueError, match="text-generation only"):
        pipeline("summarization", model=str(default_path))
    with pytest.raises(TypeError, match="num_beam_groups"):
        pipe("KING.", num_beam_groups=2)
