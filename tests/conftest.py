"""Shared fixtures: a tiny generated dataset and a tiny trained model (seconds on a CPU), and ../shared/data."""
from __future__ import annotations

import os
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
    from cytomodel.config import load_config
    from cytomodel.data import load_dataset
    from cytomodel.training import train

    cfg = load_config("tiny-16", overrides={"max_steps": 30, "sample_every": 10_000})
    data = load_dataset(tiny_dataset, cfg.resolution)
    out = tmp_path_factory.mktemp("tiny_run")
    train(cfg, data, out, progress=False)
    return out / "model"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "pbc" / "manifest.csv").is_file():
        pytest.skip(f"../shared/data not available at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_superres_dir(tiny_dataset, tmp_path_factory) -> Path:
    """A 16 -> 32 px super-resolution stage trained for 30 steps on ``tiny_dataset`` (a few seconds)."""
    from cytomodel.config import load_config
    from cytomodel.data import load_dataset
    from cytomodel.training import train

    cfg = load_config("tiny-sr32", overrides={"max_steps": 30, "sample_every": 10_000})
    data = load_dataset(tiny_dataset, cfg.resolution)
    out = tmp_path_factory.mktemp("tiny_sr_run")
    train(cfg, data, out, progress=False)
    return out / "model"


@pytest.fixture(scope="session")
def tiny_cascade_dir(tiny_model_dir, tiny_superres_dir, tmp_path_factory) -> Path:
    """The tiny base (16 px) and the tiny super-resolution stage (16 -> 32 px) as one cascade folder."""
    from cytomodel.cascade import assemble_cascade

    out = tmp_path_factory.mktemp("tiny_cascade") / "cascade"
    assemble_cascade(tiny_model_dir, tiny_superres_dir, out, superres_steps=4)
    return out
