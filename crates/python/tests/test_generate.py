"""`Model.generate` gives `quill generate`'s tokens for the same seed and settings, whole or
streamed; stop strings, limits and token-level generation."""
import pytest

import quill

CASES = [
    ("To be, or not to be", ["-n", "60", "--seed", "1"], dict(max_tokens=60, seed=1)),
    ("HAMLET.\n", ["-n", "40", "--seed", "3", "--temp", "1.2", "--top-k", "0"], dict(max_tokens=40, seed=3, temperature=1.2, top_k=0)),
    ("KING.\n", ["-n", "30", "--temp", "0"], dict(max_tokens=30, temperature=0.0)),
    ("ROMEO.\n", ["-n", "50", "--seed", "7", "--repeat-penalty", "1.3", "--top-p", "0.8", "--min-p", "0"],
     dict(max_tokens=50, seed=7, repeat_penalty=1.3, top_p=0.8, min_p=0.0)),
    ("Enter", ["-n", "80", "--seed", "5", "--stop", "\n\n"], dict(max_tokens=80, seed=5, stop="\n\n")),
    ("To be", ["-n", "30", "--seed", "9", "--kv-type", "f32"], dict(max_tokens=30, seed=9, kv_type="f32")),
    ("HAMLET.\n", ["-n", "40", "--seed", "4", "--kv-type", "q8_0"], dict(max_tokens=40, seed=4, kv_type="q8_0")),
]


@pytest.mark.parametrize("prompt,flags,kwargs", CASES)
def test_generate_equals_the_cli(model, default_path, cli, prompt, flags, kwargs):
    ref = cli("generate", "--json", "-m", str(default_path), "-p", prompt, *flags)
    assert model.generate(prompt, **kwargs) == ref["text"]
    ids, stop, end = model.generate_ids(prompt, **kwargs)
    assert ids == ref["ids"]
    assert stop == ref["stop"]
    assert (end is not None) == (stop == "eos")
    stream = model.generate(prompt, stream=True, **kwargs)
    assert "".join(stream) == ref["text"]
    assert stream.stop_reason == ref["stop"]
    assert stream.ids == ref["ids"]


def test_defaults_are_the_clis(model, default_path, cli):
    ref = cli("generate", "--json", "-m", str(default_path), "-p", "To be", "--seed", "11")
    assert model.generate("To be", seed=11) == ref["text"]
    assert len(ref["ids"]) == 128 or ref["stop"] != "length"


def test_streaming_yields_pieces_as_they_come(model):
    stream = model.generate("HAMLET.\n", max_tokens=20, seed=2, stream=True)
    assert isinstance(stream, quill.TextStream)
    assert stream.stop_reason is None
    first = next(stream)
    assert first and stream.stop_reason is None and len(stream.ids) >= 1
    rest = list(stream)
    assert first + "".join(rest) == model.generate("HAMLET.\n", max_tokens=20, seed=2)
    assert stream.stop_reason == "length" and len(stream.ids) == 20
    assert list(stream) == []  # finished stays finished


def test_close_ends_a_stream(model):
    stream = model.generate("KING.\n", max_tokens=None, seed=1, stream=True)
    next(stream)
    stream.close()
    assert stream.stop_reason == "interrupted"
    assert list(stream) == []


def test_prompt_as_ids_and_limits(model):
    ids = model.tokenize("To be, or not to be")
    assert model.generate(ids, max_tokens=20, seed=4) == model.generate("To be, or not to be", max_tokens=20, seed=4)
    assert model.generate("To be", max_tokens=0) == ""
    out, stop, _ = model.generate_ids("To be", max_tokens=None, temperature=0, ignore_eos=True)
    assert stop == "context" and len(out) == model.n_ctx - 2 + 1  # two prompt tokens


def test_end_ids_end_the_generation(model):
    out, stop, _ = model.generate_ids("KING.\n", max_tokens=40, temperature=0)
    assert stop == "length"
    out2, stop2, end = model.generate_ids("KING.\n", max_tokens=40, temperature=0, end_ids=[out[5]])
    assert (out2, stop2, end) == (out[:5], "eos", out[5])


def test_smaller_context(default_path):
    m = quill.Model(default_path, ctx=16)
    assert m.n_ctx == 16 and m.n_ctx_train == 256
    out, stop, _ = m.generate_ids("To be", max_tokens=None, temperature=0, ignore_eos=True)
    assert stop == "context" and len(out) == 15


BATCH = ["To be, or not to be", "HAMLET.\n", "O", "Friends, Romans, countrymen, lend me your ears;"]


def test_a_list_of_prompts_runs_together_and_each_gets_its_own_tokens(model):
    texts = model.generate(BATCH, max_tokens=24, seed=[10, 11, 12, 13])
    assert isinstance(texts, list) and len(texts) == len(BATCH)
    # Each completion's tokens do not depend on what ran beside it, nor on how many run at once.
    for i, p in enumerate(BATCH):
        assert texts[i] == model.generate([p], max_tokens=24, seed=10 + i)[0]
    assert model.generate(BATCH, max_tokens=24, seed=[10, 11, 12, 13], parallel=1) == texts
    # One seed seeds every prompt (as the server and vLLM do).
    same = model.generate([BATCH[0], BATCH[0]], max_tokens=24, seed=10)
    assert same == [texts[0], texts[0]]
    with pytest.raises(ValueError, match="a list of 2 seeds for 4 prompts"):
        model.generate(BATCH, seed=[1, 2])
    ids = model.generate_ids(BATCH, max_tokens=24, seed=[10, 11, 12, 13])
    assert [model.detokenize(t[0]) for t in ids] == texts
    assert all(reason in ("length", "eos") for _, reason, _ in ids)
    # Greedy: a batch gives each prompt's tokens alone, as `quill generate` does.
    greedy = model.generate_ids(BATCH, max_tokens=16, temperature=0.0)
    for p, (got, _, _) in zip(BATCH, greedy):
        assert got == model.generate_ids(p, max_tokens=16, temperature=0.0)[0]


def test_n_completions_share_a_prompt_and_are_seeded_apart(model):
    one = model.generate("HAMLET.\n", max_tokens=16, seed=3, n=3)
    assert isinstance(one, list) and len(one) == 3 and len(set(one)) > 1
    assert one[1] == model.generate(["HAMLET.\n"], max_tokens=16, seed=4)[0]
    # Streamed, one prompt's n completions come as (index, piece); its reasons and ids are
    # shaped as generate's texts (a list of n).
    stream = model.generate("HAMLET.\n", max_tokens=16, seed=3, n=3, stream=True)
    texts = ["", "", ""]
    for i, piece in stream:
        texts[i] += piece
    assert texts == one
    assert stream.stop_reason == ["length"] * 3 or "eos" in stream.stop_reason
    assert len(stream.ids) == 3 and all(isinstance(x, list) for x in stream.ids)
    many = model.generate(["HAMLET.\n", "O"], max_tokens=16, seed=3, n=3)
    assert [len(x) for x in many] == [3, 3] and many[0] == one
    ids = model.generate_ids(BATCH[:2], max_tokens=8, seed=3, n=2, stop="\n")
    assert [len(x) for x in ids] == [2, 2] and all(r in ("length", "stop", "eos") for x in ids for _, r, _ in x)


def test_a_streamed_batch_yields_indexed_pieces(model):
    stream = model.generate(BATCH, max_tokens=20, seed=5, n=2, stream=True)
    texts = [""] * (len(BATCH) * 2)
    for i, piece in stream:
        texts[i] += piece
    whole = model.generate(BATCH, max_tokens=20, seed=5, n=2)
    assert texts == [t for group in whole for t in group]
    assert stream.stop_reason == [[r for _, r, _ in g] for g in model.generate_ids(BATCH, max_tokens=20, seed=5, n=2)]
    assert texts[0] == texts[2 * BATCH.index(BATCH[0])]
    assert [[len(x) for x in g] for g in stream.ids] == [[20, 20]] * len(BATCH) or any(
        r == "eos" for g in stream.stop_reason for r in g
    )


def test_batch_arguments_are_checked(model):
    with pytest.raises(ValueError, match="n must be at least 1"):
        model.generate(BATCH, n=0)
    with pytest.raises(ValueError, match="parallel must be at least 1"):
        model.generate(BATCH, parallel=0)
    with pytest.raises(ValueError, match="is empty"):  # no prompt, or a prompt of no tokens
        model.generate([])
    with pytest.raises(ValueError, match=r"the prompt is empty: it has no tokens \(prompt\[1\]\)"):
        model.generate(["To be", ""])
    with pytest.raises(ValueError, match=r"prompt\[1\]: token id 99999 is outside"):
        model.generate_ids([[1, 2], [99999]])
