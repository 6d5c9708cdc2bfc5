"""Sampling a cascade: the base stage draws each cell at low resolution (with guidance), the super-resolution stage
draws its detail, both from the image's own seed.

SDEdit morphs share one strength s between the stages: the base stage morphs the cell's low-res version at s (0 =
unchanged, 1 = pure noise), and the super-resolution stage noises the cell's own high-frequency residual (the cell
minus the upsampling of its low-res version) to the same s and redraws it for the morphed low-res cell. s = 0 returns
the real image byte for byte; s = 1 is a fully generated cell; in between the coarse change comes from the base
stage and the detail is redrawn in proportion.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..models.cascade import Cascade
from .base import sample
from .superres import super_resolve


@torch.no_grad()
def sample_cascade(cascade: Cascade, class_ids: Sequence[int | str], seeds: Sequence[int], guidance: float = 2.0,
                   steps: int = 50, superres_steps: int | None = None, superres_level: float | None = None,
                   init_images: np.ndarray | None = None, strength: float = 1.0, precision: str = "bf16",
                   batch_size: int = 64, progress: bool = False, superres_eta: float | None = None) -> np.ndarray:
    """(N, H, W, 3) uint8 cells at the cascade's resolution: the base stage draws each cell at low resolution
    (``guidance``, ``steps``), the super-resolution stage draws its detail (``superres_steps``, conditioned on its
    class, conditioning augmentation ``superres_level``, DDIM η ``superres_eta``; defaults: the cascade's own). Both stages use the image's own seed, so an image does not
    depend on the batch. With ``init_images`` (N, H, W, 3) at the cascade's resolution this is an SDEdit morph at
    ``strength`` (module docstring)."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    low_init = None
    if init_images is not None:
        init_images = np.asarray(init_images)
        want = (len(class_ids), cascade.resolution, cascade.resolution, 3)
        if init_images.shape != want:
            raise ValueError(f"init_images must be {want} (one {cascade.resolution}-px image per class id), got "
                             f"{init_images.shape}; preprocess them with cascade.preprocess")
        if strength == 0.0:
            return init_images.astype(np.uint8).copy()
        low_init = cascade.to_classifier_input(init_images)
    low = sample(cascade.base, class_ids, seeds, guidance=guidance, steps=steps, init_images=low_init,
                 strength=strength, precision=precision, batch_size=batch_size, progress=progress)
    return super_resolve(cascade.superres, low, class_ids, seeds, steps=superres_steps or cascade.superres_steps,
                         level=superres_level, init_images=init_images, strength=strength, precision=precision,
                         batch_size=min(batch_size, 16), progress=progress,
                         eta=cascade.superres_eta if superres_eta is None else superres_eta)
