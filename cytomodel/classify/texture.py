"""Texture evidence for the anomaly score: does a cell's fine detail fit the class it was called, better than no class?

Why: the 32-px base stage cannot see chromatin, granules or nucleoli, and a cell of a class the model never saw (a
blast) is often denoised as well as a normal cell at that scale. The cascade's super-resolution stage sees exactly
that detail: it predicts the *residual* (the 128-px cell minus the bicubic upsampling of its 32-px version), is
class-conditional with a null class, and is fully convolutional and trained on 64 × 64 crops — so the centre crop of
a framed cell (the cell, not the field of red cells) is what it is scored on.

``texture_errors`` gives, per cell, noise level and draw, the stage's noise-prediction error of that residual crop
under the predicted class and under the null class; ``texture_gain`` = mean log(E_class / E_null) — negative where the
class explains the detail (a normal cell), near zero or positive where it does not. Measured on PBC with `ig` held
out of both stages (``benchmarks/texture_scores.py``, docs/classifier.md).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from ..models.superres import downsample
from ..runtime import autocast
from .draw_plan import dihedral

if TYPE_CHECKING:
    from ..models.superres import SuperResModel

CROP = 64             # crop size of a stage whose record does not say its own
TIMESTEPS = (500,)    # the noise level chosen on validation cells with ig held out (docs/classifier.md)


def texture_errors(superres: "SuperResModel", images: np.ndarray, predicted: Sequence[int], draws: int = 2,
                   seed: int = 0, timesteps: Sequence[int] = TIMESTEPS, crop: int | None = None, batch: int = 96,
                   precision: str = "bf16") -> np.ndarray:
    """(N, T, D, 2) mean squared noise-prediction errors of the residual's centre ``crop``, per timestep and draw, under
    the ``predicted`` class (N class indices of ``superres``) and under the null class.

    ``images``: (N, H, H, 3) uint8 cells framed like the stage's training cells, H its resolution. A draw is one
    (ε, conditioning noise, dihedral view); the same draw serves both classes (paired). ``crop``: by default the
    crop size the stage was trained on (its record's ``config.crop_size``)."""
    arr = np.asarray(images)
    if arr.ndim != 4 or arr.shape[1:] != (superres.resolution, superres.resolution, 3):
        raise ValueError(f"texture errors need ({superres.resolution}, {superres.resolution}, 3) framed cells, the "
                         f"super-resolution stage's size; got {arr.shape}")
    if len(predicted) != len(arr):
        raise ValueError(f"{len(predicted)} predicted classes for {len(arr)} images")
    if crop is None:
        crop = int(superres.metadata.get("config", {}).get("crop_size") or CROP)
    if not 0 < crop <= superres.resolution:
        raise ValueError(f"the stage's resolution {superres.resolution} is smaller than the {crop}-px crop")
    n_t = superres.scheduler.config.num_train_timesteps
    if any(not 0 <= int(t) < n_t for t in timesteps):
        raise ValueError(f"timesteps must lie in [0, {n_t}), got {list(timesteps)}")
    alphas = superres.scheduler.alphas_cumprod.float()
    device = superres.device
    high = superres.encode(arr)
    low = superres.encode(downsample(arr, superres.low_resolution))
    residual = superres.to_residual(high, low)
    lo = (superres.resolution - crop) // 2
    window = (slice(None), slice(None), slice(lo, lo + crop), slice(lo, lo + crop))
    labels = (torch.as_tensor(np.asarray(predicted), dtype=torch.long, device=device),
              torch.full((len(arr),), superres.null_class, device=device))
    level = torch.full((len(arr),), superres.cond_noise_sample, device=device)
    gen = torch.Generator().manual_seed(int(seed))
    out = np.zeros((len(arr), len(timesteps), draws, 2), np.float32)
    for ti, t in enumerate(timesteps):
        a = alphas[int(t)].to(device)
        for d in range(draws):
            eps = torch.randn(residual.shape, generator=gen).to(device)
            cond = superres.condition(low, level, torch.randn(low.shape, generator=gen).to(device))
            x = torch.cat([a.sqrt() * residual + (1 - a).sqrt() * eps, cond], dim=1)[window]
            x, e = dihedral(x, d % 8), dihedral(eps[window], d % 8)
            for c, lab in enumerate(labels):
                for b in range(0, len(x), batch):
                    xb = x[b:b + batch]
                    with torch.no_grad(), autocast(device, precision):
                        pred = superres.unet(xb, torch.full((len(xb),), int(t), device=device),
                                             class_labels=lab[b:b + batch]).sample
                    out[b:b + len(xb), ti, d, c] = (pred.float() - e[b:b + batch]).pow(2).mean(dim=(1, 2, 3)).cpu()
    return out


def texture_gain(errors: np.ndarray, timestep_index: Sequence[int] | None = None) -> np.ndarray:
    """Per cell, the mean over the chosen noise levels (indices into the computed ones; all by default) and draws of
    log(E_class / E_null) from :func:`texture_errors`' output."""
    e = np.asarray(errors)
    if e.ndim != 4 or e.shape[-1] != 2:
        raise ValueError(f"expected (N, T, D, 2) texture errors, got shape {e.shape}")
    if timestep_index is not None:
        e = e[:, list(timestep_index)]
    return np.log(e[..., 0] / e[..., 1]).mean(axis=(1, 2))
