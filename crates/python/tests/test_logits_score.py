"""`Model.logits` equals `quill logits --json`; `Model.score` equals `quill perplexity` on the
same windows and the log-softmax of the logits everywhere else."""
import math

import numpy as np
import pytest

import quill


@pytest.mark.parametrize("prompt", ["Hello, world!", "HAMLET.\nTo be, or not to be, that is the question:"])
def test_logits_equal_the_cli(model, default_path, cli, prompt):
    ref = cli("logits", "--json", "-m", str(default_path), "-p", prompt)
    got = model.logits(prompt)
    assert got.dtype == np.float32 and got.shape == (model.n_vocab,)
    assert model.tokenize(prompt) == ref["ids"]
    np.testing.assert_array_equal(got, np.array(ref["logits"], dtype=np.float32))
    rows = model.logits(ref["ids"], all_positions=True)
    assert rows.shape == (len(ref["ids"]), model.n_vocab) and rows.dtype == np.float32
    np.testing.assert_array_equal(rows[-1], got)
    # Each row is the last-position logits of the prefix ending there.
    np.testing.assert_allclose(rows[2], model.logits(ref["ids"][:3]), rtol=0, atol=1e-4)


def test_score_equals_quill_perplexity(default_path, cli, heldout, tmp_path):
    text = heldout[:20000]
    f = tmp_path / "text.txt"
    f.write_text(text)
    ctx, chunks = 64, 6
    ref = cli("perplexity", "--json", "-m", str(default_path), "-f", str(f), "--ctx", str(ctx), "--chunks", str(chunks))
    m = quill.Model(default_path, ctx=ctx)
    ids = m.tokenize(text)
    windows = [ids[i * ctx:(i + 1) * ctx] for i in range(chunks)]
    results = m.score(windows)
    # llama-perplexity scores each window's second half: the predictions made at positions
    # ctx/2..ctx-2, logprobs[ctx/2:] (logprobs[i] is the prediction made at position i).
    nll, count = 0.0, 0
    for r in results:
        assert r["n_scored"] == ctx - 1 and r["ids"] == windows[results.index(r)]
        for lp in r["logprobs"][ctx // 2:]:
            nll -= lp
            count += 1
    assert count == ref["count"]
    assert math.exp(nll / count) == pytest.approx(ref["ppl"], rel=1e-12)


def test_score_is_the_log_softmax_of_the_logits(model):
    texts = ["To be, or not to be, that is the question.", "KING.\nWhat news?"]
    for text, r in zip(texts, model.score(texts)):
        ids = model.tokenize(text)
        rows = model.logits(ids, all_positions=True).astype(np.float64)
        lse = rows.max(1) + np.log(np.exp(rows - rows.max(1, keepdims=True)).sum(1))
        want = [rows[i, ids[i + 1]] - lse[i] for i in range(len(ids) - 1)]
        assert r["ids"] == ids and r["n_scored"] == len(ids) - 1
        np.testing.assert_allclose(r["logprobs"], want, rtol=0, atol=1e-9)
        assert r["log_likelihood"] == pytest.approx(sum(want), abs=1e-8)
        assert r["perplexity"] == pytest.approx(math.exp(-sum(want) / len(want)), rel=1e-9)


def test_long_texts_are_scored_in_overlapping_windows(default_path, heldout):
    m = quill.Model(default_path, ctx=32)
    ids = m.tokenize(heldout[:2000])[:100]
    (r,) = m.score([ids])
    assert r["n_scored"] == 99
    # The first window is scored whole; later tokens have 16 tokens or more before them.
    first = m.score([ids[:32]])[0]["logprobs"]
    assert r["logprobs"][:31] == first
    tail = m.score([ids[100 - 32:]])[0]["logprobs"]
    assert r["logprobs"][-(100 - 96):] == tail[-4:]


def test_add_bos_and_short_texts(model):
    a, b, c = model.score(["Hello", "", "To be"], add_bos=True)
    assert a["n_scored"] == 1 and a["ids"] == model.tokenize("Hello")
    assert a["logprobs"][0] == pytest.approx(model.score([[model.eos_token_id, *a["ids"]]])[0]["logprobs"][0])
    assert b["n_scored"] == 0 and math.isnan(b["perplexity"])
    assert c["n_scored"] == 2
    (d,) = model.score(["Hello"])
    assert d["n_scored"] == 0 and d["log_likelihood"] == 0.0 and math.isnan(d["perplexity"])
    assert model.score([]) == []
