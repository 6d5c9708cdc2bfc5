"""Vectors that describe a cell, one per representation: the diffusion model's own (its UNet's mid-block at a noise
level; its per-class denoising errors) and the references (the baseline CNN's penultimate features; raw pixels).

Every function takes (N, H, W, 3) uint8 cells already framed like the training cells (the model's intake) and
returns (N, D) float32, the same numbers for the same cell and seed wherever it sits in a batch."""
from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from ..classify.config import ClassifierConfig
from ..classify.draw_plan import dihedral, image_seed
from ..classify.errors import estimate_errors
from ..evaluate.baseline import BaselineClassifier
from ..models.base import CytoModel
from ..runtime import autocast


class _MidBlockReached(Exception):
    """Raised by the forward hook: the up path of the UNet is not needed for the representation."""

    def __init__(self, output: torch.Tensor):
        super().__init__()
        self.output = output


def _stop_at_mid_block(module, inputs, output):
    raise _MidBlockReached(output)


def _noise_for(image: np.ndarray, seed: int, draws: int, res: int) -> torch.Tensor:
    """(draws, 3, res, res) noise from the image's own generator (pixels + seed): batch- and order-independent."""
    g = torch.Generator().manual_seed(image_seed(image, seed))
    return torch.randn((draws, 3, res, res), generator=g)


@torch.no_grad()
def diffusion_features(model: CytoModel, images: np.ndarray, noise_level: int = 100, draws: int = 4, seed: int = 0,
                       batch_size: int = 128, precision: str = "fp32", lab_condition: str = "none",
                       progress: bool = False) -> np.ndarray:
    """The UNet's mid-block output for each cell noised to timestep ``noise_level``, averaged over ``draws`` noise
    draws (draw k sees dihedral view k mod 8: a cell has no orientation) and over space: (N, channels).

    The class label is the null (unconditional) class, so the representation is not told the cell's class; the
    lab-variation conditioning (a model trained with it) is ``lab_condition``. Only the down path and the mid
    block run."""
    images = _checked(images, model.resolution)
    n_t = model.scheduler.config.num_train_timesteps
    if not 0 <= int(noise_level) < n_t:
        raise ValueError(f"noise level {noise_level} is outside the model's timesteps 0..{n_t - 1}")
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    device = model.device
    a = model.scheduler.alphas_cumprod[int(noise_level)].float()
    model.unet.eval()
    per_call = max(1, batch_size // draws)              # images per UNet call, each with all its draws
    out = None
    handle = model.unet.mid_block.register_forward_hook(_stop_at_mid_block)
    bar = tqdm(total=len(images), desc=f"diffusion t={noise_level}", unit="cell", dynamic_ncols=True,
               disable=not progress)
    try:
        for b in range(0, len(images), per_call):
            x0 = model.encode(images[b:b + per_call]).cpu()
            xs = []
            for j in range(len(x0)):
                eps = _noise_for(images[b + j], seed, draws, model.resolution)
                xs += [a.sqrt() * dihedral(x0[j], k % 8) + (1 - a).sqrt() * eps[k] for k in range(draws)]
            x = torch.stack(xs).to(device)
            t = torch.full((len(xs),), int(noise_level), device=device, dtype=torch.long)
            y = torch.full((len(xs),), model.null_class, device=device, dtype=torch.long)
            try:
                with autocast(device, precision), model.lab_condition(lab_condition):
                    model.unet(x, t, class_labels=y)
                raise RuntimeError("the UNet's mid block did not run")  # pragma: no cover - diffusers changed
            except _MidBlockReached as hit:
                feats = hit.output.float().mean(dim=(2, 3)).cpu().numpy()
            if out is None:
                out = np.zeros((len(images), feats.shape[1]), np.float32)
            out[b:b + len(x0)] = feats.reshape(len(x0), draws, -1).mean(axis=1)
            bar.update(len(x0))
    finally:
        handle.remove()
        bar.close()
    if out is None:
        return np.zeros((0, 0), np.float32)
    return out


def error_features(model: CytoModel, images: np.ndarray, trials: int = 8, seed: int = 0, t_min: int = 100,
                   t_max: int = 900, precision: str = "bf16", lab_condition: str = "none",
                   progress: bool = False) -> np.ndarray:
    """The cell's denoising error under every class (the diffusion classifier's evidence, ``exhaustive`` over
    ``trials`` paired draws), minus its mean over the classes: (N, classes). Centring removes what all classes
    share (how hard the cell is to denoise at all) and keeps the profile: which classes explain it how well."""
    images = _checked(images, model.resolution)
    cfg = ClassifierConfig(strategy="exhaustive", trials=trials, seed=seed, t_min=t_min, t_max=t_max,
                           precision=precision, lab_condition=lab_condition).validate()
    errors = estimate_errors(model, images, cfg, progress=progress).errors
    return (errors - errors.mean(axis=1, keepdims=True)).astype(np.float32)


def baseline_features(baseline: BaselineClassifier, images: np.ndarray) -> np.ndarray:
    """The baseline CNN's penultimate (globally pooled) features: what a discriminative network keeps of a cell."""
    return baseline.features(_checked(images, baseline.resolution)).astype(np.float32)


def pixel_features(images: np.ndarray) -> np.ndarray:
    """The framed cell's pixels, scaled to [0, 1]: the floor any learnt representation should beat."""
    images = np.asarray(images)
    return (images.reshape(len(images), -1) / 255.0).astype(np.float32)


def _checked(images: np.ndarray, resolution: int) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"cells must be (N, H, W, 3) uint8, got {images.shape} {images.dtype}")
    if images.shape[1:3] != (resolution, resolution):
        raise ValueError(f"cells are {images.shape[1]}x{images.shape[2]} but the network takes {resolution}x"
                         f"{resolution}; frame them with the network's intake first")
    return images
