"""examples/ray_score.py: a Ray Data pipeline with 2 local workers gives the same scores as
one process, and the script runs as the README says."""
import json
import os
import subprocess
import sys
import tempfile

import pytest

import quill
from conftest import REPO, load_ray_example

ray = pytest.importorskip("ray")


# A throwaway local cluster: no token written to ~/.ray, sessions under the test's folder.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


@pytest.fixture()
def ray_tmp():
    """A short folder for Ray's sessions (its socket paths must stay under 108 bytes)."""
    with tempfile.TemporaryDirectory(prefix="qray") as d:
        yield d


@pytest.fixture()
def local_ray(ray_tmp):
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=256 * 1024 * 1024, log_to_driver=False,
             _temp_dir=ray_tmp)
    yield
    ray.shutdown()


def test_two_workers_give_the_scores_of_one_process(local_ray, default_path, heldout):
    lines = [line for line in heldout.splitlines() if line.strip()][:300]
    example = load_ray_example("ray_score")
    ds = ray.data.from_items([{"id": i, "text": t} for i, t in enumerate(lines)])
    rows = example.pipeline(ds, str(default_path), workers=2, threads=1, batch_size=32).take_all()
    assert sorted(r["id"] for r in rows) == list(range(len(lines)))
    want = quill.Model(default_path).score(lines, add_bos=True)
    for r in rows:
        w = want[r["id"]]
        assert r["text"] == lines[r["id"]]
        assert (r["n_tokens"], r["log_likelihood"]) == (w["n_scored"], w["log_likelihood"])
    # Continuation: the same text as a single process with the same seed.
    few = ray.data.from_items([{"id": i, "text": t} for i, t in enumerate(lines[:6])])
    got = {r["id"]: r["continuation"] for r in example.pipeline(few, str(default_path), generate=8, seed=3).take_all()}
    m = quill.Model(default_path)
    assert got == {i: m.generate(t, max_tokens=8, seed=3) for i, t in enumerate(lines[:6])}


def test_the_script_writes_json_lines(tmp_path, ray_tmp, default_path, heldout):
    src = tmp_path / "corpus.txt"
    src.write_text("\n".join(heldout.splitlines()[:120]) + "\n")
    out = tmp_path / "scores"
    p = subprocess.run(
        [sys.executable, str(REPO / "examples" / "ray_score.py"), str(src), "--model", str(default_path),
         "--workers", "2", "--output", str(out), "--format", "json"],
        capture_output=True, text=True, timeout=600, env=dict(os.environ, RAY_TMPDIR=ray_tmp),
    )
    assert p.returncode == 0, p.stderr[-3000:]
    files = list(out.glob("*.json"))
    assert files

    rows = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    n_lines = len([line for line in heldout.splitlines()[:120] if line.strip()])
    assert len(rows) == n_lines and all("perplexity" in r for r in rows)
