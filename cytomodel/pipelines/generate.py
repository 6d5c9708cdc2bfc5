"""Generating cells with any model that can (a base stage or a cascade): ``n`` images per class from consecutive
seeds (:func:`generate_images`), SDEdit morphs of real cells (:func:`sdedit_images`), and writing them with what made
each (:func:`save_generated`, :func:`image_grid`). Which sampler runs is decided by :func:`pipeline_for`."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from PIL import Image

from cytocore.provenance import provenance_record, write_json

from ..data import frame_or_raise
from ..models.base import CytoModel
from ..models.cascade import Cascade
from ..models.superres import SuperResModel
from .base import sample
from .cascade import sample_cascade


@dataclass
class GeneratedImages:
    images: np.ndarray          # (N, H, W, 3) uint8
    records: pd.DataFrame       # one row per image: class, seed, guidance, steps, strength, source

    def to_pil(self) -> list[Image.Image]:
        return [Image.fromarray(a) for a in self.images]


def generate_images(model: CytoModel, class_name: str | Sequence[str], n: int, guidance: float = 2.0,
                    steps: int = 50, seed: int = 0, precision: str = "bf16", batch_size: int = 64,
                    progress: bool = False, superres_steps: int | None = None) -> GeneratedImages:
    """``n`` images per class. Image i of a call uses seed ``seed + i``: regenerate any one with n=1.

    ``model`` is a base stage or a :class:`~cytomodel.models.cascade.Cascade` (then ``superres_steps`` sets the second
    stage's DDIM steps; default: the cascade's own)."""
    classes = [class_name] if isinstance(class_name, str) else list(class_name)
    class_ids, seeds, names = [], [], []
    for c in classes:
        model.class_index(c)
        for i in range(n):
            class_ids.append(c)
            seeds.append(seed + i)
            names.append(c)
    sampler, options, columns = _sampler(model, superres_steps)
    imgs = sampler(model, class_ids, seeds, guidance=guidance, steps=steps, precision=precision,
                   batch_size=batch_size, progress=progress, **options)
    records = pd.DataFrame({"class_name": names, "seed": seeds, "guidance": guidance, "steps": steps,
                            "strength": 1.0, "precision": precision, "init_image": "", **columns})
    return GeneratedImages(imgs, records)


def pipeline_for(model: CytoModel | Cascade) -> Callable[..., np.ndarray]:
    """The sampling function for what ``model`` is: one base stage (:func:`~.base.sample`) or a cascade
    (:func:`~.cascade.sample_cascade`); both take ``(model, class_ids, seeds, guidance=, steps=, ...)``."""
    return _sampler(model, None)[0]


def _sampler(model: CytoModel | Cascade, superres_steps: int | None) -> tuple[Callable[..., np.ndarray], dict, dict]:
    """The sampling function for what ``model`` is, the options only it takes and the columns that record them: a
    cascade's super-resolution stage has its own steps and conditioning level; a base stage has neither."""
    if isinstance(model, Cascade):
        columns = {"superres_steps": superres_steps or model.superres_steps,
                   "superres_level": model.superres.cond_noise_sample}
        return sample_cascade, {"superres_steps": superres_steps}, columns
    if isinstance(model, SuperResModel):
        raise ValueError(f"a {model.STAGE} stage cannot generate on its own; use a cascade (cytomodel.load_generator)")
    return sample, {}, {}


def sdedit_images(model: CytoModel, images: Sequence, class_name: str | Sequence[str], strength: float,
                  guidance: float = 2.0, steps: int = 50, seed: int = 0, precision: str = "bf16",
                  batch_size: int = 64, names: Sequence[str] | None = None, progress: bool = False,
                  superres_steps: int | None = None, intake=None) -> GeneratedImages:
    """Morph real images towards the model: noise to ``strength`` and denoise under ``class_name``.

    Paths and PIL images are framed like the training cells first (``intake``, default ``model.intake()``). With a
    cascade the morph is made at its high resolution, one strength shared by both stages (:mod:`.cascade`).
    """
    intake = intake or model.intake()
    arrays = np.stack([frame_or_raise(intake, im) if not isinstance(im, np.ndarray) else im for im in images])
    classes = [class_name] * len(arrays) if isinstance(class_name, str) else list(class_name)
    seeds = [seed + i for i in range(len(arrays))]
    if arrays.shape[1:] != (model.resolution, model.resolution, 3):
        raise ValueError(f"images to morph must be {model.resolution}x{model.resolution} RGB (the model's size), got "
                         f"{arrays.shape[1:]}; pass paths or PIL images to have them preprocessed")
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1] (0 = the real image, 1 = fully generated), got {strength}")
    sampler, options, columns = _sampler(model, superres_steps)
    out = sampler(model, classes, seeds, guidance=guidance, steps=steps, init_images=arrays, strength=strength,
                  precision=precision, batch_size=batch_size, progress=progress, **options)
    if names is None:
        names = [str(im) if isinstance(im, (str, Path)) else f"image-{i}" for i, im in enumerate(images)]
    records = pd.DataFrame({"class_name": classes, "seed": seeds, "guidance": guidance, "steps": steps,
                            "strength": strength, "precision": precision, "init_image": list(names),
                            **columns})
    return GeneratedImages(out, records)


def save_generated(batch: GeneratedImages, out_dir: str | Path, model: CytoModel, prefix: str = "gen",
                   upscale: int = 1) -> pd.DataFrame:
    """Write PNGs plus ``generated.csv`` (what made each image) and ``provenance.json``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for i, (arr, row) in enumerate(zip(batch.images, batch.records.itertuples())):
        name = f"{prefix}-{row.class_name}-s{row.seed}-{i:05d}.png"
        img = Image.fromarray(arr)
        if upscale > 1:
            img = img.resize((img.width * upscale, img.height * upscale), Image.Resampling.NEAREST)
        img.save(out_dir / name)
        files.append(name)
    table = batch.records.assign(file=files)
    csv = out_dir / "generated.csv"
    table.to_csv(csv, mode="a" if csv.exists() else "w", header=not csv.exists(), index=False)
    write_json(out_dir / "provenance.json", provenance_record(
        model=model.metadata.get("name", "cytomodel"), model_data_hash=model.metadata.get("data_hash"),
        model_code_version=model.metadata.get("code_version"), model_train_steps=model.metadata.get("train_steps")))
    return table


def image_grid(images: np.ndarray, rows: int, pad: int = 2, upscale: int = 1) -> Image.Image:
    """Tile (N, H, W, 3) images into a grid with ``rows`` rows (row-major)."""
    n, h, w, _ = images.shape
    cols = int(np.ceil(n / rows))
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = im
    img = Image.fromarray(grid)
    if upscale > 1:
        img = img.resize((img.width * upscale, img.height * upscale), Image.Resampling.NEAREST)
    return img
