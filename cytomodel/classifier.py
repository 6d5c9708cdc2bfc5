"""Classification by denoising error (a diffusion classifier, as in Li et al. 2023 and CytoDiffusion).

For an image x and a class c the model's weighted denoising error

    E_c = E_{t, ε} [ w_t · mean_pixels (ε − ε_θ(x_t, t, c))² ],   x_t = √ᾱ_t x + √(1 − ᾱ_t) ε

is (up to constants) a bound on −log p(x | c), so the class with the lowest error is the prediction.

How it is estimated here
------------------------
* **Paired trials.** A trial draws one (t, ε) and one dihedral view of the image (the model was trained with
  flips/rotations) and evaluates *every still-active class* on that same x_t, in one batched UNet call. Class
  differences are therefore paired: the noise common to all classes cancels.
* **Batched.** Many images, each with its own set of active classes, are flattened into (image, class) pairs and
  sent through the UNet together, several trials at a time.
* **Deterministic per image.** Each image's (t, ε, view) sequence comes from a generator seeded by the image's
  pixels and ``seed``, so a result never depends on batch composition, input order or sharding.
* **Timesteps.** ``timestep_selection="vdc"`` (default) spreads trial k's timestep over [t_min, t_max] with a van
  der Corput sequence plus a per-image random offset: every prefix of trials is stratified over noise levels, which
  is what adaptive strategies need. ``"stratified"`` (a shuffled even grid) and ``"random"`` (iid) also exist.
* **Adaptive evaluation** (``strategy``):
  - ``"paired-ttest"`` (CytoDiffusion): after ``min_trials`` and then every ``test_every`` trials, every active class
    whose paired errors are worse than the current best's with a two-sided paired t-test p < ``p_value`` is dropped;
    an image stops when one class is left or after ``trials`` trials.
  - ``"topk"`` (Li et al. 2023): ``topk_schedule`` = ((n₁, k₁), (n₂, k₂), …): after n_i trials keep the k_i classes
    with the lowest mean error; an image stops when one class is left or after ``trials`` trials.
  - ``"exhaustive"``: every class for ``trials`` trials.
  ``unet_calls`` (image–class forward passes) is reported per image.

Per-class errors of pruned classes are *paired-adjusted*: E_c = mean(e_ref) + mean_{trials of c}(e_c − e_ref), where
ref is the final best class (evaluated in every trial). With ``exhaustive`` this is the plain mean.

Outputs
-------
probabilities softmax(−E/T) with the temperature T fitted on validation data by NLL (:func:`fit_temperature`,
``cytomodel calibrate``; a model without T uses T = 1 and says so), confidence = max p, entropy (nats),
margin = p₁ − p₂, and the anomaly score. The anomaly score is −ζ with CytoDiffusion's ζ (their released code,
``zeta_anomaly``): let g_(0) = 0 ≤ g_(1) ≤ … be the sorted gaps E_c − min E, divided by their mean over all classes
(scale-free), and k = min(C − 1, 10); then

    ζ = (1/k) Σ_{j=1}^{k−1} g_(j)  −  1/(k(k−1)) Σ_{j=1}^{k−1} Σ_{l=1}^{k−1} |g_(l) − g_(j)|,

"the mean gap from the best class to the next ones minus their mean spread" (with two classes, the raw gap
E_(1) − E_(0), since the normalised one is constant). A cell unlike every class has no
class that stands out (small ζ), so ``anomaly_score = −ζ`` is high for anomalies.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import math
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
import torch

from .model import CytoModel
from .runtime import autocast

log = logging.getLogger(__name__)

STRATEGIES = ("paired-ttest", "topk", "exhaustive")
SELECTIONS = ("vdc", "stratified", "random")
WEIGHTINGS = ("uniform", "min-snr")
# fields that change the scale of the errors, and so the meaning of a fitted temperature
PLAN_LENGTH = 256
SCALE_FIELDS = ("t_min", "t_max", "weighting", "min_snr_gamma", "tta")


@dataclass
class ClassifierConfig:
    """How errors are estimated. Defaults: chosen on PBC *validation* data with benchmarks/classifier_design.py
    (docs/classifier.md): t in [100, 900] with uniform weights, top-k pruning to 4 classes after 2 trials and to 2
    after 6, at most 24 trials (68 UNet calls for 8 classes)."""
    strategy: str = "topk"                    # "paired-ttest" | "topk" | "exhaustive"
    trials: int = 24                          # maximum trials per image (exactly this many for "exhaustive")
    t_min: int = 100                          # timestep range (inclusive) of the trials
    t_max: int = 900
    timestep_selection: str = "vdc"           # "vdc" | "stratified" | "random"
    weighting: str = "uniform"                # "uniform" | "min-snr" (the training loss weights)
    min_snr_gamma: float = 5.0
    tta: bool = True                          # a random dihedral view of the image per trial (same for all classes)
    p_value: float = 2e-3                     # paired t-test threshold (CytoDiffusion)
    min_trials: int = 4                       # trials before the first test
    test_every: int = 1                       # trials between tests
    topk_schedule: tuple[tuple[int, int], ...] = ((2, 4), (6, 2))  # (after n trials, keep k classes)
    precision: str = "bf16"                   # "bf16" | "fp32"
    batch_size: int = 512                     # max image-class pairs per UNet call
    image_batch: int = 64                     # images processed together
    seed: int = 0
    anomaly_k: int = 10                       # ζ uses the best class and the next k-1
    temperature: float | None = None          # None: the model's fitted temperature (or 1 if it has none)

    def validate(self) -> "ClassifierConfig":
        def bad(name: str, why: str) -> None:
            raise ValueError(f"classifier config '{name}': {why} (got {getattr(self, name)!r})")

        if self.strategy not in STRATEGIES:
            bad("strategy", f"use one of {', '.join(STRATEGIES)}")
        if self.timestep_selection not in SELECTIONS:
            bad("timestep_selection", f"use one of {', '.join(SELECTIONS)}")
        if self.weighting not in WEIGHTINGS:
            bad("weighting", f"use one of {', '.join(WEIGHTINGS)}")
        if self.trials < 1:
            bad("trials", "must be >= 1")
        if not 0 <= self.t_min <= self.t_max:
            bad("t_max", "need 0 <= t_min <= t_max")
        if not 0 < self.p_value < 1:
            bad("p_value", "must be in (0, 1)")
        if self.min_trials < 2:
            bad("min_trials", "a paired t-test needs at least 2 trials")
        if self.test_every < 1 or self.batch_size < 1 or self.image_batch < 1:
            bad("test_every", "test_every, batch_size and image_batch must be >= 1")
        if self.precision not in ("bf16", "fp32", "fp16"):
            bad("precision", "use 'bf16' or 'fp32'")
        sched = tuple((int(n), int(k)) for n, k in self.topk_schedule)
        if any(n < 1 or k < 1 for n, k in sched) or list(sched) != sorted(sched, key=lambda s: s[0]):
            bad("topk_schedule", "pairs (after_trials >= 1, keep_k >= 1) in increasing trial order")
        self.topk_schedule = sched
        if self.temperature is not None and self.temperature <= 0:
            bad("temperature", "must be positive")
        return self

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["topk_schedule"] = [list(p) for p in self.topk_schedule]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ClassifierConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        if "topk_schedule" in d:
            d["topk_schedule"] = tuple(tuple(p) for p in d["topk_schedule"])
        return cls(**d).validate()

    def scale_key(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in SCALE_FIELDS}


# ============================================================================================== error estimation
@dataclass
class ErrorEstimate:
    """Per image: paired-adjusted mean errors (N, C), per-trial errors (N, K, C; NaN where a class was not
    evaluated), trial timesteps (N, K), number of trials run and UNet calls."""
    errors: np.ndarray
    trial_errors: np.ndarray
    timesteps: np.ndarray
    trials_run: np.ndarray
    unet_calls: np.ndarray
    seconds: float = 0.0


def image_seed(image: np.ndarray, seed: int) -> int:
    """A 63-bit seed from an image's pixels and a run seed: the same image gets the same trials anywhere."""
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


def trial_plan(image: np.ndarray, cfg: ClassifierConfig, num_train_timesteps: int
               ) -> tuple[torch.Generator, np.ndarray, np.ndarray]:
    """(noise generator, timesteps (K,), dihedral view ids (K,)) for one image."""
    g = torch.Generator().manual_seed(image_seed(image, cfg.seed))
    # plan at least PLAN_LENGTH trials so that runs with different `trials` share their first trials exactly (an
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
        self.k = 0          # trials done
        self.done = False
        self.calls = 0


def _paired_means(trial_err: np.ndarray, k: int, active: Sequence[int]) -> tuple[np.ndarray, int]:
    """Paired-adjusted mean errors over the first k trials (C,), and the reference class (best active)."""
    e = trial_err[:k]
    act = list(active)
    ref = act[int(np.argmin(np.nanmean(e[:, act], axis=0)))]
    base = np.nanmean(e[:, ref])
    diff = e - e[:, [ref]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        adj = base + np.nanmean(diff, axis=0)
    return adj, ref


def _ttest_prune(trial_err: np.ndarray, k: int, active: list[int], p_value: float) -> list[int]:
    """Drop active classes whose paired errors are significantly (two-sided p < p_value) worse than the best's."""
    from scipy import stats

    means, ref = _paired_means(trial_err, k, active)
    keep = [ref]
    for c in active:
        if c == ref:
            continue
        d = trial_err[:k, c] - trial_err[:k, ref]
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
    """The trial count at which this image's active set may change next (or its last trial)."""
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


def _decide(state: _ImageState, trial_err: np.ndarray, cfg: ClassifierConfig) -> None:
    if state.k >= cfg.trials:
        state.done = True
        return
    if cfg.strategy == "topk":
        keep = None
        for n, kk in cfg.topk_schedule:
            if n == state.k:
                keep = kk
        if keep is not None and keep < len(state.active):
            means, _ = _paired_means(trial_err, state.k, state.active)
            order = sorted(state.active, key=lambda c: (means[c], c))
            state.active = sorted(order[:keep])
    elif cfg.strategy == "paired-ttest" and state.k >= cfg.min_trials:
        state.active = _ttest_prune(trial_err, state.k, state.active, cfg.p_value)
    if len(state.active) <= 1:
        state.done = True


def _timestep_weights(model: CytoModel, cfg: ClassifierConfig, t: torch.Tensor) -> torch.Tensor:
    if cfg.weighting == "uniform":
        return torch.ones(len(t))
    from .training import min_snr_weights

    return min_snr_weights(model.scheduler.alphas_cumprod, t.cpu(), cfg.min_snr_gamma)


@torch.no_grad()
def estimate_errors(model: CytoModel, images_uint8: np.ndarray, config: ClassifierConfig | None = None,
                    classes: Sequence[int] | None = None, progress: bool = False,
                    keep_residuals: bool = False) -> ErrorEstimate:
    """Weighted denoising errors of (N, H, W, 3) uint8 images under each class (see the module docstring).

    ``classes`` restricts the candidates (default: all classes of the model). With ``keep_residuals`` the per-pixel
    mean residual (ε − ε_θ) per image and class is returned in ``ErrorEstimate.residuals`` (N, C, 3, H, W), undone
    to the image's orientation (for heat maps).
    """
    cfg = (config or ClassifierConfig()).validate()
    images = np.asarray(images_uint8)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be (N, H, W, 3) uint8, got {images.shape} {images.dtype}")
    if images.shape[1:3] != (model.resolution, model.resolution):
        raise ValueError(f"images are {images.shape[1]}x{images.shape[2]} but the model needs "
                         f"{model.resolution}x{model.resolution}; preprocess them with model.preprocess "
                         "(classify_images does)")
    cand = list(range(len(model.class_names))) if classes is None else [model.class_index(c) for c in classes]
    n, c_all, k_max = len(images), len(cand), cfg.trials
    device = model.device
    model.unet.eval()
    alphas = model.scheduler.alphas_cumprod.to(device).float()
    n_t = model.scheduler.config.num_train_timesteps
    trial_err = np.full((n, k_max, c_all), np.nan, dtype=np.float64)
    timesteps = np.zeros((n, k_max), dtype=np.int64)
    trials_run = np.zeros(n, dtype=np.int64)
    calls = np.zeros(n, dtype=np.int64)
    res_sum = torch.zeros((n, c_all, 3, model.resolution, model.resolution)) if keep_residuals else None
    res_cnt = np.zeros((n, c_all)) if keep_residuals else None
    cand_t = torch.tensor(cand, device=device)
    t0 = time.perf_counter()
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=n, desc=f"classify ({cfg.strategy})", unit="img", dynamic_ncols=True)

    for start in range(0, n, cfg.image_batch):
        idx = list(range(start, min(n, start + cfg.image_batch)))
        x0 = model.encode(images[idx]).float()
        states = []
        for i in idx:
            g, ts, views = trial_plan(images[i], cfg, n_t)
            timesteps[i] = ts
            states.append(_ImageState(g, ts, views, c_all))
        while True:
            live = [j for j, s in enumerate(states) if not s.done]
            if not live:
                break
            # one step: every live image runs its trials towards its next decision point, all in one set of calls
            # (at most ~2 UNet batches of pairs per step, to bound memory)
            pairs_per_trial = sum(len(states[j].active) for j in live)
            chunk = max(1, (2 * cfg.batch_size) // max(1, pairs_per_trial))
            xs, tt, labels, owners = [], [], [], []
            stops = {}
            for j in live:
                s = states[j]
                stops[j] = stop = min(_next_decision(s, cfg), s.k + chunk)
                for k in range(s.k, stop):
                    view = int(s.views[k])
                    eps = torch.randn((3, model.resolution, model.resolution), generator=s.gen)
                    x = dihedral(x0[j], view)
                    a = alphas[int(s.ts[k])]
                    xt = a.sqrt() * x + (1 - a).sqrt() * eps.to(device)
                    for ci in s.active:
                        xs.append(xt)
                        tt.append(int(s.ts[k]))
                        labels.append(ci)
                        owners.append((j, k, ci, view, eps))
            x_in = torch.stack(xs)
            t_in = torch.tensor(tt, device=device)
            y_in = cand_t[torch.tensor(labels, device=device)]
            eps_all = torch.stack([o[4] for o in owners]).to(device)
            w = _timestep_weights(model, cfg, t_in).to(device).float()
            errs = torch.empty(len(xs))
            for b in range(0, len(xs), cfg.batch_size):
                sl = slice(b, b + cfg.batch_size)
                with autocast(device, cfg.precision):
                    pred = model.unet(x_in[sl], t_in[sl], class_labels=y_in[sl]).sample
                resid = eps_all[sl] - pred.float()
                errs[sl] = (resid.pow(2).mean(dim=(1, 2, 3)) * w[sl]).cpu()
                if keep_residuals:
                    for o, r in zip(owners[sl], resid.cpu()):
                        jj, _, ci, view, _ = o
                        res_sum[idx[jj], ci] += dihedral(r, view, inverse=True)
                        res_cnt[idx[jj], ci] += 1
            for (j, k, ci, _, _), e in zip(owners, errs.tolist()):
                trial_err[idx[j], k, ci] = e
                states[j].calls += 1
            for j in live:
                s = states[j]
                at_decision = stops[j] == _next_decision(s, cfg)
                s.k = stops[j]
                if at_decision:
                    _decide(s, trial_err[idx[j]], cfg)
                if s.done and bar is not None:
                    bar.update(1)
        for j, i in enumerate(idx):
            trials_run[i] = states[j].k
            calls[i] = states[j].calls
    if bar is not None:
        bar.close()

    errors = np.zeros((n, c_all))
    for i in range(n):
        final = [c for c in range(c_all) if not np.isnan(trial_err[i, trials_run[i] - 1, c])]
        errors[i], _ = _paired_means(trial_err[i], int(trials_run[i]), final)
    est = ErrorEstimate(errors, trial_err, timesteps, trials_run, calls, time.perf_counter() - t0)
    if keep_residuals:
        est.residuals = (res_sum / torch.from_numpy(np.maximum(res_cnt, 1))[..., None, None, None].float()).numpy()
        est.residual_counts = res_cnt
    return est


def replay_strategy(full: ErrorEstimate, config: ClassifierConfig) -> ErrorEstimate:
    """What ``config`` (an adaptive strategy) would have computed, from an exhaustive run with the same trial plan
    (same seed, timestep range/selection, TTA and at least as many trials): the adaptive run evaluates a subset of
    the exhaustive run's (trial, class) pairs, with identical values. Exact for "vdc"/"random" selection."""
    cfg = config.validate()
    n, k_full, c = full.trial_errors.shape
    if cfg.trials > k_full:
        raise ValueError(f"the exhaustive run has {k_full} trials, fewer than the {cfg.trials} to replay")
    trial_err = np.full((n, cfg.trials, c), np.nan)
    trials_run = np.zeros(n, dtype=np.int64)
    calls = np.zeros(n, dtype=np.int64)
    errors = np.zeros((n, c))
    for i in range(n):
        s = _ImageState(None, full.timesteps[i], None, c)
        while not s.done:
            stop = _next_decision(s, cfg)
            trial_err[i, s.k:stop][:, s.active] = full.trial_errors[i, s.k:stop][:, s.active]
            calls[i] += (stop - s.k) * len(s.active)
            s.k = stop
            _decide(s, trial_err[i], cfg)
        trials_run[i] = s.k
        final = [cc for cc in range(c) if not np.isnan(trial_err[i, s.k - 1, cc])]
        errors[i], _ = _paired_means(trial_err[i], s.k, final)
    return ErrorEstimate(errors, trial_err, full.timesteps[:, :cfg.trials], trials_run, calls)


# ============================================================================================== scores
def softmax_neg(errors: np.ndarray, temperature: float) -> np.ndarray:
    z = -np.asarray(errors, dtype=np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True)


def zeta_scores(errors: np.ndarray, k_max: int = 10) -> np.ndarray:
    """CytoDiffusion's ζ per row of (N, C) errors (see the module docstring); higher = more clearly one class."""
    e = np.sort(np.asarray(errors, dtype=np.float64), axis=1)
    g = e - e[:, :1]
    if g.shape[1] < 3:  # with two classes the normalised gap is constant: use the raw gap
        return g[:, 1] if g.shape[1] == 2 else np.zeros(len(g))
    mean = g.mean(axis=1, keepdims=True)
    g = np.divide(g, mean, out=np.zeros_like(g), where=mean > 0)
    c = g.shape[1]
    k = min(c - 1, k_max)
    nxt = g[:, 1:k]                                   # g_(1) … g_(k-1)
    gap = nxt.sum(axis=1) / k
    spread = np.abs(nxt[:, :, None] - nxt[:, None, :]).sum(axis=(1, 2)) / (k * (k - 1))
    return gap - spread


def anomaly_scores(errors: np.ndarray, k_max: int = 10) -> np.ndarray:
    """−ζ: high when no class explains the image clearly better than the others."""
    return -zeta_scores(errors, k_max)


def fit_temperature(errors: np.ndarray, labels: np.ndarray) -> tuple[float, float, float]:
    """The T minimising the NLL of softmax(−errors/T) on labelled (validation) data: (T, NLL at T=1, NLL at T)."""
    from scipy.optimize import minimize_scalar

    errors = np.asarray(errors, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if len(errors) != len(labels) or len(errors) == 0:
        raise ValueError("fit_temperature needs one label per row of errors (and at least one row)")
    if not np.isfinite(errors).all():
        raise ValueError("errors contain NaN/inf")

    def nll(log_t: float) -> float:
        return nll_of(errors, labels, math.exp(log_t))

    scale = float(np.median(np.abs(errors - errors.mean(axis=1, keepdims=True)))) or 1.0
    lo, hi = math.log(scale * 1e-4), math.log(scale * 1e4)
    grid = np.linspace(lo, hi, 81)
    vals = [nll(x) for x in grid]
    b = int(np.argmin(vals))
    res = minimize_scalar(nll, bounds=(grid[max(b - 1, 0)], grid[min(b + 1, len(grid) - 1)]), method="bounded",
                          options={"xatol": 1e-6})
    t = float(math.exp(res.x)) if res.fun <= vals[b] else float(math.exp(grid[b]))
    return t, nll(0.0), nll(math.log(t))


def nll_of(errors: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    z = -np.asarray(errors, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(labels)), labels].mean())


def model_temperature(model: CytoModel, cfg: ClassifierConfig, warn: bool = True) -> float:
    if cfg.temperature is not None:
        return float(cfg.temperature)
    t = model.temperature
    if t is None:
        if warn:
            warnings.warn("this model has no fitted temperature; using T=1 (probabilities are uncalibrated). "
                          "Fit one with `cytomodel calibrate --model DIR --data ... --split val`.", stacklevel=3)
        return 1.0
    fitted = model.metadata.get("temperature_fit", {}).get("config")
    if warn and fitted:
        mismatch = {k: (fitted.get(k), v) for k, v in cfg.scale_key().items() if fitted.get(k) != v}
        if mismatch:
            warnings.warn(f"the model's temperature was fitted with other error settings {mismatch} "
                          "(fitted, now); its probabilities may be miscalibrated", stacklevel=3)
    return float(t)


def results_frame(model: CytoModel, est: ErrorEstimate, cfg: ClassifierConfig,
                  classes: Sequence[int] | None = None, warn: bool = True) -> pd.DataFrame:
    names = [model.class_names[c] for c in (classes if classes is not None else range(len(model.class_names)))]
    temp = model_temperature(model, cfg, warn=warn)
    probs = softmax_neg(est.errors, temp)
    order = np.argsort(-probs, axis=1, kind="stable")
    top = probs[np.arange(len(probs)), order[:, 0]]
    second = probs[np.arange(len(probs)), order[:, 1]] if probs.shape[1] > 1 else np.zeros(len(probs))
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.where(probs > 0, probs * np.log(probs), 0.0).sum(axis=1)
    zeta = zeta_scores(est.errors, cfg.anomaly_k)
    df = pd.DataFrame({
        "pred_class": [names[i] for i in order[:, 0]],
        "runner_up": [names[i] for i in order[:, 1]] if probs.shape[1] > 1 else [None] * len(probs),
        "confidence": top, "entropy": ent, "margin": top - second,
        "anomaly_score": -zeta, "zeta": zeta,
        "unet_calls": est.unet_calls, "trials": est.trials_run, "temperature": temp,
    })
    for j, name in enumerate(names):
        df[f"prob_{name}"] = probs[:, j]
    for j, name in enumerate(names):
        df[f"err_{name}"] = est.errors[:, j]
    return df


def classify_arrays(model: CytoModel, images_uint8: np.ndarray, config: ClassifierConfig | None = None,
                    seed: int | None = None, progress: bool = False, classes: Sequence[int | str] | None = None
                    ) -> pd.DataFrame:
    """Classify (N, H, W, 3) uint8 images at the model's resolution; one row per image, input order.

    Columns: pred_class, runner_up, confidence, entropy, margin, anomaly_score, zeta, unet_calls, trials,
    temperature, prob_<class>…, err_<class>… . ``seed`` (default: the config's) fixes the trials of every image.
    """
    cfg = dataclasses.replace(config or ClassifierConfig())
    if seed is not None:
        cfg.seed = int(seed)
    cfg.validate()
    cls_idx = None if classes is None else [model.class_index(c) for c in classes]
    est = estimate_errors(model, images_uint8, cfg, classes=cls_idx, progress=progress)
    return results_frame(model, est, cfg, classes=cls_idx)


def load_images_for(model: CytoModel, images: Iterable, on_error: str = "raise"
                    ) -> tuple[np.ndarray, list[str], list[tuple[str, str]]]:
    """Preprocess paths / bytes / PIL images like training data. Returns (arrays, names, skipped)."""
    from .data import DataError

    arrays, names, skipped = [], [], []
    for k, img in enumerate(images):
        name = str(img) if isinstance(img, (str, Path)) else f"<image {k}>"
        try:
            arrays.append(model.preprocess(img))
            names.append(name)
        except (DataError, OSError) as exc:
            if on_error == "raise":
                raise DataError(str(exc)) from None
            log.warning("skipping %s: %s", name, exc)
            skipped.append((name, str(exc)))
    shape = (0, model.resolution, model.resolution, 3)
    return (np.stack(arrays) if arrays else np.zeros(shape, np.uint8)), names, skipped


def classify_images(model: CytoModel, images: Iterable, config: ClassifierConfig | None = None,
                    seed: int | None = None, progress: bool = False, on_error: str = "raise") -> pd.DataFrame:
    """Classify image files / PIL images (preprocessed like training data: centre crop, Lanczos resize).

    Adds an ``image`` column (the path, or ``<image k>``). ``on_error="skip"`` drops undecodable or too-small
    images with a warning instead of raising the data layer's DataError.
    """
    arrays, names, _ = load_images_for(model, images, on_error)
    if len(arrays) == 0:
        return pd.DataFrame(columns=["image"])
    df = classify_arrays(model, arrays, config, seed=seed, progress=progress)
    df.insert(0, "image", names)
    return df


# ============================================================================================== calibration
def calibrate_model(model_dir: str | Path, errors: np.ndarray, labels: np.ndarray, cfg: ClassifierConfig,
                    source: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fit T on (errors, labels) and write it into the model's cytomodel.json, keeping everything else."""
    from .model import METADATA_FILE
    from cytocore.provenance import provenance_record, write_json

    t, nll1, nllt = fit_temperature(errors, labels)
    path = Path(model_dir) / METADATA_FILE
    meta = json.loads(path.read_text())
    fit = {"temperature": t, "nll_at_T1": nll1, "nll_at_T": nllt, "n_images": int(len(labels)),
           "config": cfg.to_dict(), **(source or {}), **provenance_record()}
    meta["temperature"] = t
    meta["temperature_fit"] = fit
    write_json(path, meta)
    return fit


# ============================================================================================== folder classification
def list_inputs(source: str | Path, split: str | None = None) -> list[tuple[Path, str | None]]:
    """(path, label or None) for a manifest, a class-per-folder tree, a flat folder of images, or one image."""
    from .data import IMAGE_SUFFIXES, MANIFEST_NAMES, DataError, scan_dataset

    source = Path(source)
    if not source.exists():
        raise DataError(f"{source} does not exist: pass a folder of images, class sub-folders or a manifest CSV")
    if source.is_file() and source.suffix.lower() in IMAGE_SUFFIXES:
        return [(source, None)]
    if source.is_dir() and split is None and not any((source / m).is_file() for m in MANIFEST_NAMES):
        flat = sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if flat:
            return [(p, None) for p in flat]
    return [(r.path, r.label) for r in scan_dataset(source, split=split)]


def _read_table(path: Path) -> pd.DataFrame:
    if not path.is_file():
        return pd.DataFrame()
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


def _write_table(df: pd.DataFrame, path: Path) -> None:
    from cytocore.provenance import atomic_output

    with atomic_output(path) as tmp:
        if path.suffix == ".parquet":
            df.to_parquet(tmp, index=False)
        else:
            df.to_csv(tmp, index=False)


def classify_folder(model: CytoModel, source: str | Path, out: str | Path, config: ClassifierConfig | None = None,
                    split: str | None = None, progress: bool = True, chunk: int = 64, limit: int | None = None,
                    state=None, items: Sequence[tuple[Path, str | None]] | None = None,
                    classes: Sequence[int | str] | None = None) -> pd.DataFrame:
    """Classify every image of ``source`` into ``out`` (.csv or .parquet), resumably and data-parallel.

    ``items`` ((path, label) pairs) replaces listing ``source``; ``classes`` restricts the candidate classes.
    Images already in ``out`` (or in a process's part file from an interrupted run) are skipped. Under
    ``accelerate launch`` each process takes every n-th remaining image and writes ``out.part<rank>``; the main
    process merges them into ``out`` in input order at the end.
    """
    from .data import DataError

    cfg = (config or ClassifierConfig()).validate()
    out = Path(out)
    if out.suffix not in (".csv", ".parquet"):
        raise ValueError(f"--out must end in .csv or .parquet, got {out.name}")
    out.parent.mkdir(parents=True, exist_ok=True)
    if state is None:
        state = _partial_state()
    rank, world = state.process_index, state.num_processes
    items = list(items) if items is not None else list_inputs(source, split)
    cls_idx = None if classes is None else [model.class_index(c) for c in classes]
    # results are only reused by a run that would compute the same numbers: same model, classes and settings
    run_key = {"model_train_steps": model.metadata.get("train_steps"), "model_data_hash": model.metadata.get("data_hash"),
               "model_created": model.metadata.get("created_utc"), "classes": cls_idx,
               **{k: v for k, v in cfg.to_dict().items() if k not in ("temperature", "batch_size", "image_batch")}}
    key_path = out.with_name(out.name + ".run.json")
    has_results = out.is_file() or any(out.parent.glob(out.name + ".part*"))
    if has_results and key_path.is_file():
        old = json.loads(key_path.read_text())
        diff = {k: (old.get(k), v) for k, v in json.loads(json.dumps(run_key)).items() if old.get(k) != v}
        if diff:
            raise ValueError(f"{out} holds results of another model or classifier setting {diff} (before, now); "
                             "use a new --out or delete it")
    state.wait_for_everyone()
    if state.is_main_process and not (has_results and key_path.is_file()):
        key_path.write_text(json.dumps(run_key, indent=1) + "\n")
    if limit is not None:
        items = items[:limit]
    order = {str(p): i for i, (p, _) in enumerate(items)}
    parts = sorted(out.parent.glob(out.name + ".part*"))
    done_tables = [_read_table(out)] + [_read_table(p) for p in parts]
    done = set()
    for t in done_tables:
        if "image" in t:
            done |= set(t["image"].astype(str))
    todo = [(p, lab) for p, lab in items if str(p) not in done][rank::world]
    part_path = out.with_name(f"{out.name}.part{rank}")
    mine = _read_table(part_path)
    temp = model_temperature(model, cfg, warn=state.is_main_process)
    cfg_run = dataclasses.replace(cfg, temperature=temp)
    bar = None
    if progress and state.is_local_main_process:
        from tqdm.auto import tqdm
        if done:
            print(f"resuming: {len(done)} of {len(items)} images already classified", file=sys.stderr)
        bar = tqdm(total=len(todo), desc="classify" + (f" (process 0 of {world})" if world > 1 else ""),
                   unit="img", dynamic_ncols=True)
    skipped: list[tuple[str, str]] = []
    for b in range(0, len(todo), chunk):
        batch = todo[b:b + chunk]
        arrays, names, skip = load_images_for(model, [p for p, _ in batch], on_error="skip")
        skipped += skip
        if len(arrays):
            est = estimate_errors(model, arrays, cfg_run, classes=cls_idx)
            df = results_frame(model, est, cfg_run, classes=cls_idx, warn=False)
            df.insert(0, "image", names)
            labels = {str(p): lab for p, lab in batch}
            if any(lab is not None for lab in labels.values()):
                df.insert(1, "label", [labels[n] for n in names])
            mine = pd.concat([mine, df], ignore_index=True) if len(mine) else df
            _write_table(mine, part_path)
        if bar is not None:
            bar.update(len(batch))
    if bar is not None:
        bar.close()
    for name, why in skipped:
        print(f"skipped {name}: {why}", file=sys.stderr)
    state.wait_for_everyone()
    if state.is_main_process:
        tables = [t for t in [_read_table(out)] + [_read_table(p) for p in sorted(out.parent.glob(out.name + ".part*"))]
                  if len(t)]
        if not tables:
            raise DataError(f"no image of {source} could be classified")
        merged = pd.concat(tables, ignore_index=True).drop_duplicates("image", keep="first")
        merged["_order"] = merged["image"].astype(str).map(order).fillna(len(order))
        merged = merged.sort_values("_order", kind="stable").drop(columns="_order").reset_index(drop=True)
        _write_table(merged, out)
        for p in out.parent.glob(out.name + ".part*"):
            p.unlink()
    state.wait_for_everyone()
    return _read_table(out)


# ============================================================================================== CLI
def add_classifier_args(p: argparse.ArgumentParser) -> None:
    d = ClassifierConfig()
    g = p.add_argument_group("classifier")
    g.add_argument("--strategy", default=d.strategy, choices=STRATEGIES, help="adaptive or exhaustive (%(default)s)")
    g.add_argument("--trials", type=int, default=d.trials, help="maximum trials per image (%(default)s)")
    g.add_argument("--t-range", default=f"{d.t_min}:{d.t_max}", help="timestep range MIN:MAX (%(default)s)")
    g.add_argument("--weighting", default=d.weighting, choices=WEIGHTINGS)
    g.add_argument("--no-tta", action="store_true", help="no random flips/rotations per trial")
    g.add_argument("--p-value", type=float, default=d.p_value)
    g.add_argument("--min-trials", type=int, default=d.min_trials)
    g.add_argument("--precision", default=d.precision, choices=["bf16", "fp32"])
    g.add_argument("--batch-size", type=int, default=d.batch_size, help="image-class pairs per UNet call")
    g.add_argument("--seed", type=int, default=d.seed)
    g.add_argument("--temperature", type=float, help="override the model's fitted temperature")


def config_from_args(args: argparse.Namespace) -> ClassifierConfig:
    lo, _, hi = str(args.t_range).partition(":")
    return ClassifierConfig(strategy=args.strategy, trials=args.trials, t_min=int(lo), t_max=int(hi or lo),
                            weighting=args.weighting, tta=not args.no_tta, p_value=args.p_value,
                            min_trials=args.min_trials, precision=args.precision, batch_size=args.batch_size,
                            seed=args.seed, temperature=args.temperature).validate()


def _partial_state():
    """accelerate's process state; on a CPU-only machine it must be told so to join a multi-process launch."""
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def _load(args) -> CytoModel:
    """The base stage of ``--model`` (a cascade classifies with its base stage, on the downsampled cell)."""
    from .cascade import load_base
    from .runtime import configure_runtime

    configure_runtime()
    return load_base(args.model)


def cmd_classify(args: argparse.Namespace) -> int:
    state = _partial_state()
    model = _load(args)
    model.unet.to(state.device)
    cfg = config_from_args(args)
    df = classify_folder(model, args.data, args.out, cfg, split=args.split, limit=args.limit, state=state)
    if state.is_main_process:
        msg = f"{len(df)} images classified -> {args.out}; mean UNet calls/image {df['unet_calls'].mean():.1f}"
        if "label" in df:
            msg += f"; accuracy {np.mean(df['label'] == df['pred_class']):.4f}"
        print(msg)
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    model = _load(args)
    cfg = config_from_args(args)
    if args.from_results:
        df = _read_table(Path(args.from_results))
    else:
        out = Path(args.results or Path(args.model) / f"calibration-{args.split or 'data'}.csv")
        df = classify_folder(model, args.data, out, dataclasses.replace(cfg, temperature=1.0), split=args.split,
                             limit=args.limit)
    if "label" not in df:
        raise ValueError("calibration needs labelled images (class folders or a manifest with labels)")
    df = df[df["label"].isin(model.class_names)]
    errors = df[[f"err_{c}" for c in model.class_names]].to_numpy()
    labels = df["label"].map({c: i for i, c in enumerate(model.class_names)}).to_numpy()
    from .cascade import base_folder
    fit = calibrate_model(base_folder(args.model), errors, labels, cfg,
                          source={"data": str(args.data), "split": args.split})
    print(f"temperature T={fit['temperature']:.6g} fitted on {fit['n_images']} images: "
          f"NLL {fit['nll_at_T1']:.4f} (T=1) -> {fit['nll_at_T']:.4f}; written to {base_folder(args.model)}/cytomodel.json")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from .explain import explain_image, save_overlay

    model = _load(args)
    cfg = dataclasses.replace(ClassifierConfig(), trials=args.trials, seed=args.seed, precision=args.precision)
    res = explain_image(model, args.image, args.target, predicted=args.predicted, config=cfg)
    save_overlay(res, args.out, upscale=args.upscale)
    print(f"predicted {res.predicted}, target {res.target}: error gap {res.error_gap:+.4g}; overlay -> {args.out}")
    return 0


def register_cli(sub) -> None:
    from .cli import _add_data_args

    p = sub.add_parser("classify", help="classify cell images by denoising error (resumable, data-parallel)",
                       description="Classify a folder, class tree or manifest with the diffusion classifier. "
                       "Resumable: images already in --out are skipped. Data-parallel with "
                       "`accelerate launch -m cytomodel classify ...`.")
    p.add_argument("--model", default=None, help="model folder (default: the bundled data/models/cpu-32)")
    p.add_argument("--data", required=True, help="a folder of images, class sub-folders, a manifest CSV, or one image")
    p.add_argument("--split", default=None, help="manifest split (e.g. test)")
    p.add_argument("--out", required=True, help="results .csv or .parquet")
    p.add_argument("--limit", type=int, help="only the first N images")
    add_classifier_args(p)
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("calibrate", help="fit the softmax temperature on validation data",
                       description="Classify labelled validation images and fit T by NLL; T is written into the "
                       "model's cytomodel.json (everything else kept).")
    p.add_argument("--model", default=None)
    _add_data_args(p)
    p.add_argument("--results", help="where to keep the per-image validation results (resumable)")
    p.add_argument("--from-results", help="fit from an existing classify output (with a label column)")
    p.add_argument("--limit", type=int)
    add_classifier_args(p)
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("explain", help="counterfactual heat map: where the image would change to be TARGET",
                       description="Average the per-pixel residuals under the predicted and the target class and "
                       "show where they differ most, as an overlay PNG.")
    p.add_argument("--model", default=None)
    p.add_argument("--image", required=True)
    p.add_argument("--target", required=True, help="the counterfactual class")
    p.add_argument("--predicted", help="compare against this class instead of the predicted one")
    p.add_argument("--trials", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    p.add_argument("--upscale", type=int, default=8)
    p.add_argument("--out", required=True, help="overlay .png")
    p.set_defaults(func=cmd_explain)
