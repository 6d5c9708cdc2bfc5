"""Where the white cell is in a cell image: the optical density that finds it, the stained region that holds its
nucleus, and — for a framed (centred) cell — its compartments. Shared by the framing (which finds and measures the
cell) and the stain statistics (which are taken per compartment, so that a set's mix of cells does not move them)."""
from __future__ import annotations

import math

import numpy as np

CENTRAL = 0.3            # a framed cell's nucleus lies within this fraction of the side from the centre


def optical_density(rgb: np.ndarray) -> np.ndarray:
    """Summed optical density over the image's own background (its brightest pixels): stain-agnostic darkness."""
    flat = rgb.reshape(-1, 3)
    lum = flat.sum(1)
    bright = flat[lum >= np.quantile(lum, 0.97)]
    white = np.maximum(bright.mean(0), 1.0)
    return -np.log(np.clip(rgb / white, 1e-3, 1.0)).sum(-1)


def cell_region(od: np.ndarray, t_lo: float, nucleus: np.ndarray) -> tuple[float | None, np.ndarray]:
    """Equivalent diameter of the stained region holding the nucleus (cut from touching red cells by an opening),
    and that region."""
    # scipy and scikit-image come with the model extra; data/ is imported without them (the study app)
    from scipy import ndimage as ndi
    from skimage.morphology import disk

    stained = ndi.binary_fill_holes((od > t_lo) | nucleus)
    r_nuc = math.sqrt(nucleus.sum() / math.pi)
    radius = max(1, int(round(0.35 * r_nuc)))
    opened = ndi.binary_opening(stained, structure=disk(radius)) | nucleus
    lab, _ = ndi.label(opened)
    ids = np.unique(lab[nucleus])
    ids = ids[ids > 0]
    if not len(ids):
        return None, nucleus
    cell = ndi.binary_fill_holes(np.isin(lab, ids))
    return 2 * math.sqrt(cell.sum() / math.pi), cell


def compartments(rgb: np.ndarray) -> dict[str, np.ndarray] | None:
    """Masks of a framed, centred cell image: ``nucleus`` (the darkest of three Otsu levels, in the blobs at the
    centre), ``cytoplasm`` (the rest of the white cell) and ``other`` (outside it: red cells, platelets, background).
    None for an image with no such structure (flat, or nothing dark near the centre)."""
    # scipy and scikit-image: model extra only (see cell_region)
    from scipy import ndimage as ndi
    from skimage.filters import threshold_multiotsu

    od = optical_density(np.asarray(rgb, dtype=np.float64)[..., :3])
    try:
        t_lo, t_hi = threshold_multiotsu(od, classes=3)
    except ValueError:  # a flat image
        return None
    h, w = od.shape
    dark = ndi.binary_opening(od > t_hi, iterations=1)
    yy, xx = np.mgrid[:h, :w]
    central = np.hypot(yy - (h - 1) / 2, xx - (w - 1) / 2) < CENTRAL * min(h, w)
    groups, _ = ndi.label(ndi.binary_dilation(dark, iterations=max(1, int(0.06 * min(h, w)))))
    ids = np.unique(groups[central & dark])
    nucleus = np.isin(groups, ids[ids > 0]) & dark
    if not nucleus.any():
        return None
    _, cell = cell_region(od, t_lo, nucleus)
    return {"nucleus": nucleus, "cytoplasm": cell & ~nucleus, "other": ~ndi.binary_dilation(cell, iterations=2)}
