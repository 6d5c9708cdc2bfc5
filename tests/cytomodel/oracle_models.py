"""Constructed diffusion models whose errors are known in closed form, for classifier tests (imported by the test
modules of this folder, as tests/study_app's conftest_helpers is)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
from diffusers import DDPMScheduler

from cytomodel.models import CytoModel


class OracleUNet(torch.nn.Module):
    """Knows the clean image is 0 (mid-grey), so it can return the true noise; label c adds scales[c] times a shifted
    copy of it, so the error under label c is ≈ scales[c]² · mean(ε²) (a label past the classes is the null class)."""

    def __init__(self, scheduler, scales):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.alphas = scheduler.alphas_cumprod
        self.scales = torch.tensor(scales)
        self.config = SimpleNamespace()

    def forward(self, x, t, class_labels):
        a = self.alphas[t.long()].view(-1, 1, 1, 1).float()
        eps = x / (1 - a).sqrt()
        mixed = torch.roll(eps, shifts=1, dims=-1) * 0.7 + torch.roll(eps, shifts=2, dims=-2) * 0.7
        return SimpleNamespace(sample=eps + self.scales[class_labels].view(-1, 1, 1, 1) * mixed)


def oracle_model(scales, null_scale: float | None = None) -> CytoModel:
    """An 8-px model with one class per entry of ``scales`` (and a null class of ``null_scale`` when given)."""
    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="epsilon")
    v = 128 / 255.0  # images of value 128 encode to exactly 0
    labels = list(scales) + ([] if null_scale is None else [null_scale])
    return CytoModel(OracleUNet(sched, labels), sched, [f"c{i}" for i in range(len(scales))], 8, [v] * 3, [0.2] * 3)


def grey(n):
    """n distinct mid-grey 8 px images (the draw plan's seed derives from the pixels): one corner pixel differs."""
    images = np.full((n, 8, 8, 3), 128, np.uint8)
    images[:, 0, 0, 0] = np.arange(n)
    return images
