"""Content confounds: simple image statistics that could tell real from generated cells without any morphology.

A separate check from the leak audit (which looks at everything *but* the pixels). Per stimulus, from the PNG as
the browser gets it: stain colour (mean R, G, B of the whole image and of its dark, nuclear pixels), dark-pixel
area (the share of pixels darker than one Otsu threshold of the pooled luminance: the nucleus' size, which a wrong
crop changes first) and sharpness (variance of the Laplacian of the luminance). Each is compared between the real
and the fully generated stimuli by a two-sided AUROC with a permutation p-value (:mod:`.stats`).

A study whose generated cells differ from the real ones in stain or sharpness may still be a fair test of the
model, but the report has to say so; a large dark-area difference usually means the real images were framed
differently from the model's training images (see :mod:`study_app.build.framing`), and the check suggests the
crop that would match. By default the check reports; ``stimuli.confound_auroc_max`` makes it fail the build.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from .stats import permutation_tests

ALPHA = 0.01
WARN_AUROC = 0.75
STATISTICS = ("mean_r", "mean_g", "mean_b", "dark_r", "dark_g", "dark_b", "dark_area", "sharpness")


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def otsu_threshold(values: np.ndarray) -> float:
    """Otsu's threshold of luminance values in [0, 255]."""
    hist, edges = np.histogram(values, bins=256, range=(0, 256))
    p = hist / max(1, hist.sum())
    omega, mu = np.cumsum(p), np.cumsum(p * np.arange(256))
    between = (mu[-1] * omega - mu) ** 2 / np.maximum(omega * (1 - omega), 1e-12)
    return float(edges[int(np.argmax(between))])


def _laplacian_variance(y: np.ndarray) -> float:
    lap = -4 * y[1:-1, 1:-1] + y[:-2, 1:-1] + y[2:, 1:-1] + y[1:-1, :-2] + y[1:-1, 2:]
    return float(lap.var())


def content_statistics(manifest: pd.DataFrame, study_dir: str | Path) -> pd.DataFrame:
    """The statistics of the module docstring, one row per stimulus (index: stimulus id)."""
    study_dir = Path(study_dir)
    images = [np.asarray(Image.open(io.BytesIO((study_dir / f).read_bytes())).convert("RGB"), dtype=np.float64)
              for f in manifest["file"]]
    lum = [_luminance(im) for im in images]
    t = otsu_threshold(np.concatenate([y[::4, ::4].ravel() for y in lum]))
    rows = []
    for im, y in zip(images, lum):
        dark = y < t
        dm = im[dark].mean(axis=0) if dark.any() else np.full(3, np.nan)
        mean = im.reshape(-1, 3).mean(axis=0)
        rows.append({"mean_r": mean[0], "mean_g": mean[1], "mean_b": mean[2], "dark_r": dm[0], "dark_g": dm[1],
                     "dark_b": dm[2], "dark_area": float(dark.mean()), "sharpness": _laplacian_variance(y)})
    out = pd.DataFrame(rows, index=manifest["stimulus_id"].to_numpy()).fillna(-1.0)
    out.attrs["dark_threshold"] = t
    return out


@dataclass
class ConfoundResult:
    n_real: int
    n_synthetic: int
    auroc: dict[str, float]
    p_value: dict[str, float]
    direction: dict[str, str]
    median_real: dict[str, float]
    median_synthetic: dict[str, float]
    threshold: float | None          # None: report only
    passed: bool
    flagged: list[str] = field(default_factory=list)
    suggested_crop: float | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"n_real": self.n_real, "n_synthetic": self.n_synthetic, "auroc": self.auroc,
                "p_value": self.p_value, "direction": self.direction, "median_real": self.median_real,
                "median_synthetic": self.median_synthetic, "threshold": self.threshold, "alpha": ALPHA,
                "passed": self.passed, "flagged": self.flagged, "suggested_crop_fraction": self.suggested_crop,
                "notes": self.notes, "method": __doc__.split("\n\n")[0].strip()}

    def summary(self) -> str:
        worst = max(self.auroc, key=self.auroc.get)
        verdict = ("FAIL" if not self.passed else "flagged" if self.flagged else "none flagged")
        return (f"content confounds {verdict}: real vs fully generated ({self.n_real} vs {self.n_synthetic}); "
                f"largest two-sided AUROC {self.auroc[worst]:.3f} ({worst}, {self.direction[worst]}, "
                f"p {self.p_value[worst]:.3g}); dark-pixel area {self.auroc['dark_area']:.3f}"
                + (f"; flagged: {', '.join(self.flagged)}" if self.flagged else ""))


def confound_check(manifest: pd.DataFrame, study_dir: str | Path, crop_fraction: float | None = None,
                   threshold: float | None = None, seed: int = 0, n_permutations: int = 2000) -> ConfoundResult:
    """Real vs fully generated stimuli on the content statistics (module docstring)."""
    use = manifest[(manifest["source"] == "real") | (manifest["morph_strength"] >= 1.0)].reset_index(drop=True)
    y = (use["source"].to_numpy() == "synthetic").astype(int)
    stats = content_statistics(use, study_dir)
    cols = list(stats.columns)
    tests = permutation_tests(stats.to_numpy(), y, {c: [i] for i, c in enumerate(cols)}, cols, n_permutations, seed)
    med_r = {c: round(float(stats[c][y == 0].median()), 4) for c in cols}
    med_s = {c: round(float(stats[c][y == 1].median()), 4) for c in cols}
    limit = WARN_AUROC if threshold is None else threshold
    flagged = [c for c, t in tests.items() if t.auroc > limit and t.p_holm < ALPHA]
    suggested = None
    if crop_fraction and med_r["dark_area"] > 0 and med_s["dark_area"] > 0:
        # the nucleus' area scales as 1 / crop^2: the crop at which real nuclei would match generated ones
        suggested = round(crop_fraction * math.sqrt(med_r["dark_area"] / med_s["dark_area"]), 4)
    notes = [f"dark-pixel threshold (Otsu, pooled luminance): {stats.attrs['dark_threshold']:.0f} of 255"]
    if "dark_area" in flagged and suggested is not None:
        notes.append(f"real nuclei cover a median {med_r['dark_area']:.3f} of the image, generated ones "
                     f"{med_s['dark_area']:.3f}: the real images may be framed differently from the model's "
                     f"training images (crop {crop_fraction:g} used; about {suggested:g} would match)")
    return ConfoundResult(int((y == 0).sum()), int((y == 1).sum()), {c: t.auroc for c, t in tests.items()},
                          {c: t.p_holm for c, t in tests.items()}, {c: t.direction for c, t in tests.items()},
                          med_r, med_s, threshold, threshold is None or not flagged, flagged, suggested, notes)
