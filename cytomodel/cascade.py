"""A cascade: the class-conditional base stage at low resolution and a super-resolution stage on top, in one folder.

    cascade-128/
      cytomodel.json   stage = "cascade": both stages' records, the sampling defaults, the checks they agree
      base/            the base stage (a folder plain diffusers reads: UNet2DModel + DDPMScheduler)
      superres/        the super-resolution stage (likewise)

A cascade generates whole cells at the super-resolution stage's size (``generate_images`` and ``sdedit_images`` take
one like a single model); classification and heat maps use the base stage on the downsampled cell
(:attr:`Cascade.base`), as the diffusion classifier is defined there.

SDEdit morphs share one strength s between the stages: the base stage morphs the cell's low-res version at s (0 =
unchanged, 1 = pure noise), and the super-resolution stage noises the cell's own high-frequency residual (the cell
minus the upsampling of its low-res version) to the same s and redraws it for the morphed low-res cell. s = 0 returns
the real image byte for byte; s = 1 is a fully generated cell; in between the coarse change comes from the base
stage and the detail is redrawn in proportion.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from cytocore.provenance import provenance_record, sha256_file, write_json

from .model import METADATA_FILE, CytoModel, read_metadata
from .superres import SuperResModel, downsample, super_resolve

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

    def class_index(self, name: str | int) -> int:
        return self.base.class_index(name)

    def intake(self, um_per_px: float | None = None, stain: str = "none"):
        """How input images reach the cascade (its record's framing, else its stages'), at its high resolution."""
        from .intake import Intake

        meta = self.metadata if (self.metadata.get("framing") or self.metadata.get("source_framing")) \
            else self.base.metadata
        return Intake.for_record(meta, self.resolution, self.crop_fraction, um_per_px, stain)

    def preprocess(self, image) -> np.ndarray:
        """Any image -> (H, W, 3) uint8 at the cascade's (high) resolution, framed like the training cells."""
        from .model import frame_or_raise

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
        write_json(path / METADATA_FILE, self._record(path, superres_steps or self.superres_steps))
        self.metadata = read_metadata(path)
        return path

    def _record(self, path: Path, superres_steps: int) -> dict[str, Any]:
        def stage(folder: str, model: CytoModel) -> dict[str, Any]:
            m = model.metadata
            return {"folder": folder, "name": m.get("name"), "resolution": model.resolution,
                    "train_steps": m.get("train_steps"), "data_hash": m.get("data_hash"),
                    "code_version": m.get("code_version"),
                    "weights_sha256": sha256_file(path / folder / "diffusion_pytorch_model.safetensors")}
        return {**provenance_record(), "format_version": 1, "stage": "cascade",
                "name": self.metadata.get("name") or f"cascade-{self.resolution}",
                "class_names": list(self.class_names), "resolution": self.resolution,
                "low_resolution": self.low_resolution,
                "preprocessing": {"crop_fraction": self.crop_fraction, "resize": "lanczos"},
                "data_hash": self.base.metadata.get("data_hash"),
                "stages": {"base": stage(BASE_DIR, self.base), "superres": stage(SUPERRES_DIR, self.superres)},
                "sampling": {"superres_steps": superres_steps,
                             "superres_level": self.superres.cond_noise_sample,
                             "strength": "one strength s for both stages (see cytomodel.cascade)"},
                "checks": "classes, base resolution = super-resolution input size, crop_fraction, training data"}

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device | None = None) -> "Cascade":
        path = Path(path)
        meta = read_metadata(path)
        if meta.get("stage") != "cascade":
            raise CascadeError(f"{path} holds a {meta.get('stage', 'base')} stage, not a cascade; assemble one with "
                               "`cytomodel cascade --base DIR --superres DIR --out DIR`")
        folders = {k: path / v.get("folder", k) for k, v in meta.get("stages", {}).items()}
        for key in ("base", "superres"):
            if key not in folders or not (folders[key] / METADATA_FILE).is_file():
                raise CascadeError(f"{path}: the cascade's {key} stage folder "
                                   f"{folders.get(key, path / key)} is missing; restore it or re-assemble the "
                                   "cascade with `cytomodel cascade`")
        base = CytoModel.from_pretrained(folders["base"], device=device)
        superres = CytoModel.from_pretrained(folders["superres"], device=device)
        if not isinstance(superres, SuperResModel):
            raise CascadeError(f"{folders['superres']}: not a super-resolution stage (stage "
                               f"{superres.STAGE!r}); train one with the cpu-sr128 preset")
        check_stages_agree(base, superres, where=str(path))
        classes = meta.get("class_names")
        if classes is not None and list(classes) != list(base.class_names):
            raise CascadeError(f"{path / METADATA_FILE}: class_names {classes} differ from its stages' "
                               f"{base.class_names}; re-assemble the cascade with `cytomodel cascade`")
        return cls(base, superres, meta)


def assemble_cascade(base_dir: str | Path, superres_dir: str | Path, out: str | Path,
                     superres_steps: int = DEFAULT_SUPERRES_STEPS, name: str | None = None) -> Cascade:
    """Copy two stage folders into one cascade folder and record them, after checking they agree."""
    base = CytoModel.from_pretrained(base_dir)
    superres = CytoModel.from_pretrained(superres_dir)
    if not isinstance(superres, SuperResModel):
        raise CascadeError(f"superres={superres_dir} is a {superres.STAGE} stage, not a super-resolution stage")
    check_stages_agree(base, superres, where=f"base={base_dir}, superres={superres_dir}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for src, dst in ((base_dir, BASE_DIR), (superres_dir, SUPERRES_DIR)):
        if Path(src).resolve() != (out / dst).resolve():
            shutil.rmtree(out / dst, ignore_errors=True)
            shutil.copytree(src, out / dst, ignore=shutil.ignore_patterns("*.tmp"))
    cascade = Cascade(base, superres, {"name": name} if name else {})
    write_json(out / METADATA_FILE, cascade._record(out, superres_steps))
    return Cascade.from_pretrained(out)


def load_generator(path: str | Path, device: str | torch.device | None = None) -> CytoModel | Cascade:
    """Whatever a model folder holds: a cascade, or a single base stage. A lone super-resolution stage cannot
    generate (it needs a base to draw the low-res cell) and is refused with what to do."""
    meta = read_metadata(path)
    stage = meta.get("stage", "base")
    if stage == "cascade":
        return Cascade.from_pretrained(path, device=device)
    if stage == "superres":
        raise CascadeError(f"{path} is a super-resolution stage alone; it needs a base stage to generate. "
                           "Assemble a cascade of a base stage (e.g. data/models/cpu-32) and this one "
                           "(`cytomodel cascade` or assemble_cascade) and pass that folder")
    return CytoModel.from_pretrained(path, device=device)


def load_stage(path: str | Path, device: str | torch.device | None = None) -> CytoModel | Cascade:
    """Any model folder as it is — a cascade, a base stage or a lone super-resolution stage — e.g. to re-save it
    (``cytomodel export``); use :func:`load_generator` to sample."""
    if read_metadata(path).get("stage") == "superres":
        return SuperResModel.from_pretrained(path, device=device)
    return load_generator(path, device=device)


def base_folder(path: str | Path) -> Path:
    """The folder of the stage a classifier uses: a base-stage folder itself, or a cascade's base/ folder."""
    path = Path(path)
    meta = read_metadata(path)
    if meta.get("stage") == "cascade":
        return path / meta.get("stages", {}).get("base", {}).get("folder", BASE_DIR)
    if meta.get("stage") == "superres":
        raise CascadeError(f"{path} is a super-resolution stage; the classifier runs on a base stage: pass the base "
                           "model folder or a cascade")
    return path


def load_base(path: str | Path, device: str | torch.device | None = None) -> CytoModel:
    """The stage a classifier uses: a base-stage folder itself, or the base stage of a cascade."""
    return CytoModel.from_pretrained(base_folder(path), device=device)


@torch.no_grad()
def sample_cascade(cascade: Cascade, class_ids: Sequence[int | str], seeds: Sequence[int], guidance: float = 2.0,
                   steps: int = 50, superres_steps: int | None = None, superres_level: float | None = None,
                   init_images: np.ndarray | None = None, strength: float = 1.0, precision: str = "bf16",
                   batch_size: int = 64, progress: bool = False) -> np.ndarray:
    """(N, H, W, 3) uint8 cells at the cascade's resolution: the base stage draws each cell at low resolution
    (``guidance``, ``steps``), the super-resolution stage draws its detail (``superres_steps``, conditioned on its
    class, conditioning augmentation ``superres_level``). Both stages use the image's own seed, so an image does not
    depend on the batch. With ``init_images`` (N, H, W, 3) at the cascade's resolution this is an SDEdit morph at
    ``strength`` (module docstring)."""
    from .generation import sample

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
                         batch_size=min(batch_size, 16), progress=progress)
