#!/usr/bin/env python3
"""Quill on Ray Serve: an OpenAI-style ``/v1/completions`` (plain and streamed) served by
replicas of ``quill.Engine``, each with continuous batching inside, scaled on queue length.

Each replica maps the same GGUF (replicas on one node share one copy of the weights in the page
cache; each has its own KV cache of ``--parallel`` slots) and runs ``--threads`` threads.
Ray Serve's proxy spreads requests over the replicas; the autoscaler adds a replica while the
running and waiting requests per replica exceed ``--parallel``, up to ``--max-replicas``.

    pip install ./crates/python "ray[serve]"
    # a laptop: a local Ray, one replica of 2 threads (more when busy, up to 2)
    python examples/ray_serve.py --model gpt2-q8_0.gguf --threads 2 --max-replicas 2
    curl localhost:8000/v1/completions -d '{"prompt": "Hello", "max_tokens": 16}'
    # a cluster: start Ray on every node first (ray start ...), with the model at the same path
    # on each; replicas then land on any node with free CPUs
    python examples/ray_serve.py --address auto --model /shared/gpt2-xl-q4_0.gguf \\
        --threads 4 --min-replicas 2 --max-replicas 16 --host 0.0.0.0

Fields: ``prompt`` (a string), ``max_tokens`` (16), ``temperature`` (1), ``top_p`` (1),
``top_k`` (0: off), ``min_p`` (0), ``seed``, ``stop``, ``n`` (1), ``stream`` (false),
``ignore_eos``: OpenAI's defaults, as ``quill serve``. Bad input gets a 400 with an OpenAI
error object. For one machine, ``quill serve`` itself is the lighter choice; this is for
spreading one endpoint over many.
"""
import argparse
import json
import time
import uuid
from typing import Any, AsyncIterator, Dict, Optional

from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse

import quill

OPENAI_DEFAULTS = {"max_tokens": 16, "temperature": 1.0, "top_p": 1.0, "top_k": 0, "min_p": 0.0}


def error(message: str, param: Optional[str] = None, status: int = 400) -> JSONResponse:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": None}}
    return JSONResponse(body, status_code=status)


def settings(body: Dict[str, Any]) -> Dict[str, Any]:
    """``Engine.submit``'s keyword arguments from a request body (TypeError/ValueError when bad)."""
    known = {"prompt", "model", "max_tokens", "temperature", "top_p", "top_k", "min_p", "seed", "stop", "n",
             "stream", "ignore_eos", "user"}
    unknown = sorted(set(body) - known)
    if unknown:
        raise ValueError(f"unsupported fields: {unknown}")
    kw = {k: body.get(k, v) for k, v in OPENAI_DEFAULTS.items()}
    for k in ("seed", "stop", "n", "ignore_eos"):
        if body.get(k) is not None:
            kw[k] = body[k]
    if kw.get("top_k") == -1:
        kw["top_k"] = 0
    return kw


@serve.deployment
class Completions:
    """One ``quill.Engine`` per replica."""

    def __init__(self, model: str, threads: int, parallel: int, ctx: Optional[int]):
        self.model_name = model
        self.engine = quill.Engine(quill.Model(model, threads=threads, ctx=ctx), parallel=parallel)

    async def __call__(self, request: Request):
        try:
            body = await request.json()
        except Exception:
            return error("the request body is not JSON")
        if not isinstance(body, dict) or not isinstance(body.get("prompt"), str):
            return error("prompt must be a string", "prompt")
        try:
            req = self.engine.submit(body["prompt"], **settings(body))
        except (TypeError, ValueError) as e:
            return error(str(e))
        n = int(body.get("n") or 1)
        rid, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        head = {"id": rid, "object": "text_completion", "created": created, "model": self.model_name}
        if body.get("stream"):
            return StreamingResponse(self._events(req, head, n), media_type="text/event-stream")
        texts = [""] * n
        async for item in req:
            i, piece = (0, item) if n == 1 else item
            texts[i] += piece
        reasons = [req.stop_reason] if n == 1 else req.stop_reason
        choices = [{"index": i, "text": t, "logprobs": None, "finish_reason": finish(r)}
                   for i, (t, r) in enumerate(zip(texts, reasons))]
        return JSONResponse({**head, "choices": choices})

    async def _events(self, req: "quill.Request", head: Dict[str, Any], n: int) -> AsyncIterator[str]:
        async for item in req:
            i, piece = (0, item) if n == 1 else item
            chunk = {**head, "choices": [{"index": i, "text": piece, "logprobs": None, "finish_reason": None}]}
            yield f"data: {json.dumps(chunk)}\n\n"
        reasons = [req.stop_reason] if n == 1 else req.stop_reason
        for i, r in enumerate(reasons):
            chunk = {**head, "choices": [{"index": i, "text": "", "logprobs": None, "finish_reason": finish(r)}]}
            yield f"data: {json.dumps(chunk)}\n\n"
        yield "data: [DONE]\n\n"


def finish(reason: Optional[str]) -> Optional[str]:
    """OpenAI's finish_reason of Quill's stop reason."""
    return {"eos": "stop", "stop": "stop", "length": "length", "context": "length"}.get(reason or "")


def app(model: str, threads: int = 2, parallel: int = 8, ctx: Optional[int] = None, min_replicas: int = 1,
        max_replicas: int = 1):
    """The Serve application: replicas of ``threads`` CPUs, scaled on requests per replica."""
    deployment = Completions.options(
        ray_actor_options={"num_cpus": threads},
        max_ongoing_requests=4 * parallel,
        autoscaling_config={
            "min_replicas": min_replicas,
            "max_replicas": max(min_replicas, max_replicas),
            "target_ongoing_requests": parallel,
        },
    )
    return deployment.bind(model, threads, parallel, ctx)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=quill.default_model_path(), help="GGUF file (default: the repository's model)")
    ap.add_argument("--address", help="a running Ray cluster (auto, or ray://host:10001); default: a local Ray")
    ap.add_argument("--threads", type=int, default=2, help="threads (and Ray CPUs) per replica")
    ap.add_argument("--parallel", type=int, default=8, help="sequences at once per replica (KV slots)")
    ap.add_argument("--ctx", type=int, help="positions per slot (default: the model's)")
    ap.add_argument("--min-replicas", type=int, default=1)
    ap.add_argument("--max-replicas", type=int, default=1)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    args = ap.parse_args()
    import ray

    ray.init(address=args.address)
    serve.start(http_options={"host": args.host, "port": args.port})
    serve.run(app(str(args.model), args.threads, args.parallel, args.ctx, args.min_replicas, args.max_replicas),
              route_prefix="/v1/completions", name="quill")
    print(f"serving /v1/completions on http://{args.host}:{args.port} (Ctrl-C to stop)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        serve.shutdown()


if __name__ == "__main__":
    main()
