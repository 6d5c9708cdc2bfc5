"""Training configuration: named presets, TOML files and ``key=value`` overrides.

A preset is a complete, validated :class:`TrainConfig`; a TOML file or the command line only changes fields of it,
so every run records one flat, explicit config.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from cytocore.config import build_config, load_toml, parse_overrides, to_dict


@dataclass(frozen=True)
class LabVariation:
    """How far each kind of lab variation (:mod:`.lab_augmentation`) goes: drawn uniformly within ± the bound unless
    said otherwise. Here, not there, so that the config (and the CLI parser) loads no torch."""
    zoom: float = 1.25            # magnification factor in [1/zoom, zoom], log-uniform
    shift: float = 0.06           # centring error, fraction of the width
    blur_max: float = 2.5         # Gaussian blur sigma in source pixels (128 px), drawn for half of the images
    noise_max: float = 0.04       # camera noise std on [0, 1], for a third of the images
    jpeg_min_quality: int = 30    # JPEG re-encoding at quality in [min, 95], for a third of the images
    gamma: float = 0.35           # per-channel optical-density scale (stain strength): log gamma in ±
    gain: float = 0.25            # per-channel illumination / white balance: log gain in ±
    hue: float = 0.1              # hue rotation in turns
    saturation: float = 0.5       # log saturation factor in ±
    contrast: float = 0.3         # log contrast factor in ±
    brightness: float = 0.08      # additive brightness in ±


@dataclass
class TrainConfig:
    preset: str = "cpu-32"
    # what is trained: "base" (class-conditional generator) or "superres" (a cascade's second stage)
    stage: str = "base"
    # model
    resolution: int = 32
    block_out_channels: tuple[int, ...] = (32, 64, 128, 128)
    layers_per_block: int = 1
    attention_levels: int = 1          # attention in the last N (lowest-resolution) levels
    attention_head_dim: int | None = None  # None: one head per block (fast on CPU)
    norm_num_groups: int = 8
    dropout: float = 0.0
    # diffusion
    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    min_snr_gamma: float | None = 5.0
    class_dropout: float = 0.1
    # super-resolution stage only: the base stage's resolution, the training crop (0 = whole image) and the
    # conditioning augmentation (Gaussian noise of a random std in [0, cond_noise_max] on the low-res input,
    # in model space, its level given to the network; cond_noise_sample is the fixed level used when sampling)
    low_resolution: int = 0
    crop_size: int = 0
    cond_noise_max: float = 0.3
    cond_noise_sample: float = 0.05
    # preprocessing
    crop_fraction: float = 1.0
    # augmentation
    flips: bool = True
    rotations: bool = True
    color_jitter: float = 0.03
    # lab variation (.lab_augmentation): the share of images given another lab's stain, scale, focus,
    # noise, JPEG and rotation — applied at source_resolution (0: the training resolution) before downsampling, and
    # told to the network (non-leaky); lab_unknown: the share whose augmentation is withheld (the "unknown" token);
    # lab_variation: how far each kind of variation goes (e.g. --set lab_variation.gamma=0.7 for stronger stains)
    lab_augment: float = 0.0
    lab_unknown: float = 0.25
    lab_variation: LabVariation = field(default_factory=LabVariation)
    source_resolution: int = 0
    # optimisation
    batch_size: int = 64
    learning_rate: float = 6e-4
    lr_warmup_steps: int = 250
    lr_schedule: str = "cosine"         # "cosine" or "constant"
    lr_min_ratio: float = 0.1
    weight_decay: float = 0.0
    adam_beta2: float = 0.99
    grad_clip: float = 1.0
    max_steps: int = 20000
    ema_max_decay: float = 0.9995
    ema_power: float = 0.75
    ema_start_step: int = 200
    mixed_precision: str = "bf16"       # "bf16", "fp16" (GPU) or "no"
    channels_last: bool = False
    # bookkeeping
    seed: int = 0
    checkpoint_every: int = 500
    sample_every: int = 1000
    keep_checkpoints: int = 2
    threads: int | None = None

    def validate(self) -> "TrainConfig":
        def bad(name: str, why: str) -> None:
            raise ValueError(f"config field '{name}': {why} (got {getattr(self, name)!r})")

        if self.stage not in {"base", "superres"}:
            bad("stage", "use 'base' or 'superres'")
        if self.resolution < 8 or self.resolution % 2 ** (len(self.block_out_channels) - 1):
            bad("resolution", f"must be >= 8 and divisible by 2**{len(self.block_out_channels) - 1}")
        if any(c % self.norm_num_groups for c in self.block_out_channels):
            bad("block_out_channels", f"every entry must be divisible by norm_num_groups={self.norm_num_groups}")
        if not 0 <= self.attention_levels <= len(self.block_out_channels):
            bad("attention_levels", "must be between 0 and the number of levels")
        if self.beta_schedule not in {"linear", "scaled_linear", "squaredcos_cap_v2"}:
            bad("beta_schedule", "use 'linear', 'scaled_linear' or 'squaredcos_cap_v2'")
        if self.min_snr_gamma is not None and self.min_snr_gamma <= 0:
            bad("min_snr_gamma", "must be positive, or omitted to disable Min-SNR weighting")
        if not 0 <= self.class_dropout < 1:
            bad("class_dropout", "must be in [0, 1)")
        if not 0 < self.crop_fraction <= 1:
            bad("crop_fraction", "must be in (0, 1]")
        if not 0 <= self.color_jitter < 0.5:
            bad("color_jitter", "must be in [0, 0.5)")
        if not 0 <= self.lab_augment <= 1:
            bad("lab_augment", "must be in [0, 1] (the share of training images given another lab's look)")
        if not 0 <= self.lab_unknown < 1:
            bad("lab_unknown", "must be in [0, 1)")
        if self.source_resolution and self.source_resolution < self.resolution:
            bad("source_resolution", f"must be 0 or at least resolution={self.resolution}")
        if self.lab_augment and self.stage != "base":
            bad("lab_augment", "lab variation is implemented for the base stage only")
        for f in fields(LabVariation):
            if getattr(self.lab_variation, f.name) < 0:
                bad("lab_variation", f"'{f.name}' must be >= 0")
        if self.lab_variation.zoom < 1 or not 1 <= self.lab_variation.jpeg_min_quality <= 95:
            bad("lab_variation", "'zoom' must be >= 1 (a factor in [1/zoom, zoom]) and 'jpeg_min_quality' in [1, 95]")
        for name in ("batch_size", "max_steps", "checkpoint_every", "sample_every", "num_train_timesteps"):
            if getattr(self, name) <= 0:
                bad(name, "must be a positive integer")
        if self.learning_rate <= 0:
            bad("learning_rate", "must be positive")
        if self.lr_schedule not in {"cosine", "constant"}:
            bad("lr_schedule", "use 'cosine' or 'constant'")
        if self.stage == "superres":
            self._validate_superres(bad)
        if self.mixed_precision not in {"bf16", "fp16", "no"}:
            bad("mixed_precision", "use 'bf16', 'fp16' or 'no'")
        if not 0 < self.ema_max_decay < 1:
            bad("ema_max_decay", "must be in (0, 1)")
        return self

    def _validate_superres(self, bad) -> None:
        if self.low_resolution < 4 or self.resolution % self.low_resolution:
            bad("low_resolution", f"must divide resolution={self.resolution} (the base stage's size, e.g. 32)")
        if self.resolution // self.low_resolution < 2:
            bad("low_resolution", f"must be at most half of resolution={self.resolution}")
        if self.crop_size and (self.crop_size > self.resolution
                               or self.crop_size % 2 ** (len(self.block_out_channels) - 1)):
            bad("crop_size", f"must be 0 (whole image) or <= {self.resolution} and divisible by "
                f"2**{len(self.block_out_channels) - 1}")
        if self.attention_levels:
            bad("attention_levels", "must be 0 for a crop-trained super-resolution stage (attention over a crop "
                "does not carry over to whole images)")
        if not 0 < self.cond_noise_max <= 2:
            bad("cond_noise_max", "must be in (0, 2]")
        if not 0 <= self.cond_noise_sample <= self.cond_noise_max:
            bad("cond_noise_sample", f"must be in [0, cond_noise_max={self.cond_noise_max}]")

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in to_dict(self).items() if v is not None}


PRESETS: dict[str, dict[str, Any]] = {
    # Trains on 2 CPU cores at ~120 img/s (bf16); the bundled model.
    "cpu-32": {},
    # A few minutes on a CPU: for tests and smoke runs only.
    "tiny-16": dict(resolution=16, block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8,
                    batch_size=16, max_steps=20, checkpoint_every=10, sample_every=10, lr_warmup_steps=2,
                    ema_start_step=0),
    # GPU presets: larger UNets, attention at 16x16 and below, bf16 autocast.
    "gpu-64": dict(resolution=64, block_out_channels=(64, 128, 256, 256), layers_per_block=2, attention_levels=2,
                   attention_head_dim=64, norm_num_groups=32, dropout=0.1, batch_size=128, learning_rate=2e-4,
                   lr_warmup_steps=1000, max_steps=60000, ema_max_decay=0.9999, checkpoint_every=2000,
                   sample_every=5000),
    # Second stage of a cascade, 32 -> 128 px: fully convolutional, trained on 64-px crops of the 128-px cells
    # (0.57 s/step measured here in bf16, about the base stage's cost); 18k steps in about 3 h on 2 CPU cores.
    "cpu-sr128": dict(stage="superres", resolution=128, low_resolution=32, crop_size=64, attention_levels=0,
                      block_out_channels=(32, 64, 128, 128), layers_per_block=1, batch_size=16, max_steps=18000,
                      learning_rate=3e-4, lr_warmup_steps=500, ema_start_step=500, checkpoint_every=500,
                      sample_every=2000),
    # GPU super-resolution stages: 64 -> 256 (after gpu-64) and 32 -> 128 with more capacity.
    "gpu-sr256": dict(stage="superres", resolution=256, low_resolution=64, crop_size=128, attention_levels=0,
                      block_out_channels=(64, 128, 256, 256), layers_per_block=2, norm_num_groups=32,
                      batch_size=32, learning_rate=1e-4, lr_warmup_steps=1000, max_steps=100000,
                      ema_max_decay=0.9999, checkpoint_every=2000, sample_every=5000),
    "gpu-sr128": dict(stage="superres", resolution=128, low_resolution=32, crop_size=64, attention_levels=0,
                      block_out_channels=(64, 128, 256, 256), layers_per_block=2, norm_num_groups=32,
                      batch_size=64, learning_rate=1e-4, lr_warmup_steps=1000, max_steps=100000,
                      ema_max_decay=0.9999, checkpoint_every=2000, sample_every=5000),
    # Seconds on a CPU: tests only.
    "tiny-sr32": dict(stage="superres", resolution=32, low_resolution=16, crop_size=16, attention_levels=0,
                      block_out_channels=(16, 32), layers_per_block=1, batch_size=8, max_steps=20,
                      checkpoint_every=10, sample_every=10, lr_warmup_steps=2, ema_start_step=0),
    "gpu-128": dict(resolution=128, block_out_channels=(64, 128, 256, 384, 512), layers_per_block=2,
                    attention_levels=2, attention_head_dim=64, norm_num_groups=32, dropout=0.1, batch_size=64,
                    learning_rate=1e-4, lr_warmup_steps=1000, max_steps=150000, ema_max_decay=0.9999,
                    checkpoint_every=5000, sample_every=10000),
}

def load_config(preset: str = "cpu-32", file: str | Path | None = None,
                overrides: list[str] | dict[str, Any] | None = None) -> TrainConfig:
    """Build a config from a preset, then a TOML file (``[train]`` table or top level), then overrides."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    data = load_toml(file, table="train") if file is not None else {}
    preset = data.pop("preset", preset)
    if preset not in PRESETS:
        raise ValueError(f"config file {file}: unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    values = {"preset": preset, **PRESETS[preset], **data}
    over = dict(overrides) if isinstance(overrides, dict) else parse_overrides(overrides)
    return build_config(TrainConfig, values, over)
