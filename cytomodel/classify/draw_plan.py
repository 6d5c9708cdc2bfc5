"""Per-image noise-draw plans (seeded timesteps, noise and dihedral views) and the adaptive strategies' decisions
(paired means, paired t-test and top-k pruning). A *draw* is one (t, ε, view) shared by every class still evaluated
for an image; the config's ``trials`` and the tables' ``trials`` column count them. See :mod:`cytomodel.classify` for
the method."""
from __future__ import annotations

import hashlib
import math
import warnings
from typing import Sequence

import numpy as np
import torch

from .config import PLAN_LENGTH, ClassifierConfig


def image_seed(image: np.ndarray, seed: int) -> int:
    """A 63-bit seed from an image's pixels and a run seed: the same image gets the same draws anywhere."""
    h = hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=8, key=str(int(seed)).encode()[:64])
    return int.from_bytes(h.digest(), "little") & ((1 << 63) - 1)


def _van_der_corput(n: int) -> np.ndarray:
    out = np.zeros(n)
    for i in range(n):
        k, denom, x = i, 1.0, 0.0
        while k:
            denom *= 2
            x += (k & 1) / denom
            k >>= 1
        out[i] = x
    return out


def draw_plan(image: np.ndarray, cfg: ClassifierConfig, num_train_timesteps: int
               ) -> tuple[torch.Generator, np.ndarray, np.ndarray]:
    """(noise generator, timesteps (K,), dihedral view ids (K,)) for one image."""
    g = torch.Generator().manual_seed(image_seed(image, cfg.seed))
    # plan at least PLAN_LENGTH draws so that runs with different `trials` share their first draws exactly (an
    # adaptive run is then a subset of an exhaustive one: see replay_strategy)
    k = max(cfg.trials, PLAN_LENGTH)
    lo, hi = cfg.t_min, min(cfg.t_max, num_train_timesteps - 1)
    if cfg.timestep_selection == "random":
        ts = torch.randint(lo, hi + 1, (k,), generator=g).numpy()
    elif cfg.timestep_selection == "stratified":
        grid = np.linspace(lo, hi, k)
        ts = grid[torch.randperm(k, generator=g).numpy()]
    else:  # vdc: every prefix is spread over the range; a random rotation per image
        u = float(torch.rand((), generator=g))
        frac = (_van_der_corput(k) + u) % 1.0
        ts = lo + frac * (hi - lo)
    views = torch.randint(0, 8, (k,), generator=g).numpy() if cfg.tta else np.zeros(k, dtype=np.int64)
    return g, np.rint(ts[:cfg.trials]).astype(np.int64), views[:cfg.trials].astype(np.int64)


def dihedral(x: torch.Tensor, view: int, inverse: bool = False) -> torch.Tensor:
    """One of the 8 flips/rotations of (…, H, W); ``inverse`` undoes it."""
    r, f = view % 4, view >= 4
    if not inverse:
        if f:
            x = x.flip(-1)
        return torch.rot90(x, r, (-2, -1)) if r else x
    if r:
        x = torch.rot90(x, -r, (-2, -1))
    return x.flip(-1) if f else x


class _ImageState:
    __slots__ = ("gen", "ts", "views", "active", "k", "done", "calls")

    def __init__(self, gen, ts, views, n_classes):
        self.gen, self.ts, self.views = gen, ts, views
        self.active = list(range(n_classes))
        self.k = 0          # draws done
        self.done = False
        self.calls = 0


def _paired_means(draw_err: np.ndarray, k: int, active: Sequence[int]) -> tuple[np.ndarray, int]:
    """Paired-adjusted mean errors over the first k draws (C,), and the reference class (best active)."""
    e = draw_err[:k]
    act = list(active)
    ref = act[int(np.argmin(np.nanmean(e[:, act], axis=0)))]
    base = np.nanmean(e[:, ref])
    diff = e - e[:, [ref]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        adj = base + np.nanmean(diff, axis=0)
    return adj, ref


def _ttest_prune(draw_err: np.ndarray, k: int, active: list[int], p_value: float) -> list[int]:
    """Drop active classes whose paired errors are significantly (two-sided p < p_value) worse than the best's."""
    from scipy import stats  # scipy: only the paired-ttest strategy needs it (~0.5 s to import)

    means, ref = _paired_means(draw_err, k, active)
    keep = [ref]
    for c in active:
        if c == ref:
            continue
        d = draw_err[:k, c] - draw_err[:k, ref]
        d = d[~np.isnan(d)]
        n = len(d)
        if n < 2:
            keep.append(c)
            continue
        sd = d.std(ddof=1)
        if sd == 0:
            p = 0.0 if d.mean() != 0 else 1.0
        else:
            tstat = d.mean() / (sd / math.sqrt(n))
            p = 2 * stats.t.sf(abs(tstat), n - 1)
        if not (p < p_value and d.mean() > 0):
            keep.append(c)
    return sorted(keep)


def _next_decision(state: _ImageState, cfg: ClassifierConfig) -> int:
    """The draw count at which this image's active set may change next (or its last draw)."""
    if cfg.strategy == "exhaustive":
        return cfg.trials
    if cfg.strategy == "topk":
        for n, _ in cfg.topk_schedule:
            if n > state.k:
                return min(n, cfg.trials)
        return cfg.trials
    if state.k < cfg.min_trials:
        return min(cfg.min_trials, cfg.trials)
    return min(state.k + cfg.test_every, cfg.trials)


def _decide(state: _ImageState, draw_err: np.ndarray, cfg: ClassifierConfig) -> None:
    if state.k >= cfg.trials:
        state.done = True
        return
    if cfg.strategy == "topk":
        keep = None
        for n, kk in cfg.topk_schedule:
            if n == state.k:
                keep = kk
        if keep is not None and keep < len(state.active):
            means, _ = _paired_means(draw_err, state.k, state.active)
            order = sorted(state.active, key=lambda c: (means[c], c))
            state.active = sorted(order[:keep])
    elif cfg.strategy == "paired-ttest" and state.k >= cfg.min_trials:
        state.active = _ttest_prune(draw_err, state.k, state.active, cfg.p_value)
    if len(state.active) <= 1:
        state.done = True
