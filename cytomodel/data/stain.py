"""Stain normalisation in optical density, per set of images: another lab's stain and light mapped onto the
training images' before a model sees its cells.

Light passing a stained smear is absorbed per channel: a pixel's optical density, OD = −log(I / I_background), is
(to first order) the stains' concentrations times their colours, and the background — where nothing is stained — has
OD 0 whatever the lamp's colour. So one lab's look differs from another's by the background colour (lamp, white
balance, camera) and by a linear map of OD (stain strength and hue). :func:`measure_stain` records both for a set of
images: the background colour (the median colour of each image's brightest tenth, median over the images) and the
second moment of OD over the stained pixels. :func:`normalise_stain` maps a cell's OD by the symmetric matrix that
carries the set's second moment onto the training images' (without a shift: the background stays at OD 0) and
re-lights it with the training images' background. Unlike Reinhard's colour transfer in CIELAB, a lab's yellow or
grey background does not drag the cells' colours with it, and unlike Macenko's two-stain model the third colour
dimension (eosinophil granules, the pink of a neutrophil's cytoplasm) is kept.

Statistics are taken per set, never per image: a lab's stain shifts all its images alike, while one image's stain
says as much about its cell type (a basophil is dark all over) as about the lab.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from PIL import Image

STAINED_OD = 0.15        # summed optical density above which a pixel counts as stained (Macenko's β, 0.15, is a
                         # floor on every channel; a sum keeps pale single-stain pixels such as pink cytoplasm)
BRIGHTEST = 0.9          # quantile of an image's brightness above which its pixels are taken as background
MIN_STAINED = 200        # stained pixels needed for a set's second moment
AUTO_DELTA_E = 5.0       # "auto": a set is normalised when its background differs from the training images' by more
                         # than this (CIELAB ΔE76; just noticeable ≈ 2.3). Measured: PBC sets of any one class
                         # ≤ 0.7, tecom_wbc 26.4, bccd_wbc 18.0. The background is the one statistic a set's mix
                         # of cell types does not move (the OD moment does: platelets alone 0.25×, basophils 1.4×)
STAIN_PX = 128           # images are measured at this size: the second moment of OD falls as an image is shrunk
                         # (edges average out: 17 % lower at 32 px than at 128 on PBC), so a set and its target
                         # must be measured alike


@dataclass(frozen=True)
class StainStatistics:
    """A set's light and stain: background colour (RGB, 0–255) and the 3×3 second moment of the stained pixels' OD."""
    background: tuple[float, float, float]
    od_moment: tuple[tuple[float, float, float], ...]
    n_images: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"background": [round(float(v), 2) for v in self.background],
                "od_moment": [[round(float(v), 5) for v in row] for row in self.od_moment],
                "n_images": int(self.n_images)}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "StainStatistics | None":
        if not d:
            return None
        moment = np.asarray(d["od_moment"], dtype=float)
        if moment.shape != (3, 3) or len(d["background"]) != 3:
            raise ValueError("stain statistics need a background of 3 values and a 3×3 od_moment")
        return cls(tuple(float(v) for v in d["background"]), tuple(tuple(float(v) for v in r) for r in moment),
                   int(d.get("n_images", 0)))


def _rgb(image) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] < 3:
        raise ValueError(f"stain normalisation needs an RGB image, not an array of shape {arr.shape}")
    return arr[..., :3].astype(np.float64)


def at_stain_px(image) -> np.ndarray:
    """An RGB image resized (Lanczos) so that its short side is :data:`STAIN_PX`, as uint8."""
    img = Image.fromarray(_rgb(image).astype(np.uint8))
    w, h = img.size
    if min(w, h) != STAIN_PX:
        s = STAIN_PX / min(w, h)
        img = img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.LANCZOS)
    return np.asarray(img)


def image_background(image) -> np.ndarray:
    """The background colour of one image: the median colour of its brightest tenth of pixels."""
    px = _rgb(image).reshape(-1, 3)
    grey = px.mean(1)
    return np.median(px[grey >= np.quantile(grey, BRIGHTEST)], 0)


def channel_od(image, background: Sequence[float]) -> np.ndarray:
    """(H, W, 3) optical density of an RGB image against its background colour (0 where unstained)."""
    bg = np.asarray(background, dtype=np.float64)
    return -np.log(np.clip(_rgb(image) + 1.0, 1.0, None) / (bg + 1.0))


def measure_stain(images: Sequence) -> StainStatistics:
    """The light and stain of a set of RGB images (uint8 arrays or PIL images, measured at :data:`STAIN_PX`); see
    the module docstring."""
    images = [at_stain_px(im) for im in images]
    if not images:
        raise ValueError("stain statistics need at least one image")
    background = np.median([image_background(im) for im in images], 0)
    total, count = np.zeros((3, 3)), 0
    for im in images:
        od = channel_od(im, background).reshape(-1, 3)
        stained = od[od.sum(1) > STAINED_OD]
        total += stained.T @ stained
        count += len(stained)
    if count < MIN_STAINED:
        raise ValueError(f"only {count} stained pixels in {len(images)} images: too few to measure a stain "
                         "(are these images of stained cells?)")
    moment = total / count
    return StainStatistics(tuple(float(v) for v in background), tuple(tuple(float(v) for v in r) for r in moment),
                           len(images))


def background_difference(a: StainStatistics, b: StainStatistics) -> float:
    """CIELAB ΔE76 between two sets' background colours: how differently they were lit and white-balanced."""
    from skimage.color import rgb2lab  # scikit-image: model extra only (data/ is imported by the study app)

    lab = rgb2lab(np.asarray([[a.background, b.background]], dtype=np.float64) / 255.0)[0]
    return float(np.linalg.norm(lab[0] - lab[1]))


def _sqrtm(sym: np.ndarray, inverse: bool = False) -> np.ndarray:
    w, v = np.linalg.eigh(sym)
    w = np.maximum(w, 1e-8 * max(float(w.max()), 1e-12))
    return (v * w ** (-0.5 if inverse else 0.5)) @ v.T


def od_map(source: StainStatistics, target: StainStatistics) -> np.ndarray:
    """The 3×3 matrix M with M Σ_source Mᵀ = Σ_target (second moments of OD), M = Σ_t^½ Σ_s^-½."""
    return _sqrtm(np.asarray(target.od_moment)) @ _sqrtm(np.asarray(source.od_moment), inverse=True)


def normalise_stain(image, source: StainStatistics, target: StainStatistics) -> np.ndarray:
    """One image of the set ``source`` describes, in the light and stain of ``target``. (H, W, 3) uint8 out."""
    od = channel_od(image, source.background) @ od_map(source, target).T
    rgb = (np.asarray(target.background) + 1.0) * np.exp(-od) - 1.0
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)
