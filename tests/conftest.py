"""Shared fixtures: a tiny generated dataset and a tiny trained model (seconds on a CPU), and ../shared/data."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("CYTOSTUDY_SHARED_DATA", REPO.parent / "shared" / "data"))
TINY_CLASSES = ("alpha", "beta", "gamma")


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Keep the image cache of the test run out of the user's home."""
    os.environ["CYTOSTUDY_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    os.environ.setdefault("CYTOMODEL_THREADS", "2")


def make_cell_image(cls_index: int, rng: np.random.Generator, size: int = 40) -> Image.Image:
    """A pink background with a class-coloured disc: trivially learnable, like a cartoon blood cell."""
    yy, xx = np.mgrid[:size, :size]
    img = np.empty((size, size, 3), np.float64)
    img[:] = (230, 190, 200)
    colours = [(90, 40, 140), (200, 80, 60), (60, 120, 200), (40, 160, 80)]
    r = size * (0.22 + 0.06 * cls_index)
    cx, cy = size / 2 + rng.normal(0, 1.5, 2)
    disc = (xx - cx) ** 2 + (yy - cy) ** 2 < r ** 2
    img[disc] = colours[cls_index % len(colours)]
    img += rng.normal(0, 6, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def make_dataset(root: Path, n_per_class: int = 12, size: int = 40, seed: int = 0,
                 classes=TINY_CLASSES) -> Path:
    rng = np.random.default_rng(seed)
    for i, c in enumerate(classes):
        (root / c).mkdir(parents=True, exist_ok=True)
        for j in range(n_per_class):
            make_cell_image(i, rng, size).save(root / c / f"{c}_{j:03d}.png")
    return root


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
