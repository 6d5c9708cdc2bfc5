"""The super-resolution stage of a cascade (Ho et al. 2021; Saharia et al. 2021): a fully convolutional diffusers
``UNet2DModel`` that turns a low-resolution cell into a high-resolution one.

The network sees, channel-stacked, the noisy high-resolution *residual* (image minus the bicubic upsampling of its
low-resolution version, scaled to unit-ish variance), the upsampled low-resolution image after conditioning
augmentation (Gaussian noise of std ``level`` in model space) and a constant map of that level. Predicting the
residual leaves the network only the detail to draw; the augmentation teaches it to tolerate the base stage's
imperfections. Trained on random crops and sampled on whole images, so it has no attention layers.

On disk it is a folder that plain diffusers reads (``UNet2DModel.from_pretrained``, ``DDPMScheduler.from_pretrained``)
plus ``cytomodel.json`` with ``stage = "superres"`` and the conventions above. Sampling:
:func:`cytomodel.pipelines.superres.super_resolve`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import UNet2DModel
from PIL import Image

from .base import CytoModel

if TYPE_CHECKING:  # the annotation only: models/ does not import train/
    from ..train.config import TrainConfig

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
