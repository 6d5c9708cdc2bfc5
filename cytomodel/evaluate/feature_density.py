"""A baseline CNN's feature density: how far a cell's penultimate features lie from every trained class's.

Why: 1 − max softmax saturates for a cell the CNN calls confidently, whatever it is; a cell of a class it never saw
is often called confidently. Its features, though, lie away from every class's. The statistic is the *relative*
Mahalanobis distance of Ren et al. (2021, "A simple fix to Mahalanobis distance for improving near-OOD detection"):
min over classes of the distance from the class mean under the shared within-class covariance (Lee et al. 2018),
minus the distance from the mean of all training cells under their covariance — which removes the directions in
which every cell varies (stain, size) and keeps those that separate classes. Fitted on the baseline's training
cells; as the baseline's part of the diffusion classifier's anomaly score it ranked both held-out classes better on
validation cells than 1 − max softmax (docs/classifier.md).

The density also keeps its training cells' features, unit length in float16, for the *nearest-neighbour* distance of
Sun et al. (2022, "Out-of-distribution detection with deep nearest neighbors"): the cosine distance to the k-th
nearest training cell. It assumes no shape of the classes' clouds; on validation cells it ranked promyelocytes (the ig
subtype nearest a blast) far better than the Mahalanobis distance and, inside the diffusion classifier's combined
score, lifted the sensitivity to both held-out classes (docs/classifier.md).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from safetensors.numpy import load_file, save_file

from ..classify.config import FIT_DENSITY
from ..classify.novelty import inverse_covariance, squared_mahalanobis

DENSITY_FILE = "feature_density.safetensors"
NEIGHBOURS_K = 10   # the k-th nearest training cell: 1-50 ranked validation cells alike (docs/classifier.md)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _precision(x: np.ndarray) -> np.ndarray:
    """Inverse covariance, ridged by 1e-6 of its mean variance so that a constant feature (a dead unit) is harmless."""
    return inverse_covariance(x, 1e-6 / x.shape[1])


@dataclass
class FeatureDensity:
    """Class means and the shared within-class precision of a baseline's features, and the background (all cells')
    mean and precision; :meth:`distance` is the relative Mahalanobis distance. ``neighbours``: the training cells'
    features at unit length (float16; None in a density fitted before they were kept), for
    :meth:`neighbour_distance`."""
    class_names: list[str]
    means: np.ndarray                    # (C, D)
    precision: np.ndarray                # (D, D) shared within-class
    background_mean: np.ndarray          # (D,)
    background_precision: np.ndarray     # (D, D)
    record: dict[str, Any] = field(default_factory=dict)
    neighbours: np.ndarray | None = None  # (N, D) float16, unit length

    @classmethod
    def fit(cls, features: np.ndarray, labels: Sequence[int], class_names: Sequence[str],
            record: dict[str, Any] | None = None) -> "FeatureDensity":
        """``features`` (N, D) of labelled cells, ``labels`` indices into ``class_names``."""
        x = np.asarray(features, dtype=np.float64)
        y = np.asarray(labels)
        if x.ndim != 2 or len(x) != len(y):
            raise ValueError(f"expected (N, D) features and N labels, got {x.shape} and {len(y)}")
        counts = np.bincount(y, minlength=len(class_names))
        if (counts < 2).any():
            lacking = [c for c, n in zip(class_names, counts) if n < 2]
            raise ValueError(f"a feature density needs at least 2 cells of every class; too few of {lacking}")
        if len(x) < 2 * x.shape[1]:
            raise ValueError(f"{len(x)} cells are too few for a covariance of {x.shape[1]} features "
                             f"(at least {2 * x.shape[1]})")
        means = np.stack([x[y == k].mean(axis=0) for k in range(len(class_names))])
        return cls(list(class_names), means, _precision(x - means[y]), x.mean(axis=0), _precision(x),
                   {**(record or {}), "n": int(len(x)), "per_class": {c: int(n) for c, n in zip(class_names, counts)},
                    "rule": "relative Mahalanobis (Ren et al. 2021): min over classes minus the background's",
                    "neighbours": {"k": NEIGHBOURS_K, "rule": "cosine distance to the k-th nearest training cell "
                                   "(Sun et al. 2022)"}},
                   _unit(x).astype(np.float16))

    def distance(self, features: np.ndarray) -> np.ndarray:
        """(N,) min over classes of the squared Mahalanobis distance minus the background's (higher = less like any
        trained class)."""
        x = np.asarray(features, dtype=np.float64)
        per_class = np.stack([squared_mahalanobis(x, m, self.precision) for m in self.means], axis=1)
        return per_class.min(axis=1) - squared_mahalanobis(x, self.background_mean, self.background_precision)

    @property
    def k(self) -> int:
        """Which nearest training cell :meth:`neighbour_distance` measures to."""
        return int((self.record.get("neighbours") or {}).get("k", NEIGHBOURS_K))

    def neighbour_distance(self, features: np.ndarray, chunk: int = 512) -> np.ndarray:
        """(N,) cosine distance of each cell's features to its k-th nearest training cell's (higher = less like any
        cell the baseline was trained on)."""
        if self.neighbours is None:
            raise ValueError(f"this feature density keeps no training features (fitted before they were kept): "
                             f"{FIT_DENSITY}")
        ref = self.neighbours.astype(np.float32)
        k = min(self.k, len(ref))
        x = _unit(np.asarray(features, dtype=np.float32))
        out = np.empty(len(x), np.float64)
        for b in range(0, len(x), chunk):
            sim = x[b:b + chunk] @ ref.T
            out[b:b + chunk] = 1.0 - np.partition(sim, -k, axis=1)[:, -k]
        return out

    def fingerprint(self) -> str:
        """sha256 of the fitted arrays: which density a reference was fitted with."""
        h = hashlib.sha256()
        for a in (self.means, self.precision, self.background_mean, self.background_precision):
            h.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
        if self.neighbours is not None:
            h.update(np.ascontiguousarray(self.neighbours).tobytes())
        return h.hexdigest()

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / DENSITY_FILE
        arrays = {"means": self.means, "precision": self.precision, "background_mean": self.background_mean,
                  "background_precision": self.background_precision}
        if self.neighbours is not None:
            arrays["neighbours"] = self.neighbours
        save_file(arrays, str(path))
        return path

    @classmethod
    def load(cls, folder: str | Path, class_names: Sequence[str], record: dict[str, Any]) -> "FeatureDensity":
        t = load_file(str(Path(folder) / DENSITY_FILE))
        if t["means"].shape[0] != len(class_names):
            raise ValueError(f"{folder}/{DENSITY_FILE} has {t['means'].shape[0]} class means for "
                             f"{len(class_names)} classes: fit it again with `cytomodel baseline fit-density`")
        return cls(list(class_names), t["means"], t["precision"], t["background_mean"], t["background_precision"],
                   dict(record), t.get("neighbours"))
