"""Two-sided rank AUROCs and a max-statistic permutation test, shared by the leak audit and the confound check.

For each feature the AUROC of real vs synthetic (ties averaged; a constant feature gives exactly 0.5) is folded to
``0.5 + |AUROC - 0.5|``: a feature that separates the sources either way counts. A group's statistic is its
largest folded AUROC; its p-value comes from the same statistic under label permutations (which controls the
error over all the group's features), and groups are then corrected together by Holm's method.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _ranks(X: np.ndarray) -> np.ndarray:
    """Column-wise average ranks (1-based) with ties averaged."""
    n, f = X.shape
    out = np.empty((n, f))
    for j in range(f):
        col = X[:, j]
        order = np.argsort(col, kind="mergesort")
        sorted_col = col[order]
        ranks = np.empty(n)
        i = 0
        while i < n:
            k = i
            while k + 1 < n and sorted_col[k + 1] == sorted_col[i]:
                k += 1
            ranks[order[i:k + 1]] = (i + k) / 2.0 + 1.0
            i = k + 1
        out[:, j] = ranks
    return out


def aurocs(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """AUROC of each column of X for y == 1 vs y == 0 (probability that a 1 ranks above a 0)."""
    R = _ranks(np.asarray(X, dtype=float))
    n1 = int(y.sum())
    n0 = len(y) - n1
    return (R[y == 1].sum(axis=0) - n1 * (n1 + 1) / 2.0) / (n1 * n0)


@dataclass
class GroupTest:
    auroc: float              # folded: 0.5 + max |AUROC - 0.5| over the group's features
    feature: str | None       # the feature that reaches it
    direction: str            # "synthetic higher" / "synthetic lower" / "none"
    p_value: float            # permutation p of the group's statistic
    p_holm: float = 1.0       # after Holm's correction over the groups


def permutation_tests(X: np.ndarray, y: np.ndarray, groups: dict[str, list[int]], names: list[str],
                      n_permutations: int, seed: int) -> dict[str, GroupTest]:
    """One :class:`GroupTest` per group (column indices into X), the same permutations for every group."""
    X = np.asarray(X, dtype=float)
    R = _ranks(X)
    n1, n = int(y.sum()), len(y)
    n0 = n - n1
    base = n1 * (n1 + 1) / 2.0
    rng = np.random.default_rng(seed)
    perms = np.stack([rng.permutation(y) for _ in range(n_permutations)])          # (B, n)
    null_auc = (perms @ R - base) / (n1 * n0)                                       # (B, f)
    obs = (R[y == 1].sum(axis=0) - base) / (n1 * n0)
    out = {}
    for g, cols in groups.items():
        if not cols:
            continue
        dev = np.abs(obs[cols] - 0.5)
        j = int(np.argmax(dev))
        stat = float(dev[j])
        null = np.abs(null_auc[:, cols] - 0.5).max(axis=1)
        p = (1 + int(np.sum(null >= stat - 1e-12))) / (1 + n_permutations)
        direction = "none" if stat == 0 else ("synthetic higher" if obs[cols][j] > 0.5 else "synthetic lower")
        out[g] = GroupTest(round(0.5 + stat, 4), names[cols[j]] if stat > 0 else None, direction, round(p, 5))
    holm(out)
    return out


def holm(tests: dict[str, GroupTest]) -> None:
    """Holm's step-down adjustment of the groups' p-values (in place)."""
    order = sorted(tests, key=lambda g: tests[g].p_value)
    m, running = len(order), 0.0
    for i, g in enumerate(order):
        running = max(running, min(1.0, (m - i) * tests[g].p_value))
        tests[g].p_holm = round(running, 5)
