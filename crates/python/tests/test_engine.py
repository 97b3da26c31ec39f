"""`quill.Engine`: requests from threads and asyncio tasks on one in-process engine give each
one's tokens alone (the server's batch invariance), stream as they come, cancel, and close."""
import asyncio
import threading

import pytest

import quill

PROMPTS = ["To be, or not to be", "HAMLET.\n", "O", "Friends, Romans, countrymen", "KING.\n", "Enter"]


def alone(model, prompt, seed, **kw):
    # A one-prompt list runs on the engine the way Engine.submit does (row-invariant, seed + c).
    return model.generate([prompt], seed=seed, **kw)[0]


def test_requests_from_threads_each_get_their_own_tokens(model):
    texts = {}
    with quill.Engine(model, parallel=4) as engine:
        def run(i):
            req = engine.submit(PROMPTS[i], max_tokens=20, seed=i)
            texts[i] = "".join(req)
            assert req.stop_reason in ("length", "eos") and req.done

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(PROMPTS))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stats = engine.stats()
        assert stats["finished"] == len(PROMPTS) and stats["running"] == 0
    for i, p in enumerate(PROMPTS):
        assert texts[i] == alone(model, p, i, max_tokens=20), p


def test_asyncio_tasks_stream_their_pieces(model):
    async def one(engine, i):
        req = engine.submit(PROMPTS[i], max_tokens=16, seed=10 + i)
        pieces = [p async for p in req]
        return "".join(pieces)

    async def main():
        with quill.Engine(model, parallel=3) as engine:
            return await asyncio.gather(*(one(engine, i) for i in range(len(PROMPTS))))

    got = asyncio.run(main())
    assert got == [alone(model, p, 10 + i, max_tokens=16) for i, p in enumerate(PROMPTS)]


def test_n_completions_cancel_and_close(model):
    engine = quill.Engine(model, parallel=2)
    req = engine.submit("HAMLET.\n", max_tokens=12, seed=5, n=2)
    texts = ["", ""]
    for i, piece in req:
        texts[i] += piece
    assert texts == model.generate(["HAMLET.\n"], max_tokens=12, seed=5, n=2)[0]
    assert req.stop_reason == ["length", "length"] and [len(x) for x in req.ids] == [12, 12]

    endless = engine.submit("KING.\n", max_tokens=None, ignore_eos=True, seed=1)
    next(endless)
    endless.cancel()
    assert endless.stop_reason == "interrupted" and list(endless) == []
    # The engine goes on serving.
    assert "".join(engine.submit("O", max_tokens=8, seed=2)) == alone(model, "O", 2, max_tokens=8)
    engine.close()
    with pytest.raises(RuntimeError, match="closed"):
        engine.submit("O")


def test_bad_requests_are_refused_at_submit(model):
    with quill.Engine(model, parallel=2, ctx=64) as engine:
        with pytest.raises(ValueError, match="temperature"):
            engine.submit("O", temperature=-1.0)
        with pytest.raises(ValueError, match="more than the context of 64"):
            engine.submit("word " * 100)
        with pytest.raises(ValueError, match="n = 3 completions need 3 sequences at once"):
            engine.submit("O", n=3)
    with pytest.raises(ValueError, match="ctx must be in"):
        quill.Engine(model, ctx=100000)
    with pytest.raises(ValueError, match="parallel must be at least 1"):
        quill.Engine(model, parallel=0)
    with pytest.raises(ValueError, match="queue must be at least 1"):
        quill.Engine(model, queue=0)
    with pytest.raises(ValueError, match="kv_type must be 'f16', 'f32' or 'q8_0'"):
        quill.Engine(model, kv_type="q3")
