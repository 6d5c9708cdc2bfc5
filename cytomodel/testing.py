"""Tiny synthetic cell datasets: trivially learnable images for tests, smoke runs and demos without real data."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

TINY_CLASSES = ("alpha", "beta", "gamma")


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
