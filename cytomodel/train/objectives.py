"""What one training step optimises: the base stage's and the super-resolution stage's objectives (batches drawn
from the in-memory uint8 images, augmented, noised; ε-MSE with Min-SNR-γ weights), and the sample grids a run
writes as it goes."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..data import ImageArrays, load_arrays
from ..models.base import CytoModel, build_unet
from ..models.lab_embedding import AugmentationEmbedding, encode
from ..models.superres import SuperResModel, build_superres_unet, downsample, residual_scale_of
from ..pipelines.base import sample
from ..pipelines.generate import image_grid
from ..pipelines.scheduling import min_snr_weights
from ..pipelines.superres import super_resolve
from . import lab_augmentation as lab
from .augmentation import augment, augment_views
from .config import TrainConfig


class BaseObjective:
    """One step's loss for the base stage: ε-MSE of the class-conditional UNet on augmented, noised images."""

    def __init__(self, cfg: TrainConfig, data: ImageArrays, scheduler, mean, std, device) -> None:
        self.cfg, self.data, self.scheduler, self.device = cfg, data, scheduler, device
        self.mean, self.std = mean, std
        self.images = torch.from_numpy(np.ascontiguousarray(data.images.transpose(0, 3, 1, 2))).to(device)
        self.labels = torch.from_numpy(data.labels).to(device)
        self.mean_t = torch.tensor(mean, device=device).view(1, 3, 1, 1)
        self.std_t = torch.tensor(std, device=device).view(1, 3, 1, 1)
        self.alphas = scheduler.alphas_cumprod.to(device)
        self.null = len(data.class_names)
        self.augmentation = None  # the lab-variation embedding, made with the network when cfg.lab_augment > 0
        self.source = None
        if cfg.lab_augment > 0:
            self.source = _source_images(cfg, data)

    def state(self) -> dict[str, Any]:
        """What a checkpoint must record to rebuild this objective exactly."""
        return {}

    def build_unet(self):
        unet = build_unet(self.cfg, len(self.data.class_names))
        if self.cfg.lab_augment > 0:
            self.augmentation = AugmentationEmbedding(unet.config.block_out_channels[0] * 4).to(self.device)
        return unet

    def extra_modules(self) -> list[torch.nn.Module]:
        """Trained modules beside the UNet (optimised, averaged and checkpointed with it)."""
        return [self.augmentation] if self.augmentation is not None else []

    def model(self, unet) -> CytoModel:
        return CytoModel(unet, self.scheduler, list(self.data.class_names), self.cfg.resolution, self.mean,
                         self.std, self.cfg.crop_fraction, augmentation=self.augmentation)

    def _to_model_space(self, x: torch.Tensor) -> torch.Tensor:
        return (x.to(self.device) - self.mean_t) / self.std_t * 0.5

    def _drop_classes(self, y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        drop = torch.rand(len(y), generator=gen).to(self.device) < self.cfg.class_dropout
        y[drop] = self.null
        return y

    def _weighted_eps_loss(self, pred, noise, t) -> torch.Tensor:
        mse = F.mse_loss(pred.float(), noise, reduction="none").mean(dim=(1, 2, 3))
        return (mse * min_snr_weights(self.alphas, t, self.cfg.min_snr_gamma)).mean()

    def loss(self, unet, gen: torch.Generator, autocast) -> torch.Tensor:
        cfg = self.cfg
        idx = torch.randint(0, len(self.images), (cfg.batch_size,), generator=gen)
        if self.augmentation is None:
            x0 = self._to_model_space(augment(self.images[idx].cpu(), cfg, gen))
            condition = contextlib.nullcontext()
        else:
            x, vec = self._lab_variation(idx, gen)
            x0 = self._to_model_space(augment(x, cfg, gen))
            self.augmentation.attach(unet)
            condition = self.augmentation.conditioned_on(vec.to(self.device))
        y = self._drop_classes(self.labels[idx].clone(), gen)
        noise = torch.randn(x0.shape, generator=gen).to(self.device)
        t = torch.randint(0, cfg.num_train_timesteps, (cfg.batch_size,), generator=gen).to(self.device)
        xt = self.scheduler.add_noise(x0, noise, t)
        with autocast(), condition:
            pred = unet(xt, t, class_labels=y).sample
        return self._weighted_eps_loss(pred, noise, t)

    def _lab_variation(self, idx: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch in [0, 1] at the training resolution, a share of it given another lab's look at the source
        resolution and downsampled; and each image's conditioning vector (some withheld as unknown)."""
        cfg, n = self.cfg, len(idx)
        params = lab.sample_parameters(n, gen, cfg.lab_variation, p_augment=cfg.lab_augment)
        unknown = torch.rand(n, generator=gen) < cfg.lab_unknown
        x = lab.vary_rows(self.images[idx].cpu().float() / 255.0, self.source, idx, params, gen)
        return x, encode(params, unknown)

    def sample_grid(self, model: CytoModel, path: Path, precision: str) -> None:
        k = 8
        cls = [c for c in range(len(self.data.class_names)) for _ in range(k)]
        imgs = sample(model, cls, list(range(len(cls))), guidance=2.0, steps=25, precision=precision)
        image_grid(imgs, rows=len(self.data.class_names), upscale=2).save(path)


class SuperResObjective(BaseObjective):
    """One step's loss for the super-resolution stage: ε-MSE on random crops of the noised residual, given the
    upsampled low-res image after conditioning augmentation (see :mod:`cytomodel.models.superres`)."""

    def __init__(self, cfg: TrainConfig, data: ImageArrays, scheduler, mean, std, device,
                 residual_scale: float | None = None) -> None:
        super().__init__(cfg, data, scheduler, mean, std, device)
        low = downsample(data.images, cfg.low_resolution)
        self.low = torch.from_numpy(np.ascontiguousarray(low.transpose(0, 3, 1, 2))).to(device)
        if residual_scale is None:
            probe = slice(0, min(1024, len(self.images)))
            residual_scale = residual_scale_of(self._to_model_space(self.images[probe].float() / 255),
                                               self._to_model_space(self.low[probe].float() / 255))
        self.residual_scale = float(residual_scale)

    def state(self) -> dict[str, Any]:
        return {"residual_scale": self.residual_scale}

    def build_unet(self):
        return build_superres_unet(self.cfg, len(self.data.class_names))

    def model(self, unet):
        c = self.cfg
        return SuperResModel(unet, self.scheduler, list(self.data.class_names), c.resolution, self.mean, self.std,
                             c.crop_fraction, low_resolution=c.low_resolution, residual_scale=self.residual_scale,
                             cond_noise_max=c.cond_noise_max, cond_noise_sample=c.cond_noise_sample)

    def loss(self, unet, gen: torch.Generator, autocast) -> torch.Tensor:
        cfg, b = self.cfg, self.cfg.batch_size
        stage = self.model(unet)
        idx = torch.randint(0, len(self.images), (b,), generator=gen)
        high, low = (self._to_model_space(v) for v in augment_views([self.images[idx].cpu(), self.low[idx].cpu()],
                                                                    cfg, gen))
        level = (torch.rand(b, generator=gen) * cfg.cond_noise_max).to(self.device)
        cond = stage.condition(low, level, torch.randn(low.shape, generator=gen).to(self.device))
        x0 = stage.to_residual(high, low)
        x0, cond = _random_crops([x0, cond], cfg.crop_size or cfg.resolution, gen)
        y = self._drop_classes(self.labels[idx].clone(), gen)
        noise = torch.randn(x0.shape, generator=gen).to(self.device)
        t = torch.randint(0, cfg.num_train_timesteps, (b,), generator=gen).to(self.device)
        xt = self.scheduler.add_noise(x0, noise, t)
        with autocast():
            pred = unet(torch.cat([xt, cond], dim=1), t, class_labels=y).sample
        return self._weighted_eps_loss(pred, noise, t)

    def sample_grid(self, model, path: Path, precision: str) -> None:
        """Rows of (bicubic upsampling | super-resolved | real) for 4 fixed training cells per class."""
        k = 4
        pick = np.concatenate([np.flatnonzero(self.data.labels == c)[:k] for c in range(len(self.data.class_names))])
        low = self.low[pick].permute(0, 2, 3, 1).cpu().numpy()
        out = super_resolve(model, low, self.data.labels[pick].tolist(), pick.tolist(), steps=25,
                            precision=precision)
        bicubic = model.decode(model.from_residual(torch.zeros(len(pick), 3, model.resolution, model.resolution),
                                                   model.encode(low)))
        tiles = np.concatenate([np.stack([a, b, c]) for a, b, c in zip(bicubic, out, self.data.images[pick])])
        image_grid(tiles, rows=len(self.data.class_names)).save(path)


def _source_images(cfg: TrainConfig, data: ImageArrays) -> torch.Tensor:
    """The training images at ``cfg.source_resolution`` (N, 3, S, S) uint8, where lab variation is applied."""
    size = cfg.source_resolution or cfg.resolution
    if size == cfg.resolution:
        arr = data.images
    else:
        src = load_arrays(data.records, size, cfg.crop_fraction, class_names=data.class_names, strict=True)
        if len(src.images) != len(data.images) or not np.array_equal(src.labels, data.labels):
            raise ValueError("the source images for lab variation do not match the training images one to one")
        arr = src.images
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2)))


def _random_crops(views: list[torch.Tensor], size: int, gen: torch.Generator) -> list[torch.Tensor]:
    """The same random ``size`` x ``size`` window of each sample in every view (views share H and W)."""
    b, _, h, w = views[0].shape
    if size >= h and size >= w:
        return views
    top = torch.randint(0, h - size + 1, (b,), generator=gen).tolist()
    left = torch.randint(0, w - size + 1, (b,), generator=gen).tolist()
    return [torch.stack([v[i, :, y:y + size, x:x + size] for i, (y, x) in enumerate(zip(top, left))])
            for v in views]


OBJECTIVES = {"base": BaseObjective, "superres": SuperResObjective}
