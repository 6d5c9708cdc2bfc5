"""Weighted denoising errors of images under each class, in batched paired noise draws (:func:`estimate_errors`), and
the replay of an adaptive strategy from an exhaustive run (:func:`replay_strategy`)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..models.base import CytoModel
from ..pipelines.scheduling import min_snr_weights
from ..runtime import autocast
from .config import ClassifierConfig
from .draw_plan import _decide, _ImageState, _next_decision, _paired_means, dihedral, draw_plan


@dataclass
class ErrorEstimate:
    """Per image: paired-adjusted mean errors (N, C), per-draw errors (N, K, C; NaN where a class was not
    evaluated), the draws' timesteps (N, K), the number of draws made and UNet calls; with ``keep_residuals`` the
    mean residual per image and class (N, C, 3, H, W) and how many draws it averages (N, C); with the class-gain
    anomaly score the null (unconditional) class's error at every draw (N, K)."""
    errors: np.ndarray
    draw_errors: np.ndarray
    timesteps: np.ndarray
    draws_run: np.ndarray
    unet_calls: np.ndarray
    seconds: float = 0.0
    residuals: np.ndarray | None = None
    residual_counts: np.ndarray | None = None
    null_errors: np.ndarray | None = None


NULL = -1   # the candidate index of the null class in a draw's pairs


def _timestep_weights(model: CytoModel, cfg: ClassifierConfig, t: torch.Tensor) -> torch.Tensor:
    if cfg.weighting == "uniform":
        return torch.ones(len(t))
    return min_snr_weights(model.scheduler.alphas_cumprod, t.cpu(), cfg.min_snr_gamma)


def error_weights(cfg: ClassifierConfig, size: int) -> torch.Tensor:
    """(1, 1, size, size) weights that average the squared residual over the image or over a centred disc (the
    cell: the red cells around it carry no class evidence). Symmetric under the dihedral views of TTA."""
    if cfg.error_region == "image":
        w = torch.ones(size, size)
    else:
        r = (torch.arange(size, dtype=torch.float32) + 0.5 - size / 2) / size
        w = ((r[:, None] ** 2 + r[None, :] ** 2) <= cfg.disc_radius ** 2).float()
    return (w / (3 * w.sum())).view(1, 1, size, size)


def _final_errors(draw_err: np.ndarray, k: int) -> np.ndarray:
    """An image's paired-adjusted errors over its ``k`` draws, from the classes evaluated in its last draw."""
    final = [c for c in range(draw_err.shape[1]) if not np.isnan(draw_err[k - 1, c])]
    return _paired_means(draw_err, k, final)[0]


def _checked(model: CytoModel, images_uint8: np.ndarray) -> np.ndarray:
    images = np.asarray(images_uint8)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be (N, H, W, 3) uint8, got {images.shape} {images.dtype}")
    if images.shape[1:3] != (model.resolution, model.resolution):
        raise ValueError(f"images are {images.shape[1]}x{images.shape[2]} but the model needs "
                         f"{model.resolution}x{model.resolution}; preprocess them with model.preprocess "
                         "(classify_images does)")
    return images


@torch.no_grad()
def estimate_errors(model: CytoModel, images_uint8: np.ndarray, config: ClassifierConfig | None = None,
                    classes: Sequence[int] | None = None, progress: bool = False,
                    keep_residuals: bool = False) -> ErrorEstimate:
    """Weighted denoising errors of (N, H, W, 3) uint8 images under each class (see :mod:`cytomodel.classify`).

    ``classes`` restricts the candidates (default: all classes of the model). With ``keep_residuals`` the per-pixel
    mean residual (ε − ε_θ) per image and class is returned in ``ErrorEstimate.residuals`` (N, C, 3, H, W), undone
    to the image's orientation (for heat maps).
    """
    cfg = (config or ClassifierConfig()).validate()
    images = _checked(model, images_uint8)
    cand = list(range(len(model.class_names))) if classes is None else [model.class_index(c) for c in classes]
    model.unet.eval()
    run = _Estimation(model, cfg, cand, len(images), keep_residuals)
    t0 = time.perf_counter()
    bar = tqdm(total=len(images), desc=f"classify ({cfg.strategy})", unit="img", dynamic_ncols=True) \
        if progress else None
    for start in range(0, len(images), cfg.image_batch):
        run.batch(images, list(range(start, min(len(images), start + cfg.image_batch))), bar)
    if bar is not None:
        bar.close()
    return run.estimate(time.perf_counter() - t0)


class _Estimation:
    """One :func:`estimate_errors` call: every image's per-draw errors so far, and how the UNet is asked for more."""

    def __init__(self, model: CytoModel, cfg: ClassifierConfig, cand: list[int], n: int, keep_residuals: bool):
        self.model, self.cfg, self.device = model, cfg, model.device
        self.n_classes, res = len(cand), model.resolution
        self.alphas = model.scheduler.alphas_cumprod.to(self.device).float()
        self.n_t = model.scheduler.config.num_train_timesteps
        self.draw_err = np.full((n, cfg.trials, self.n_classes), np.nan, dtype=np.float64)
        self.timesteps = np.zeros((n, cfg.trials), dtype=np.int64)
        self.draws_run = np.zeros(n, dtype=np.int64)
        self.calls = np.zeros(n, dtype=np.int64)
        self.res_sum = torch.zeros((n, self.n_classes, 3, res, res)) if keep_residuals else None
        self.res_cnt = np.zeros((n, self.n_classes)) if keep_residuals else None
        self.cand_t = torch.tensor(cand + [model.null_class], device=self.device)   # index -1: the null class
        # the class-gain anomaly score needs the null class's error on every draw (one more UNet call per draw)
        self.null_err = np.full((n, cfg.trials), np.nan) if cfg.novelty_kind == "class-gain" else None
        self.region = None if cfg.error_region == "image" else error_weights(cfg, res).to(self.device)

    def batch(self, images: np.ndarray, idx: list[int], bar) -> None:
        """Every draw the images ``idx`` need, as their strategy decides, all images stepping together."""
        x0 = self.model.encode(images[idx]).float()
        states = []
        for i in idx:
            g, ts, views = draw_plan(images[i], self.cfg, self.n_t)
            self.timesteps[i] = ts
            states.append(_ImageState(g, ts, views, self.n_classes))
        while any(not s.done for s in states):
            self._step(idx, x0, states, bar)
        for j, i in enumerate(idx):
            self.draws_run[i] = states[j].k
            self.calls[i] = states[j].calls

    def _step(self, idx: list[int], x0: torch.Tensor, states: list[_ImageState], bar) -> None:
        """Every live image makes its draws up to its next decision point, all in one set of UNet calls (at most
        ~2 batches of pairs per step, to bound memory); then the images at a decision point decide."""
        cfg = self.cfg
        live = [j for j, s in enumerate(states) if not s.done]
        chunk = max(1, (2 * cfg.batch_size) // max(1, sum(len(states[j].active) for j in live)))
        stops = {j: min(_next_decision(states[j], cfg), states[j].k + chunk) for j in live}
        owners, xs, tt, labels = self._pairs(x0, states, stops)
        errs = self._errors(owners, xs, tt, labels, idx)
        for (j, k, ci, _, _), e in zip(owners, errs.tolist()):
            if ci == NULL:
                self.null_err[idx[j], k] = e
            else:
                self.draw_err[idx[j], k, ci] = e
            states[j].calls += 1
        for j in live:
            s = states[j]
            at_decision = stops[j] == _next_decision(s, cfg)
            s.k = stops[j]
            if at_decision:
                _decide(s, self.draw_err[idx[j]], cfg)
            if s.done and bar is not None:
                bar.update(1)

    def _pairs(self, x0: torch.Tensor, states: list[_ImageState], stops: dict[int, int]):
        """The draws up to ``stops``: one noised image per draw, paired with each class still active. Returns the
        pairs' owners (image, draw, class, view, noise), inputs, timesteps and class labels."""
        res = self.model.resolution
        owners, xs, tt, labels = [], [], [], []
        for j, stop in stops.items():
            s = states[j]
            for k in range(s.k, stop):
                view = int(s.views[k])
                eps = torch.randn((3, res, res), generator=s.gen)
                a = self.alphas[int(s.ts[k])]
                xt = a.sqrt() * dihedral(x0[j], view) + (1 - a).sqrt() * eps.to(self.device)
                for ci in s.active + ([NULL] if self.null_err is not None else []):
                    xs.append(xt)
                    tt.append(int(s.ts[k]))
                    labels.append(ci)
                    owners.append((j, k, ci, view, eps))
        return owners, xs, tt, labels

    def _errors(self, owners: list, xs: list, tt: list, labels: list, idx: list[int]) -> torch.Tensor:
        """Each pair's weighted squared residual, in UNet batches of ``batch_size`` (the residuals summed for heat
        maps when kept)."""
        model, cfg, device = self.model, self.cfg, self.device
        x_in = torch.stack(xs)
        t_in = torch.tensor(tt, device=device)
        y_in = self.cand_t[torch.tensor(labels, device=device)]
        eps_all = torch.stack([o[4] for o in owners]).to(device)
        w = _timestep_weights(model, cfg, t_in).to(device).float()
        errs = torch.empty(len(xs))
        for b in range(0, len(xs), cfg.batch_size):
            sl = slice(b, b + cfg.batch_size)
            with autocast(device, cfg.precision), model.lab_condition(cfg.lab_condition):
                pred = model.unet(x_in[sl], t_in[sl], class_labels=y_in[sl]).sample
            resid = eps_all[sl] - pred.float()
            sq = resid.pow(2)
            sq = sq.mean(dim=(1, 2, 3)) if self.region is None else (sq * self.region).sum(dim=(1, 2, 3))
            errs[sl] = (sq * w[sl]).cpu()
            if self.res_sum is not None:
                for (jj, _, ci, view, _), r in zip(owners[sl], resid.cpu()):
                    if ci == NULL:
                        continue
                    self.res_sum[idx[jj], ci] += dihedral(r, view, inverse=True)
                    self.res_cnt[idx[jj], ci] += 1
        return errs

    def estimate(self, seconds: float) -> ErrorEstimate:
        errors = np.stack([_final_errors(self.draw_err[i], int(k)) for i, k in enumerate(self.draws_run)]) \
            if len(self.draws_run) else np.zeros((0, self.n_classes))
        est = ErrorEstimate(errors, self.draw_err, self.timesteps, self.draws_run, self.calls, seconds,
                            null_errors=self.null_err)
        if self.res_sum is not None:
            counts = torch.from_numpy(np.maximum(self.res_cnt, 1))[..., None, None, None].float()
            est.residuals = (self.res_sum / counts).numpy()
            est.residual_counts = self.res_cnt
        return est


def replay_strategy(full: ErrorEstimate, config: ClassifierConfig) -> ErrorEstimate:
    """What ``config`` (an adaptive strategy) would have computed, from an exhaustive run with the same draw plan
    (same seed, timestep range/selection, TTA and at least as many draws): the adaptive run evaluates a subset of
    the exhaustive run's (draw, class) pairs, with identical values. Exact for "vdc"/"random" selection."""
    cfg = config.validate()
    n, k_full, c = full.draw_errors.shape
    if cfg.trials > k_full:
        raise ValueError(f"the exhaustive run has {k_full} draws, fewer than the {cfg.trials} to replay")
    draw_err = np.full((n, cfg.trials, c), np.nan)
    draws_run = np.zeros(n, dtype=np.int64)
    calls = np.zeros(n, dtype=np.int64)
    errors = np.zeros((n, c))
    for i in range(n):
        s = _ImageState(None, full.timesteps[i], None, c)
        while not s.done:
            stop = _next_decision(s, cfg)
            draw_err[i, s.k:stop][:, s.active] = full.draw_errors[i, s.k:stop][:, s.active]
            calls[i] += (stop - s.k) * len(s.active)
            s.k = stop
            _decide(s, draw_err[i], cfg)
        draws_run[i] = s.k
        errors[i] = _final_errors(draw_err[i], s.k)
    return ErrorEstimate(errors, draw_err, full.timesteps[:, :cfg.trials], draws_run, calls)
