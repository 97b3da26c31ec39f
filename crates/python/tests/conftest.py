"""Shared fixtures: the repository, the `quill` binary the Python results are compared with,
the shipped default model and the tiny test checkpoint converted to GGUF."""
import json
import os
import subprocess
from pathlib import Path

import pytest

import quill

REPO = Path(__file__).resolve().parents[3]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
TINY_HF = REPO / "tests" / "fixtures" / "tiny-gpt2" / "hf"


@pytest.fixture(scope="session")
def quill_bin() -> Path:
    """The CLI (`$QUILL_BIN`, else target/release/quill, built if missing)."""
    path = Path(os.environ.get("QUILL_BIN", REPO / "target" / "release" / "quill"))
    if not path.is_file():
        subprocess.run(["cargo", "build", "--release", "-p", "quill-cli"], cwd=REPO, check=True)
    return path


@pytest.fixture(scope="session")
def cli(quill_bin):
    """Runs `quill ARGS --json` and returns the parsed JSON."""

    def run(*args: str) -> dict:
        env = {k: v for k, v in os.environ.items() if k != "QUILL_MODEL"}
        p = subprocess.run([str(quill_bin), *args], capture_output=True, text=True, env=env)
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout)

    return run


@pytest.fixture(scope="session")
def default_path() -> Path:
    path = REPO / "models" / "quill-shakespeare.gguf"
    assert path.is_file()
    return path


@pytest.fixture(scope="session")
def model(default_path):
    return quill.Model(default_path)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> Path:
    """The tiny checkpoint (320 tokens, context 64) as an F32 GGUF."""
    out = tmp_path_factory.mktemp("tiny") / "tiny-f32.gguf"
    quill.quantize(TINY_HF, out, "f32")
    return out


@pytest.fixture(scope="session")
def heldout() -> str:
    return (REPO / "models" / "heldout.txt").read_text()


def load_ray_example(name: str):
    """examples/NAME.py as a module whose classes Ray ships to its workers by value (they
    cannot import the example by name)."""
    import importlib.util
    import sys

    import ray

    spec = importlib.util.spec_from_file_location(name, REPO / "examples" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    ray.cloudpickle.register_pickle_by_value(mod)
    return mod
