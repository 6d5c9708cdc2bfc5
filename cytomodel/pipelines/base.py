"""Sampling a base stage: class-conditional generation with classifier-free guidance (deterministic DDIM over the
model's own noise schedule), and SDEdit morphs that noise a real image to the DDIM step a ``strength`` names and
denoise it under a class. Each image's noise comes from its own seed, so an image does not depend on the batch."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..models.base import CytoModel
from ..runtime import autocast
from .scheduling import ddim_scheduler, ddim_timesteps, seeded_noise


@torch.no_grad()
def sample(model: CytoModel, class_ids: Sequence[int], seeds: Sequence[int], guidance: float = 2.0,
           steps: int = 50, init_images: np.ndarray | None = None, strength: float = 1.0,
           precision: str = "bf16", batch_size: int = 64, progress: bool = False) -> np.ndarray:
    """Generate ``len(class_ids)`` images (N, H, W, 3 uint8).

    With ``init_images`` (N, H, W, 3 uint8 at the model's resolution) this is SDEdit: each image is noised to the
    DDIM step that ``strength`` names (0 = unchanged, 1 = pure noise) and denoised under its class.
    """
    if len(class_ids) != len(seeds):
        raise ValueError("class_ids and seeds must have the same length")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if guidance < 0:
        raise ValueError(f"guidance must be >= 0, got {guidance}")
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    if init_images is not None and len(init_images) != len(class_ids):
        raise ValueError("init_images must have one image per class id")
    if init_images is not None and strength == 0.0:
        return np.asarray(init_images, dtype=np.uint8).copy()
    device = model.device
    res = model.resolution
    scheduler = ddim_scheduler(model)
    timesteps = ddim_timesteps(scheduler, steps, strength if init_images is not None else 1.0)
    model.unet.eval()
    out = np.empty((len(class_ids), res, res, 3), dtype=np.uint8)
    chunks = range(0, len(class_ids), batch_size)
    if progress:
        chunks = tqdm(chunks, desc="sampling", unit="batch")
    for start in chunks:
        ids = torch.tensor([model.class_index(c) for c in class_ids[start:start + batch_size]], device=device)
        noise = seeded_noise(seeds[start:start + batch_size], (3, res, res), device)
        if init_images is not None and strength < 1.0:
            x0 = model.encode(init_images[start:start + batch_size])
            x = scheduler.add_noise(x0, noise, timesteps[:1].repeat(len(ids)))
        else:
            x = noise * scheduler.init_noise_sigma
        null = torch.full_like(ids, model.null_class)
        for t in timesteps:
            if guidance == 1.0:
                with autocast(device, precision):
                    eps = model.unet(x, t, class_labels=ids).sample.float()
            else:
                with autocast(device, precision):
                    both = model.unet(torch.cat([x, x]), t, class_labels=torch.cat([ids, null])).sample.float()
                cond, uncond = both.chunk(2)
                eps = uncond + guidance * (cond - uncond)
            x = scheduler.step(eps, t, x, eta=0.0).prev_sample
        out[start:start + len(ids)] = model.decode(x)
    return out
