"""Sampling a super-resolution stage (Ho et al. 2021; Saharia et al. 2021): the high-resolution residual is drawn by
DDIM (deterministic by default; ``eta`` adds fresh noise per step) for each low-resolution cell, given its bicubic upsampling after a small fixed conditioning
augmentation (:class:`~cytomodel.models.superres.SuperResModel`), one UNet pass per step (no guidance), and added to
that upsampling. With ``init_images`` it is SDEdit at the high resolution: the real cell's own detail is noised to
``strength`` and redrawn for the (morphed) low-resolution cell."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..models.superres import SuperResModel, downsample
from ..runtime import autocast
from .scheduling import ddim_scheduler, ddim_timesteps, seeded_noise


@torch.no_grad()
def super_resolve(model: SuperResModel, low_images: np.ndarray, class_ids: Sequence[int | str] | None,
                  seeds: Sequence[int], steps: int = 25, level: float | None = None,
                  init_images: np.ndarray | None = None, strength: float = 1.0, precision: str = "bf16",
                  batch_size: int = 16, progress: bool = False, eta: float = 0.0) -> np.ndarray:
    """Draw (N, H, W, 3) uint8 high-resolution cells for (N, h, w, 3) uint8 low-resolution ones.

    ``class_ids`` None samples unconditionally (the null class); ``level`` is the conditioning augmentation (default:
    the stage's ``cond_noise_sample``). With ``init_images`` (N, H, W, 3) this is SDEdit at the high resolution: each
    init image's own detail (its residual against its own low-res version) is noised to ``strength`` and redrawn for
    ``low_images`` — so a morphed low-res cell keeps the real cell's detail in proportion to 1 - strength.
    ``eta`` is DDIM's η: 0 deterministic, 1 ancestral (DDPM-like: fresh noise at every step, from the image's seed).
    """
    low_images = model.check_low_res(low_images)
    n = len(low_images)
    if len(seeds) != n or (class_ids is not None and len(class_ids) != n):
        raise ValueError("low_images, class_ids and seeds must have the same length")
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    if init_images is not None:
        init_images = np.asarray(init_images)
        if init_images.shape != (n, model.resolution, model.resolution, 3):
            raise ValueError(f"init_images must be (N, {model.resolution}, {model.resolution}, 3), got "
                             f"{init_images.shape}")
        if strength == 0.0:
            return init_images.astype(np.uint8).copy()
    level = model.cond_noise_sample if level is None else float(level)
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be in [0, 1] (0 = deterministic DDIM, 1 = ancestral), got {eta}")
    if not 0.0 <= level <= model.cond_noise_max:
        raise ValueError(f"level must be in [0, {model.cond_noise_max}] (the range this stage was trained on), "
                         f"got {level}")
    device = model.device
    scheduler = ddim_scheduler(model)
    timesteps = ddim_timesteps(scheduler, steps, strength if init_images is not None else 1.0)
    model.unet.eval()
    res = model.resolution
    out = np.empty((n, res, res, 3), dtype=np.uint8)
    chunks = range(0, n, batch_size)
    if progress:
        chunks = tqdm(chunks, desc="super-resolution", unit="batch")
    for start in chunks:
        sl = slice(start, start + batch_size)
        batch_seeds = seeds[sl]
        low = model.encode(low_images[sl])
        b = len(low)
        if class_ids is None:
            ids = torch.full((b,), model.null_class, device=device)
        else:
            ids = torch.tensor([model.class_index(c) for c in class_ids[sl]], device=device)
        levels = torch.full((b,), level, device=device)
        cond = model.condition(low, levels, seeded_noise(batch_seeds, tuple(low.shape[1:]), device, stream=1))
        noise = seeded_noise(batch_seeds, (3, res, res), device, stream=2)
        if init_images is not None and strength < 1.0:
            init = init_images[sl]
            x0 = model.to_residual(model.encode(init), model.encode(downsample(init, model.low_resolution)))
            x = scheduler.add_noise(x0, noise, timesteps[:1].repeat(b))
        else:
            x = noise * scheduler.init_noise_sigma
        for i, t in enumerate(timesteps):
            with autocast(device, precision):
                eps = model.unet(torch.cat([x, cond], dim=1), t, class_labels=ids).sample.float()
            fresh = seeded_noise(batch_seeds, (3, res, res), device, stream=3 + i) if eta > 0 else None
            x = scheduler.step(eps, t, x, eta=eta, variance_noise=fresh).prev_sample
        out[start:start + b] = model.decode(model.from_residual(x, low))
    return out
