"""The map's settings (torch-, pandas- and scikit-learn-free, so the command line's parser reads their defaults
without loading them)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ClusterSettings:
    """How cells inside one class are clustered (seeded; the same settings and seed give the same clusters)."""
    n_components: int = 5             # UMAP dimensions the clusters are found in
    n_neighbors: int = 15
    min_cluster_size: int | None = None   # None: max(5, 8 % of the cells)
    min_samples: int | None = None        # None: HDBSCAN's default (min_cluster_size)

    def cluster_size(self, n: int) -> int:
        return int(self.min_cluster_size) if self.min_cluster_size else max(5, int(np.ceil(0.08 * n)))


@dataclass
class MapConfig:
    """Everything that decides the map's numbers (recorded in ``provenance.json``)."""
    split: str | None = None
    per_class: int | None = 100            # cells per class (seeded sample); None: all
    classes: tuple[str, ...] | None = None  # only these labels (default: every label of the data)
    seed: int = 0
    noise_levels: tuple[int, ...] = (100,)  # one diffusion representation per timestep
    draws: int = 4                          # noise draws averaged per cell
    precision: str = "fp32"
    errors: bool = False                    # also the per-class denoising-error profile (slower)
    error_trials: int = 8
    error_precision: str = "bf16"
    pixels: bool = True
    lab_condition: str = "none"
    runs: int = 10                          # reruns (seed, subsample) for stability
    subsample: float = 0.8
    n_components: int = 5
    n_neighbors: int = 15
    min_cluster_size: int | None = None
    min_samples: int | None = None
    knn_k: int = 5
    folds: int = 5
    permutations: int = 1000
    min_per_subtype: int = 5
    stable_jaccard: float = 0.75            # Hennig's "stable" threshold
    typical: int = 18                       # cells per contact sheet
    subtype_column: str = "subtype"
    thumb_px: int = 64
    um_per_px: float | None = None
    stain: str = "none"

    def validate(self) -> "MapConfig":
        def bad(name: str, why: str) -> None:
            raise ValueError(f"map setting '{name}': {why} (got {getattr(self, name)!r})")

        if self.per_class is not None and self.per_class < 2:
            bad("per_class", "need at least 2 cells per class (about 100 for clusters that mean something)")
        if not self.noise_levels and not self.errors and not self.pixels:
            bad("noise_levels", "no representation left: give a noise level, errors or pixels")
        if self.draws < 1 or self.error_trials < 1:
            bad("draws", "draws and error_trials must be >= 1")
        if self.runs < 0:
            bad("runs", "must be >= 0")
        if not 0 < self.subsample <= 1:
            bad("subsample", "must be in (0, 1]")
        if self.folds < 2 or self.knn_k < 1 or self.min_per_subtype < 2:
            bad("folds", "folds >= 2, knn_k >= 1 and min_per_subtype >= 2")
        if not 0 < self.stable_jaccard <= 1:
            bad("stable_jaccard", "must be in (0, 1]")
        for p in ("precision", "error_precision"):
            if getattr(self, p) not in ("fp32", "bf16"):
                bad(p, "use fp32 or bf16")
        self.noise_levels = tuple(int(t) for t in self.noise_levels)
        self.classes = tuple(self.classes) if self.classes else None
        return self

    def settings(self) -> ClusterSettings:
        return ClusterSettings(self.n_components, self.n_neighbors, self.min_cluster_size, self.min_samples)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
