"""The super-resolution stage of a cascade (Ho et al. 2021; Saharia et al. 2021): a fully convolutional diffusers
``UNet2DModel`` that turns a low-resolution cell into a high-resolution one.

The network sees, channel-stacked, the noisy high-resolution *residual* (image minus the bicubic upsampling of its
low-resolution version, scaled to unit-ish variance), the upsampled low-resolution image after conditioning
augmentation (Gaussian noise of std ``level`` in model space) and a constant map of that level. Predicting the
residual leaves the network only the detail to draw; the augmentation teaches it to tolerate the base stage's
imperfections. Trained on random crops and sampled on whole images, so it has no attention layers.

On disk it is a folder that plain diffusers reads (``UNet2DModel.from_pretrained``, ``DDPMScheduler.from_pretrained``)
plus ``cytomodel.json`` with ``stage = "superres"`` and the conventions above.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import UNet2DModel

from .config import TrainConfig
from .model import CytoModel

COND_CHANNELS = 4  # upsampled low-res RGB + the augmentation level


def build_superres_unet(cfg: TrainConfig, num_classes: int) -> UNet2DModel:
    """No attention (crop-trained, sampled whole); class index ``num_classes`` is the null class."""
    levels = len(cfg.block_out_channels)
    return UNet2DModel(
        sample_size=cfg.resolution, in_channels=3 + COND_CHANNELS, out_channels=3,
        block_out_channels=tuple(cfg.block_out_channels), layers_per_block=cfg.layers_per_block,
        down_block_types=("DownBlock2D",) * levels, up_block_types=("UpBlock2D",) * levels,
        num_class_embeds=num_classes + 1, norm_num_groups=cfg.norm_num_groups, dropout=cfg.dropout,
        add_attention=False,
    )


def downsample(images: np.ndarray, size: int) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, size, size, 3) uint8 by PIL's Lanczos, the resize of the base stage's preprocessing:
    how a cascade makes the low-res version of a real high-res cell (for training and for SDEdit morphs)."""
    from PIL import Image

    arr = np.asarray(images)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"expected (N, H, W, 3) images, got shape {arr.shape}")
    if arr.shape[1] == size and arr.shape[2] == size:
        return arr.astype(np.uint8, copy=True)
    return np.stack([np.asarray(Image.fromarray(a).resize((size, size), Image.Resampling.LANCZOS)) for a in arr])


def upsample(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bicubic upsampling in model space: the one resampling both training and sampling use."""
    return F.interpolate(x.float(), size=(size, size), mode="bicubic", align_corners=False)


def residual_scale_of(high: torch.Tensor, low: torch.Tensor) -> float:
    """The factor that gives the residual (high - upsample(low)), both in model space, a std of 0.5 like the images."""
    std = float((high.float() - upsample(low, high.shape[-1])).std())
    return round(0.5 / max(std, 1e-3), 4)


@dataclass
class SuperResModel(CytoModel):
    """The second stage: ``resolution`` is its output size, ``low_resolution`` the size it takes."""
    low_resolution: int = 32
    residual_scale: float = 1.0
    cond_noise_max: float = 0.3
    cond_noise_sample: float = 0.05

    STAGE = "superres"

    def condition(self, low: torch.Tensor, level: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """(B, 3, h, w) low-res in model space -> (B, 4, H, W): upsampled low-res after augmentation + level map.

        ``level`` (B,) is the augmentation's std in model space; ``noise`` (B, 3, h, w) a standard normal draw.
        """
        augmented = low + level.view(-1, 1, 1, 1) * noise
        up = upsample(augmented, self.resolution)
        level_map = (level / self.cond_noise_max).view(-1, 1, 1, 1).expand(-1, 1, *up.shape[-2:])
        return torch.cat([up, level_map.to(up.dtype)], dim=1)

    def to_residual(self, high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        return (high - upsample(low, self.resolution)) * self.residual_scale

    def from_residual(self, residual: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        return upsample(low, self.resolution) + residual.float() / self.residual_scale

    def check_low_res(self, images: np.ndarray, what: str = "low-res input") -> np.ndarray:
        arr = np.asarray(images)
        if arr.ndim != 4 or arr.shape[1:] != (self.low_resolution, self.low_resolution, 3):
            raise ValueError(f"{what} must be (N, {self.low_resolution}, {self.low_resolution}, 3) images, the "
                             f"size this super-resolution stage takes; got shape {arr.shape}. Resize the images "
                             "or use the base stage this stage was trained with")
        return arr

    def stage_metadata(self) -> dict:
        return {"stage": self.STAGE, "low_resolution": self.low_resolution, "superres": {
            "residual_scale": self.residual_scale, "cond_noise_max": self.cond_noise_max,
            "cond_noise_sample": self.cond_noise_sample, "upsampling": "bicubic (torch, align_corners=False)",
            "inputs": "noisy residual (3) + upsampled augmented low-res (3) + level / cond_noise_max (1)",
            "residual": "(image - upsample(low)) * residual_scale, model space"}}

    @classmethod
    def from_metadata_fields(cls, meta: dict) -> dict:
        sr = meta.get("superres", {})
        return dict(low_resolution=int(meta["low_resolution"]), residual_scale=float(sr["residual_scale"]),
                    cond_noise_max=float(sr["cond_noise_max"]), cond_noise_sample=float(sr["cond_noise_sample"]))


def _noise(seeds: Sequence[int], shape: tuple[int, ...], device, salt: int = 0) -> torch.Tensor:
    """One independent draw per seed (batch-size independent); ``salt`` separates draws made for one image."""
    out = []
    for s in seeds:
        g = torch.Generator().manual_seed(int(s) * 1_000_003 + salt)
        out.append(torch.randn(shape, generator=g))
    return torch.stack(out).to(device)


@torch.no_grad()
def super_resolve(model: SuperResModel, low_images: np.ndarray, class_ids: Sequence[int | str] | None,
                  seeds: Sequence[int], steps: int = 25, level: float | None = None,
                  init_images: np.ndarray | None = None, strength: float = 1.0, precision: str = "bf16",
                  batch_size: int = 16, progress: bool = False) -> np.ndarray:
    """Draw (N, H, W, 3) uint8 high-resolution cells for (N, h, w, 3) uint8 low-resolution ones.

    ``class_ids`` None samples unconditionally (the null class); ``level`` is the conditioning augmentation (default:
    the stage's ``cond_noise_sample``). With ``init_images`` (N, H, W, 3) this is SDEdit at the high resolution: each
    init image's own detail (its residual against its own low-res version) is noised to ``strength`` and redrawn for
    ``low_images`` — so a morphed low-res cell keeps the real cell's detail in proportion to 1 - strength.
    """
    from .generation import ddim_timesteps, ddim_scheduler
    from .runtime import autocast

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
        from tqdm.auto import tqdm
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
        cond = model.condition(low, levels, _noise(batch_seeds, tuple(low.shape[1:]), device, salt=1))
        noise = _noise(batch_seeds, (3, res, res), device, salt=2)
        if init_images is not None and strength < 1.0:
            init = init_images[sl]
            x0 = model.to_residual(model.encode(init), model.encode(downsample(init, model.low_resolution)))
            x = scheduler.add_noise(x0, noise, timesteps[:1].repeat(b))
        else:
            x = noise * scheduler.init_noise_sigma
        for t in timesteps:
            with autocast(device, precision):
                eps = model.unet(torch.cat([x, cond], dim=1), t, class_labels=ids).sample.float()
            x = scheduler.step(eps, t, x, eta=0.0).prev_sample
        out[start:start + b] = model.decode(model.from_residual(x, low))
    return out
