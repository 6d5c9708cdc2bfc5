"""The class-conditional diffusion model: a diffusers ``UNet2DModel`` with a class embedding (+ a null class for
classifier-free guidance), its noise schedule, and the metadata needed to use it (classes, preprocessing).

On disk a model is a folder that plain diffusers can read::

    config.json + diffusion_pytorch_model.safetensors   UNet2DModel.from_pretrained(dir)
    scheduler_config.json                               DDPMScheduler.from_pretrained(dir)
    cytomodel.json                                      classes, resolution, preprocessing, provenance
"""
from __future__ import annotations

import contextlib
import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from diffusers import DDPMScheduler, UNet2DModel
from diffusers.utils import logging as diffusers_logging
from safetensors.torch import load_file, save_file

from cytocore.provenance import sha256_file, write_json

from ..data import Intake, frame_or_raise
from .lab_embedding import WEIGHTS_FILE as LAB_WEIGHTS_FILE
from .lab_embedding import AugmentationEmbedding, unknown_vector

if TYPE_CHECKING:  # the annotation only: models/ does not import train/
    from ..train.config import TrainConfig

METADATA_FILE = "cytomodel.json"
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
FORMAT_VERSION = 1


def build_unet(cfg: TrainConfig, num_classes: int) -> UNet2DModel:
    """A UNet2DModel sized by the config; class index ``num_classes`` is the null (unconditional) class."""
    levels = len(cfg.block_out_channels)
    attn = cfg.attention_levels
    down = tuple("AttnDownBlock2D" if i >= levels - attn else "DownBlock2D" for i in range(levels))
    up = tuple("AttnUpBlock2D" if i < attn else "UpBlock2D" for i in range(levels))
    return UNet2DModel(
        sample_size=cfg.resolution, in_channels=3, out_channels=3,
        block_out_channels=tuple(cfg.block_out_channels), layers_per_block=cfg.layers_per_block,
        down_block_types=down, up_block_types=up, num_class_embeds=num_classes + 1,
        attention_head_dim=cfg.attention_head_dim or cfg.block_out_channels[-1],
        norm_num_groups=cfg.norm_num_groups, dropout=cfg.dropout,
    )


def build_scheduler(cfg: TrainConfig) -> DDPMScheduler:
    return DDPMScheduler(num_train_timesteps=cfg.num_train_timesteps, beta_schedule=cfg.beta_schedule,
                         prediction_type="epsilon", clip_sample=False)


@dataclass
class CytoModel:
    """UNet + noise schedule + what the numbers mean. Pixel space is standardised per channel
    (``(x/255 - mean) / std * 0.5``) so the diffusion never has to learn the stain's global colour."""
    unet: UNet2DModel
    scheduler: DDPMScheduler
    class_names: list[str]
    resolution: int
    pixel_mean: list[float]
    pixel_std: list[float]
    crop_fraction: float = 1.0
    metadata: dict[str, Any] = field(default_factory=dict)
    # the lab-variation embedding (.lab_embedding) of a model trained with lab_augment, else None
    augmentation: AugmentationEmbedding | None = None

    STAGE = "base"

    def __post_init__(self) -> None:
        if self.augmentation is not None:
            self.augmentation.attach(self.unet)

    def lab_condition(self, kind: str):
        """A context in which UNet calls see the lab conditioning ``kind``: "none" (the training lab's look, what
        the UNet alone computes) or "unknown" (another lab's cell, its stain and scale not told)."""
        if kind == "none":
            return contextlib.nullcontext()
        if kind != "unknown":
            raise ValueError(f"lab condition must be 'none' or 'unknown', not {kind!r}")
        if self.augmentation is None:
            raise ValueError("this model was not trained with lab variation (lab_augment), so it has no 'unknown' "
                             "lab condition; classify with lab_condition='none'")
        return self.augmentation.conditioned_on(unknown_vector(1).to(self.device))

    @property
    def null_class(self) -> int:
        return len(self.class_names)

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def classifier_model(self) -> "CytoModel":
        """The stage the diffusion classifier runs on (a cascade answers with its base stage)."""
        return self

    def to_classifier_input(self, images: np.ndarray) -> np.ndarray:
        """Images at this model's resolution, as the classifier takes them (a cascade downsamples)."""
        return np.asarray(images)

    def class_index(self, name: str | int) -> int:
        if isinstance(name, (int, np.integer)):
            if not 0 <= int(name) < len(self.class_names):
                raise ValueError(f"class index {name} out of range 0..{len(self.class_names) - 1}")
            return int(name)
        if name not in self.class_names:
            raise ValueError(f"unknown class {name!r}; this model knows: {', '.join(self.class_names)}")
        return self.class_names.index(name)

    # --------------------------------------------------------------- pixel <-> model space
    def _stats(self, device) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.tensor(self.pixel_mean, device=device).view(1, 3, 1, 1)
        std = torch.tensor(self.pixel_std, device=device).view(1, 3, 1, 1)
        return mean, std

    def encode(self, images_uint8: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(N, H, W, 3) uint8 -> (N, 3, H, W) float in model space."""
        x = torch.as_tensor(np.asarray(images_uint8)).to(self.device)
        x = x.permute(0, 3, 1, 2).float() / 255.0
        mean, std = self._stats(x.device)
        return (x - mean) / std * 0.5

    def decode(self, x: torch.Tensor) -> np.ndarray:
        """(N, 3, H, W) model space -> (N, H, W, 3) uint8."""
        mean, std = self._stats(x.device)
        pix = (x.float() / 0.5 * std + mean).clamp(0, 1)
        return (pix * 255.0 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()

    def intake(self, um_per_px: float | None = None, stain: str = "auto") -> Intake:
        """How input images reach this model: framed as its training cells were (:mod:`cytomodel.data.intake`); by
        default (``stain="auto"``) a set lit unlike them is stain-normalised first."""
        return Intake.for_record(self.metadata, self.resolution, self.crop_fraction, um_per_px, stain)

    def preprocess(self, image) -> np.ndarray:
        """Any image (path, bytes, PIL) -> (H, W, 3) uint8 at this model's resolution, framed like the training
        cells (:meth:`intake`); an image that cannot be framed (no cell, two cells, ...) is a DataError."""
        return frame_or_raise(self.intake(), image)

    # --------------------------------------------------------------- persistence
    def save_pretrained(self, path: str | Path, dtype: torch.dtype = torch.float32,
                        extra: dict[str, Any] | None = None) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        unet = self.unet
        if dtype != torch.float32:
            level = diffusers_logging.get_verbosity()
            diffusers_logging.set_verbosity_error()  # the cast is deliberate: a distribution copy of the weights
            try:
                unet = copy.deepcopy(self.unet).to(dtype)
            finally:
                diffusers_logging.set_verbosity(level)
        unet.save_pretrained(path, safe_serialization=True)
        self.scheduler.save_pretrained(path)
        meta = {**self.metadata, **(extra or {}), **self.stage_metadata()}
        meta.pop("augmentation", None)
        if self.augmentation is not None:
            save_file({k: v.detach().float().cpu().contiguous() for k, v in self.augmentation.state_dict().items()},
                      str(path / LAB_WEIGHTS_FILE))
            meta["augmentation"] = {**self.augmentation.config(), "weights": LAB_WEIGHTS_FILE}
        meta.update(format_version=FORMAT_VERSION, class_names=self.class_names, null_class=self.null_class,
                    resolution=self.resolution, preprocessing={
                        "crop_fraction": self.crop_fraction, "pixel_mean": self.pixel_mean,
                        "pixel_std": self.pixel_std, "resize": "lanczos", "model_space": "(x/255-mean)/std*0.5"},
                    weights_dtype=str(dtype).replace("torch.", ""))
        write_json(path / METADATA_FILE, meta)
        self.metadata = meta
        return path

    def stage_metadata(self) -> dict[str, Any]:
        """What this kind of stage adds to ``cytomodel.json``."""
        return {"stage": self.STAGE}

    @classmethod
    def from_metadata_fields(cls, meta: dict[str, Any]) -> dict[str, Any]:
        """Constructor arguments beyond the common ones, read back from ``cytomodel.json``."""
        return {}

    @classmethod
    def from_record(cls, path: Path, meta: dict[str, Any], device: str | torch.device | None = None
                    ) -> "CytoModel":
        """This stage from its folder and its record (``cytomodel.json``); which class a folder holds is decided by
        the loader registry (:mod:`.loading`)."""
        unet = UNet2DModel.from_pretrained(path, torch_dtype=torch.float32).float().eval()
        scheduler = DDPMScheduler.from_pretrained(path)
        pre = meta["preprocessing"]
        model = cls(unet=unet, scheduler=scheduler, class_names=list(meta["class_names"]),
                    resolution=int(meta["resolution"]), pixel_mean=list(pre["pixel_mean"]),
                    pixel_std=list(pre["pixel_std"]), crop_fraction=float(pre.get("crop_fraction", 1.0)),
                    metadata=meta, augmentation=_load_augmentation(path, meta), **cls.from_metadata_fields(meta))
        if device is not None:
            model.to(device)
        return model

    def weights_summary(self, folder: str | Path) -> dict[str, Any]:
        """What a provenance record says about these weights: the stage, its training steps and weights hash."""
        f = Path(folder) / WEIGHTS_NAME
        return {"stage": self.STAGE, "train_steps": self.metadata.get("train_steps"),
                "weights_sha256": sha256_file(f) if f.is_file() else None}

    def to(self, device) -> "CytoModel":
        self.unet.to(device)
        if self.augmentation is not None:
            self.augmentation.to(device)
        return self

    @property
    def temperature(self) -> float | None:
        """Softmax temperature fitted on validation data (None until `cytomodel calibrate` has run)."""
        t = self.metadata.get("temperature")
        return float(t) if t is not None else None


def _load_augmentation(path: Path, meta: dict[str, Any]):
    """The lab-variation embedding recorded in ``cytomodel.json``, or None for a model trained without it."""
    rec = meta.get("augmentation")
    if not rec:
        return None
    weights = path / rec.get("weights", LAB_WEIGHTS_FILE)
    if not weights.is_file():
        raise FileNotFoundError(f"{path / METADATA_FILE} records a lab-variation embedding but {weights.name} is "
                                "missing; copy the whole model folder")
    emb = AugmentationEmbedding(int(rec["embed_dim"]), int(rec["hidden"]), int(rec["dim"]))
    emb.load_state_dict(load_file(str(weights)))
    return emb.eval()


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The ``cytomodel.json`` of a model folder, with a clear error when the folder is not one."""
    path = Path(path)
    meta_file = path / METADATA_FILE
    if not meta_file.is_file():
        raise FileNotFoundError(f"{path} is not a cytomodel folder (no {METADATA_FILE}); "
                                "train one with `cytomodel train` or point to data/models/cpu-32")
    try:
        meta = json.loads(meta_file.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{meta_file} is not valid JSON ({exc}); restore it from the model's source") from None
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"{path} was written by a newer cytomodel (format {meta['format_version']}); upgrade")
    return meta


def pixel_statistics(images_uint8: np.ndarray) -> tuple[list[float], list[float]]:
    x = images_uint8.reshape(-1, 3).astype(np.float64) / 255.0
    return x.mean(0).round(6).tolist(), np.maximum(x.std(0), 1e-3).round(6).tolist()
