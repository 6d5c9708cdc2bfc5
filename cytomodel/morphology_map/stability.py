"""Stable candidates: clusters inside a class that come back when the clustering is redone with other seeds on
subsamples of the cells (Hennig 2007, "Cluster-wise assessment of cluster stability": a cluster's stability is its
mean Jaccard similarity with the most similar cluster of each rerun, over the cells the rerun saw; ≥ 0.75 is
"stable"). A cell's typicality is how often the reruns put it with the other members of its cluster. numpy only."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from .check import ClusterSettings, cluster_cells


@dataclass
class ClassClusters:
    """One class in one representation: the reference clustering (all cells, the run's seed) and the reruns."""
    representation: str
    label: str
    members: np.ndarray                       # indices of the class's cells among all cells
    reference: np.ndarray                     # cluster of each member (-1 = noise)
    runs: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)   # (member positions, clusters)

    def stability(self) -> dict[int, float]:
        """{reference cluster: mean best Jaccard over the reruns} (clusters of the reference only, noise excluded)."""
        out = {}
        for c in sorted(set(self.reference.tolist()) - {-1}):
            scores = []
            for sub, cl in self.runs:
                a = self.reference[sub] == c
                if not a.any():
                    continue
                best = 0.0
                for d in set(cl.tolist()) - {-1}:
                    b = cl == d
                    best = max(best, float((a & b).sum() / (a | b).sum()))
                scores.append(best)
            out[c] = float(np.mean(scores)) if scores else float("nan")
        return out

    def coassignment(self) -> np.ndarray:
        """(n, n): the share of reruns that saw both cells in which they fell in one (non-noise) cluster."""
        n = len(self.members)
        both = np.zeros((n, n))
        together = np.zeros((n, n))
        for sub, cl in self.runs:
            both[np.ix_(sub, sub)] += 1
            same = (cl[:, None] == cl[None, :]) & (cl[:, None] != -1)
            together[np.ix_(sub, sub)] += same
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(both > 0, together / np.maximum(both, 1), np.nan)

    def typicality(self) -> np.ndarray:
        """Per member: its mean co-assignment with the other members of its reference cluster (NaN for noise)."""
        co = self.coassignment()
        out = np.full(len(self.members), np.nan)
        for c in set(self.reference.tolist()) - {-1}:
            idx = np.flatnonzero(self.reference == c)
            if len(idx) < 2:
                continue
            block = co[np.ix_(idx, idx)].copy()
            np.fill_diagonal(block, np.nan)
            with np.errstate(invalid="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)        # a cell never seen with its cluster: NaN
                out[idx] = np.nanmean(block, axis=1)
        return out


def cluster_class(x: np.ndarray, representation: str, label: str, members: np.ndarray, seed: int = 0,
                  runs: int = 10, subsample: float = 0.8, settings: ClusterSettings = ClusterSettings()
                  ) -> ClassClusters:
    """The reference clustering of one class's features ``x`` (rows = ``members``) and ``runs`` reruns, each on a
    seeded ``subsample`` of the cells with its own UMAP seed."""
    if not 0 < subsample <= 1:
        raise ValueError(f"subsample must be in (0, 1], got {subsample}")
    n = len(x)
    result = ClassClusters(representation, label, np.asarray(members), cluster_cells(x, seed, settings))
    for b in range(runs):
        rng = np.random.default_rng([seed, b, 22])
        sub = np.sort(rng.choice(n, size=max(2, int(round(subsample * n))), replace=False)) if n > 2 \
            else np.arange(n)
        result.runs.append((sub, cluster_cells(x[sub], seed + 1 + b, settings)))
    return result
