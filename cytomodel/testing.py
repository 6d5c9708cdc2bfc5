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


def make_smear(size: int = 360, um_per_px: float = 0.1, cell_um: float = 12.0, cell_at: tuple[float, float] = (0.5, 0.5),
               cells: int = 1, rbc_um: float = 7.5, n_rbc: int = 60, seed: int = 0,
               palette: str = "mgg") -> Image.Image:
    """A synthetic blood-smear field: round red cells (with central pallor) scattered over a pale background, and
    ``cells`` white cells (a dark lobed nucleus in paler cytoplasm) at ``cell_at`` (fractions of the field). Sizes
    are physical (µm) and drawn at ``um_per_px``, so a test knows the true scale and centre. ``palette``: "mgg"
    (May-Grünwald-Giemsa-like) or "rapid" (a yellowish background, brown nucleus: another lab's stain)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    bg, rbc_rgb, cyto, nuc = {
        "mgg": ((250, 232, 215), (215, 165, 160), (190, 175, 215), (75, 40, 120)),
        "rapid": ((245, 240, 170), (225, 190, 140), (215, 180, 175), (110, 45, 60)),
    }[palette]
    img = np.empty((size, size, 3))
    img[:] = bg
    r_rbc = rbc_um / um_per_px / 2
    r_cell = cell_um / um_per_px / 2
    centres = [(cell_at[0] * size, cell_at[1] * size)]
    if cells > 1:  # two cells side by side about cell_at, nearly touching
        centres = [(cell_at[0] * size - 1.15 * r_cell, cell_at[1] * size),
                   (cell_at[0] * size + 1.15 * r_cell, cell_at[1] * size)]
    placed = []
    for _ in range(n_rbc * 20):
        if len(placed) >= n_rbc:
            break
        x, y = rng.uniform(-r_rbc, size + r_rbc, 2)
        if any((x - cx) ** 2 + (y - cy) ** 2 < (r_cell + r_rbc + 2) ** 2 for cx, cy in centres):
            continue
        if any((x - px) ** 2 + (y - py) ** 2 < (2 * r_rbc + 1) ** 2 for px, py in placed):
            continue
        placed.append((x, y))
        d2 = (xx - x) ** 2 + (yy - y) ** 2
        img[d2 < r_rbc ** 2] = rbc_rgb
        img[d2 < (0.4 * r_rbc) ** 2] = np.add(rbc_rgb, bg) / 2          # central pallor
    for cx, cy in centres:
        img[(xx - cx) ** 2 + (yy - cy) ** 2 < r_cell ** 2] = cyto
        for k in range(3):                                                 # three nuclear lobes
            a = 2 * np.pi * k / 3 + rng.uniform(0, 0.5)
            lx, ly = cx + 0.3 * r_cell * np.cos(a), cy + 0.3 * r_cell * np.sin(a)
            img[(xx - lx) ** 2 + (yy - ly) ** 2 < (0.33 * r_cell) ** 2] = nuc
    img += rng.normal(0, 3, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
