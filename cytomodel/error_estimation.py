"""Weighted denoising errors of images under each class, in batched paired trials (:func:`estimate_errors`), and
the replay of an adaptive strategy from an exhaustive run (:func:`replay_strategy`)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from .classifier_config import ClassifierConfig
from .model import CytoModel
from .runtime import autocast
from .trial_plan import _decide, _ImageState, _next_decision, _paired_means, dihedral, trial_plan


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


def _timestep_weights(model: CytoModel, cfg: ClassifierConfig, t: torch.Tensor) -> torch.Tensor:
    if cfg.weighting == "uniform":
        return torch.ones(len(t))
    from .objectives import min_snr_weights

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
    region = None if cfg.error_region == "image" else error_weights(cfg, model.resolution).to(device)
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
                with autocast(device, cfg.precision), model.lab_condition(cfg.lab_condition):
                    pred = model.unet(x_in[sl], t_in[sl], class_labels=y_in[sl]).sample
                resid = eps_all[sl] - pred.float()
                sq = resid.pow(2)
                sq = sq.mean(dim=(1, 2, 3)) if region is None else (sq * region).sum(dim=(1, 2, 3))
                errs[sl] = (sq * w[sl]).cpu()
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

