"""examples/ray_serve.py: the Serve application on a local Ray answers one plain and one
streamed completion with what the engine gives in-process, and refuses bad input with a 400."""
import json
import os
import socket
import tempfile
import urllib.error
import urllib.request

import pytest

import quill
from conftest import load_ray_example

ray = pytest.importorskip("ray")
serve = pytest.importorskip("ray.serve")
pytest.importorskip("starlette")

os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_serve_answers_plain_and_streamed_completions(default_path):
    mod = load_ray_example("ray_serve")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="qsrv") as tmp:
        ray.init(num_cpus=2, include_dashboard=False, _temp_dir=tmp, configure_logging=False)
        try:
            serve.start(http_options={"host": "127.0.0.1", "port": port})
            serve.run(mod.app(str(default_path), threads=1, parallel=4), route_prefix="/v1/completions", name="quill")
            url = f"http://127.0.0.1:{port}/v1/completions"
            body = {"prompt": "To be, or not to be", "max_tokens": 12, "seed": 3, "temperature": 0.8}
            status, text = post(url, body)
            assert status == 200, text
            got = json.loads(text)["choices"][0]
            model = quill.Model(default_path)
            want = model.generate(["To be, or not to be"], max_tokens=12, seed=3, temperature=0.8, top_k=0,
                                  top_p=1.0, min_p=0.0)[0]
            assert got["text"] == want and got["finish_reason"] in ("length", "stop")

            status, text = post(url, {**body, "stream": True})
            assert status == 200, text
            events = [line[len("data: "):] for line in text.splitlines() if line.startswith("data: ")]
            assert events[-1] == "[DONE]"
            pieces = [json.loads(e)["choices"][0] for e in events[:-1]]
            assert "".join(p["text"] for p in pieces) == want
            assert pieces[-1]["finish_reason"] == got["finish_reason"]

            status, text = post(url, {"prompt": "O", "temperature": -3})
            assert status == 400 and "temperature" in json.loads(text)["error"]["message"]
        finally:
            serve.shutdown()
            ray.shutdown()
