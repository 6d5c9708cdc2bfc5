"""Shared fixtures: a tiny generated dataset and a tiny trained model (seconds on a CPU), and ../shared/data."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cytomodel.testing import TINY_CLASSES, make_cell_image, make_dataset  # noqa: F401

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("CYTOSTUDY_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Keep the image cache of the test run out of the user's home."""
    os.environ["CYTOSTUDY_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    os.environ.setdefault("CYTOMODEL_THREADS", "2")


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("tiny_data"))


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_dataset, tmp_path_factory) -> Path:
    """A 16 px model trained for 30 steps on ``tiny_dataset`` (about 5 s); saved like any cytomodel."""
    from cytomodel.data import load_dataset
    from cytomodel.train import load_config, train

    cfg = load_config("tiny-16", overrides={"max_steps": 30, "sample_every": 10_000})
    data = load_dataset(tiny_dataset, cfg.resolution)
    out = tmp_path_factory.mktemp("tiny_run")
    train(cfg, data, out, progress=False)
    return out / "model"


@pytest.fixture(scope="session")
def tiny_baseline_dir(tiny_dataset, tmp_path_factory) -> Path:
    """A tiny baseline CNN (16 px, one epoch) on ``tiny_dataset``'s classes."""
    from cytomodel.data import load_dataset
    from cytomodel.evaluate import train_baseline

    data = load_dataset(tiny_dataset, 16)
    clf = train_baseline(data, epochs=1, batch_size=12, seed=0, progress=False, widths=(8, 16), blocks=(1, 1))
    return clf.save_pretrained(tmp_path_factory.mktemp("tiny_baseline") / "baseline")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "pbc" / "manifest.csv").is_file():
        pytest.skip(f"../shared/data not available at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_superres_dir(tiny_dataset, tmp_path_factory) -> Path:
    """A 16 -> 32 px super-resolution stage trained for 30 steps on ``tiny_dataset`` (a few seconds)."""
    from cytomodel.data import load_dataset
    from cytomodel.train import load_config, train

    cfg = load_config("tiny-sr32", overrides={"max_steps": 30, "sample_every": 10_000})
    data = load_dataset(tiny_dataset, cfg.resolution)
    out = tmp_path_factory.mktemp("tiny_sr_run")
    train(cfg, data, out, progress=False)
    return out / "model"


@pytest.fixture(scope="session")
def tiny_cascade_dir(tiny_model_dir, tiny_superres_dir, tmp_path_factory) -> Path:
    """The tiny base (16 px) and the tiny super-resolution stage (16 -> 32 px) as one cascade folder."""
    from cytomodel.models import assemble_cascade

    out = tmp_path_factory.mktemp("tiny_cascade") / "cascade"
    assemble_cascade(tiny_model_dir, tiny_superres_dir, out, superres_steps=4)
    return out


class ExtraEnvironment:
    """A fresh venv (no pip of its own) holding the cytostudy wheel with one install extra."""

    def __init__(self, python: Path):
        self.python = python

    def run(self, program: str, *args, **kw) -> subprocess.CompletedProcess:
        """Run ``program`` (``python`` or a console script of the environment); fail with its output if it fails."""
        return run_checked([self.python if program == "python" else self.python.parent / program, *args], **kw)

    def importable(self, *modules: str) -> list[str]:
        """Which of ``modules`` this environment can import (for the ones its extra must not bring: none)."""
        code = f"import importlib.util as u, json; print(json.dumps([m for m in {list(modules)!r} if u.find_spec(m)]))"
        return json.loads(self.run("python", "-c", code).stdout.strip().splitlines()[-1])


def run_checked(cmd, **kw) -> subprocess.CompletedProcess:
    """Run ``cmd``; on a non-zero exit fail with the command and the end of its output."""
    out = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=600, **kw)
    assert out.returncode == 0, f"{' '.join(map(str, cmd))}\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.fixture(scope="session")
def extra_environment(tmp_path_factory):
    """Factory: ``extra_environment("study")`` is an :class:`ExtraEnvironment` with ``cytostudy[study]`` only.

    Why a real install: the test environment has every package, so a dependency missing from one extra (a job that
    imports what only another extra brings) shows only in an environment of that extra alone. Built from the pip
    cache that scripts/setup.sh filled, without bytecode: seconds each."""
    wheels = tmp_path_factory.mktemp("wheel")
    run_checked([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", REPO, "-w", wheels])
    wheel = next(wheels.glob("cytostudy-*.whl"))
    setup = (REPO / "scripts" / "setup.sh").read_text()
    torch_pin = re.search(r'pip install -q "(torch==[^"]+)"', setup)  # a CPU wheel here; unpinned would be CUDA
    assert torch_pin, "scripts/setup.sh no longer pins torch the way this fixture reads it"

    def make(extra: str) -> ExtraEnvironment:
        venv = tmp_path_factory.mktemp(f"venv-{extra}")
        run_checked([sys.executable, "-m", "venv", "--without-pip", venv])
        py = venv / "bin" / "python"
        first = [torch_pin.group(1)] if extra == "model" else []
        run_checked([sys.executable, "-m", "pip", "--python", py, "install", "-q", "--no-compile", *first,
                     f"{wheel}[{extra}]"])
        return ExtraEnvironment(py)

    return make
