"""The sampling schedule and the seeded noise every pipeline shares (a leaf: torch and diffusers only)."""
from __future__ import annotations

from typing import Sequence

import torch
from diffusers import DDIMScheduler


def ddim_scheduler(model) -> DDIMScheduler:
    """The deterministic DDIM sampler (eta = 0) over a model's own training noise schedule (``model.scheduler``)."""
    return DDIMScheduler.from_config(model.scheduler.config, clip_sample=False, set_alpha_to_one=False)


def ddim_timesteps(scheduler: DDIMScheduler, steps: int, strength: float = 1.0) -> torch.Tensor:
    """The last ``round(steps * strength)`` (at least one) of ``steps`` DDIM timesteps: SDEdit starts there."""
    scheduler.set_timesteps(steps)
    timesteps = scheduler.timesteps
    if strength < 1.0:
        timesteps = timesteps[steps - max(1, int(round(steps * strength))):]
    return timesteps


def seeded_noise(seeds: Sequence[int], shape: tuple[int, ...], device, stream: int = 0) -> torch.Tensor:
    """One standard normal draw of ``shape`` per seed, so an image depends on its own seed only (not on the batch).

    ``stream`` separates the draws made for one image: stream 0 is seeded with the seed itself (the base stage's
    starting noise), stream k > 0 with ``seed * 1_000_003 + k`` (the super-resolution stage's conditioning noise,
    k = 1, and starting noise, k = 2)."""
    out = []
    for s in seeds:
        g = torch.Generator().manual_seed(int(s) if stream == 0 else int(s) * 1_000_003 + stream)
        out.append(torch.randn(shape, generator=g))
    return torch.stack(out).to(device)


def min_snr_weights(alphas_cumprod: torch.Tensor, t: torch.Tensor, gamma: float | None) -> torch.Tensor:
    """Min-SNR-γ loss weights for ε-prediction (Hang et al. 2023): min(SNR, γ) / SNR; ones when ``gamma`` is None.
    The training loss and the classifier's "min-snr" weighting."""
    if gamma is None:
        return torch.ones_like(t, dtype=torch.float32)
    a = alphas_cumprod[t].float()
    snr = a / (1 - a)
    return torch.clamp(snr, max=gamma) / snr
