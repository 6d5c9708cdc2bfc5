"""A cascade: the class-conditional base stage at low resolution and a super-resolution stage on top, in one folder.

    cascade-128/
      cytomodel.json   stage = "cascade": both stages' records, the sampling defaults, the checks they agree
      base/            the base stage (a folder plain diffusers reads: UNet2DModel + DDPMScheduler)
      superres/        the super-resolution stage (likewise)

A cascade generates whole cells at the super-resolution stage's size (``generate_images`` and ``sdedit_images`` take
one like a single model; the sampler is :func:`cytomodel.pipelines.cascade.sample_cascade`); classification and heat
maps use the base stage on the downsampled cell (:attr:`Cascade.base`), as the diffusion classifier is defined there.
Loading and assembling cascade folders: :mod:`.loading`.

SDEdit morphs share one strength s between the stages: the base stage morphs the cell's low-res version at s (0 =
unchanged, 1 = pure noise), and the super-resolution stage noises the cell's own high-frequency residual (the cell
minus the upsampling of its low-res version) to the same s and redraws it for the morphed low-res cell. s = 0 returns
the real image byte for byte; s = 1 is a fully generated cell; in between the coarse change comes from the base
stage and the detail is redrawn in proportion.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cytocore.provenance import provenance_record, sha256_file, write_json

from ..data import Intake, frame_or_raise
from .base import METADATA_FILE, WEIGHTS_NAME, CytoModel, read_metadata
from .superres import SuperResModel, downsample

BASE_DIR, SUPERRES_DIR = "base", "superres"
DEFAULT_SUPERRES_STEPS = 20


class CascadeError(ValueError):
    """The stages of a cascade do not fit together; the message names the folder and the mismatch."""


def check_stages_agree(base: CytoModel, superres: SuperResModel, where: str = "cascade") -> None:
    """Raise :class:`CascadeError` listing every way the two stages disagree."""
    problems = []
    if base.STAGE != "base":
        problems.append(f"the base stage is a {base.STAGE} stage")
    if superres.STAGE != "superres":
        problems.append(f"the super-resolution stage is a {superres.STAGE} stage")
    if list(base.class_names) != list(superres.class_names):
        problems.append(f"classes differ (base {list(base.class_names)}, super-resolution "
                        f"{list(superres.class_names)})")
    if getattr(superres, "low_resolution", None) != base.resolution:
        problems.append(f"the super-resolution stage takes {getattr(superres, 'low_resolution', '?')}-px cells but "
                        f"the base stage makes {base.resolution}-px ones")
    if abs(base.crop_fraction - superres.crop_fraction) > 1e-9:
        problems.append(f"preprocessing crops differ (base crop_fraction {base.crop_fraction}, super-resolution "
                        f"{superres.crop_fraction}): the stages saw differently framed cells")
    b_data, s_data = base.metadata.get("data_hash"), superres.metadata.get("data_hash")
    if b_data and s_data and b_data != s_data:
        problems.append(f"trained on different data (base data hash {b_data[:12]}, super-resolution {s_data[:12]})")
    if problems:
        raise CascadeError(f"{where}: the stages do not agree: " + "; ".join(problems) +
                           ". Train the super-resolution stage on the same data, classes and crop as the base "
                           "(e.g. the cpu-sr128 preset) and assemble them into a cascade.")


@dataclass
class Cascade:
    base: CytoModel
    superres: SuperResModel
    metadata: dict[str, Any] = field(default_factory=dict)

    STAGE = "cascade"

    # the interface generation and the study builder use, as on a single model
    @property
    def class_names(self) -> list[str]:
        return self.base.class_names

    @property
    def resolution(self) -> int:
        return self.superres.resolution

    @property
    def low_resolution(self) -> int:
        return self.base.resolution

    @property
    def crop_fraction(self) -> float:
        return self.superres.crop_fraction

    @property
    def null_class(self) -> int:
        return self.base.null_class

    @property
    def device(self) -> torch.device:
        return self.base.device

    @property
    def classifier_model(self) -> CytoModel:
        """The stage the diffusion classifier and heat maps run on."""
        return self.base

    @property
    def superres_steps(self) -> int:
        return int(self.metadata.get("sampling", {}).get("superres_steps", DEFAULT_SUPERRES_STEPS))

    @property
    def superres_eta(self) -> float:
        """DDIM η of the super-resolution stage's sampler (0: deterministic; the record's ``sampling``)."""
        return float(self.metadata.get("sampling", {}).get("superres_eta", 0.0))

    def class_index(self, name: str | int) -> int:
        return self.base.class_index(name)

    def intake(self, um_per_px: float | None = None, stain: str = "auto") -> Intake:
        """How input images reach the cascade (its record's framing, else its stages'), at its high resolution."""
        meta = self.metadata if (self.metadata.get("framing") or self.metadata.get("source_framing")) \
            else self.base.metadata
        return Intake.for_record(meta, self.resolution, self.crop_fraction, um_per_px, stain)

    def preprocess(self, image) -> np.ndarray:
        """Any image -> (H, W, 3) uint8 at the cascade's (high) resolution, framed like the training cells."""
        return frame_or_raise(self.intake(), image)

    def to_classifier_input(self, images: np.ndarray) -> np.ndarray:
        """High-res cells -> the base stage's size (the same Lanczos resize as the base's preprocessing)."""
        return downsample(np.asarray(images), self.low_resolution)

    def to(self, device) -> "Cascade":
        self.base.to(device)
        self.superres.unet.to(device)
        return self

    # persistence
    def save_pretrained(self, path: str | Path, dtype: torch.dtype = torch.float32,
                        superres_steps: int | None = None) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.base.save_pretrained(path / BASE_DIR, dtype=dtype)
        self.superres.save_pretrained(path / SUPERRES_DIR, dtype=dtype)
        write_json(path / METADATA_FILE, self.record(path, superres_steps or self.superres_steps))
        self.metadata = read_metadata(path)
        return path

    def record(self, path: Path, superres_steps: int) -> dict[str, Any]:
        def stage(folder: str, model: CytoModel) -> dict[str, Any]:
            m = model.metadata
            return {"folder": folder, "name": m.get("name"), "resolution": model.resolution,
                    "train_steps": m.get("train_steps"), "data_hash": m.get("data_hash"),
                    "code_version": m.get("code_version"),
                    "weights_sha256": sha256_file(path / folder / WEIGHTS_NAME)}
        return {**provenance_record(), "format_version": 1, "stage": "cascade",
                "name": self.metadata.get("name") or f"cascade-{self.resolution}",
                "class_names": list(self.class_names), "resolution": self.resolution,
                "low_resolution": self.low_resolution,
                "preprocessing": {"crop_fraction": self.crop_fraction, "resize": "lanczos"},
                "data_hash": self.base.metadata.get("data_hash"),
                "stages": {"base": stage(BASE_DIR, self.base), "superres": stage(SUPERRES_DIR, self.superres)},
                "sampling": {"superres_steps": superres_steps, "superres_eta": self.superres_eta,
                             "superres_level": self.superres.cond_noise_sample,
                             "strength": "one strength s for both stages (see cytomodel.models.cascade)"},
                "checks": "classes, base resolution = super-resolution input size, crop_fraction, training data"}

    def weights_summary(self, folder: str | Path) -> dict[str, Any]:
        """What a provenance record says about these weights: the stage, and each stage's training steps and weights
        hash (as the cascade's record holds them)."""
        stages = self.metadata.get("stages", {})
        return {"stage": self.STAGE, "train_steps": {k: v.get("train_steps") for k, v in stages.items()},
                "weights_sha256": {k: v.get("weights_sha256") for k, v in stages.items()}}

    @staticmethod
    def stage_folders(path: Path, meta: dict[str, Any]) -> dict[str, Path]:
        """The base and super-resolution folders a cascade record names, each checked to hold a model."""
        folders = {k: path / v.get("folder", k) for k, v in meta.get("stages", {}).items()}
        for key in ("base", "superres"):
            if key not in folders or not (folders[key] / METADATA_FILE).is_file():
                raise CascadeError(f"{path}: the cascade's {key} stage folder "
                                   f"{folders.get(key, path / key)} is missing; restore it or re-assemble the "
                                   "cascade with `cytomodel cascade`")
        return folders

    @classmethod
    def from_stages(cls, path: Path, meta: dict[str, Any], base: CytoModel, superres: CytoModel) -> "Cascade":
        """The cascade of a folder, from its record and its loaded stages, after checking they agree."""
        if not isinstance(superres, SuperResModel):
            folder = path / meta.get("stages", {}).get("superres", {}).get("folder", SUPERRES_DIR)
            raise CascadeError(f"{folder}: not a super-resolution stage (stage "
                               f"{superres.STAGE!r}); train one with the cpu-sr128 preset")
        check_stages_agree(base, superres, where=str(path))
        classes = meta.get("class_names")
        if classes is not None and list(classes) != list(base.class_names):
            raise CascadeError(f"{path / METADATA_FILE}: class_names {classes} differ from its stages' "
                               f"{base.class_names}; re-assemble the cascade with `cytomodel cascade`")
        return cls(base, superres, meta)
