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
says as much about its cell type (a basophil is dark all over) as about the lab. And they are taken per compartment
of the framed cell (:func:`.cell_mask.compartments`: nucleus, cytoplasm, the rest — red cells, platelets), and a
set's compartments are weighted by the training images' shares of stained pixels, on both sides: over all stained
pixels at once the moment is a mix, moved by how much of each image is white cell and of which type (PBC's fields are
mostly red cells, another lab's tight crops mostly the white cell; PBC's platelet images alone read at 0.24× the
trace: docs/real-images.md). Re-weighted, the training images' own moment is unchanged and another set's is compared
as if it held the training images' proportions. Records measured before hold the all-pixel moment only and are
mapped with it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from PIL import Image

from .cell_mask import compartments

STAINED_OD = 0.15        # summed optical density above which a pixel counts as stained (Macenko's β, 0.15, is a
                         # floor on every channel; a sum keeps pale single-stain pixels such as pink cytoplasm)
BRIGHTEST = 0.9          # quantile of an image's brightness above which its pixels are taken as background
MIN_STAINED = 200        # stained pixels needed for a set's second moment
AUTO_DELTA_E = 5.0       # "auto": a set is normalised when its background differs from the training images' by more
                         # than this (CIELAB ΔE76; just noticeable ≈ 2.3). Measured: PBC sets of any one class
                         # ≤ 0.7, tecom_wbc 26.4, bccd_wbc 18.0. The background is the one statistic a set's mix
                         # of cell types does not move (the OD moment does: platelets alone 0.25×, basophils 1.4×)
COMPARTMENTS = ("nucleus", "cytoplasm", "other")   # of a framed cell (.cell_mask.compartments)
STAIN_PX = 128           # images are measured at this size: the second moment of OD falls as an image is shrunk
                         # (edges average out: 17 % lower at 32 px than at 128 on PBC), so a set and its target
                         # must be measured alike


Moment = tuple[tuple[float, float, float], ...]


@dataclass(frozen=True)
class StainStatistics:
    """A set's light and stain: background colour (RGB, 0–255), the 3×3 second moment of the stained pixels' OD, and
    that moment per compartment of the cell (``compartments``: name -> 3×3) with the compartment's share of the
    stained pixels (``shares``); both empty in records measured before."""
    background: tuple[float, float, float]
    od_moment: Moment
    n_images: int = 0
    compartments: dict[str, Moment] = field(default_factory=dict)
    shares: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        def rounded(m: Moment) -> list[list[float]]:
            return [[round(float(v), 5) for v in row] for row in m]

        return {"background": [round(float(v), 2) for v in self.background], "od_moment": rounded(self.od_moment),
                "compartments": {k: rounded(m) for k, m in self.compartments.items()},
                "compartment_shares": {k: round(float(v), 4) for k, v in self.shares.items()},
                "n_images": int(self.n_images)}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "StainStatistics | None":
        if not d:
            return None
        moments = {"od_moment": d["od_moment"], **(d.get("compartments") or {})}
        arrays = {k: np.asarray(m, dtype=float) for k, m in moments.items()}
        if any(a.shape != (3, 3) for a in arrays.values()) or len(d["background"]) != 3:
            raise ValueError("stain statistics need a background of 3 values and 3×3 moments (od_moment, "
                             "compartments)")
        as_moment = {k: tuple(tuple(float(v) for v in r) for r in a) for k, a in arrays.items()}
        shares = {k: float(v) for k, v in (d.get("compartment_shares") or {}).items()}
        if set(shares) != set(as_moment) - {"od_moment"}:
            raise ValueError("stain statistics need a compartment_shares entry for each of their compartments")
        return cls(tuple(float(v) for v in d["background"]), as_moment.pop("od_moment"), int(d.get("n_images", 0)),
                   as_moment, shares)

    def moment(self, weights: dict[str, float] | None = None) -> np.ndarray:
        """The second moment over the compartments in ``weights`` (name -> weight, normalised here), or over all
        stained pixels (None or empty)."""
        if not weights:
            return np.asarray(self.od_moment)
        total = sum(weights.values())
        return sum(w / total * np.asarray(self.compartments[k]) for k, w in weights.items())


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
    """The light and stain of a set of framed cell images (RGB uint8 arrays or PIL images, measured at
    :data:`STAIN_PX`): over all stained pixels and per compartment of the cell; see the module docstring."""
    images = [at_stain_px(im) for im in images]
    if not images:
        raise ValueError("stain statistics need at least one image")
    background = np.median([image_background(im) for im in images], 0)
    totals = {k: np.zeros((3, 3)) for k in ("stained", *COMPARTMENTS)}
    counts = dict.fromkeys(totals, 0)
    for im in images:
        od = channel_od(im, background)
        stained = od.sum(-1) > STAINED_OD
        masks = compartments(im) or {}
        for k, mask in {"stained": stained, **{c: m & stained for c, m in masks.items()}}.items():
            v = od[mask]
            totals[k] += v.T @ v
            counts[k] += len(v)
    if counts["stained"] < MIN_STAINED:
        raise ValueError(f"only {counts['stained']} stained pixels in {len(images)} images: too few to measure a "
                         "stain (are these images of stained cells?)")

    def moment(k: str) -> Moment:
        return tuple(tuple(float(v) for v in r) for r in totals[k] / counts[k])

    kept = [k for k in COMPARTMENTS if counts[k] >= MIN_STAINED]
    return StainStatistics(tuple(float(v) for v in background), moment("stained"), len(images),
                           {k: moment(k) for k in kept}, {k: counts[k] / counts["stained"] for k in kept})


def background_difference(a: StainStatistics, b: StainStatistics) -> float:
    """CIELAB ΔE76 between two sets' background colours: how differently they were lit and white-balanced."""
    from skimage.color import rgb2lab  # scikit-image: model extra only (data/ is imported by the study app)

    lab = rgb2lab(np.asarray([[a.background, b.background]], dtype=np.float64) / 255.0)[0]
    return float(np.linalg.norm(lab[0] - lab[1]))


def _sqrtm(sym: np.ndarray, inverse: bool = False) -> np.ndarray:
    w, v = np.linalg.eigh(sym)
    w = np.maximum(w, 1e-8 * max(float(w.max()), 1e-12))
    return (v * w ** (-0.5 if inverse else 0.5)) @ v.T


def compartment_weights(source: StainStatistics, target: StainStatistics) -> dict[str, float]:
    """The compartments both sets were measured in, each weighted by its share of the target's stained pixels
    (empty where either record predates compartments: then all stained pixels are compared)."""
    return {k: target.shares[k] for k in COMPARTMENTS if k in source.compartments and k in target.compartments}


def od_map(source: StainStatistics, target: StainStatistics) -> np.ndarray:
    """The 3×3 matrix M with M Σ_source Mᵀ = Σ_target, M = Σ_t^½ Σ_s^-½, Σ the second moment of OD over the
    compartments both sets were measured in, in the target's proportions (:func:`compartment_weights`)."""
    weights = compartment_weights(source, target)
    return _sqrtm(target.moment(weights)) @ _sqrtm(source.moment(weights), inverse=True)


def normalise_stain(image, source: StainStatistics, target: StainStatistics) -> np.ndarray:
    """One image of the set ``source`` describes, in the light and stain of ``target``. (H, W, 3) uint8 out."""
    od = channel_od(image, source.background) @ od_map(source, target).T
    rgb = (np.asarray(target.background) + 1.0) * np.exp(-od) - 1.0
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)
