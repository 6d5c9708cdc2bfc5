"""Sampling from a CytoModel: class-conditional generation with classifier-free guidance (DDIM, from diffusers),
and SDEdit morphs that noise a real image to a level ``strength`` and denoise it under a class."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from diffusers import DDIMScheduler
from PIL import Image

from .model import CytoModel
from cytocore.provenance import provenance_record, write_json
from .runtime import autocast


def _noise(seeds: Sequence[int], shape: tuple[int, ...], device) -> torch.Tensor:
    """One independent noise tensor per seed, so an image depends on its own seed only (not on the batch)."""
    out = []
    for s in seeds:
        g = torch.Generator().manual_seed(int(s))
        out.append(torch.randn(shape, generator=g))
    return torch.stack(out).to(device)


def ddim_scheduler(model: CytoModel) -> DDIMScheduler:
    """The deterministic DDIM sampler (eta = 0) over a model's own training noise schedule."""
    return DDIMScheduler.from_config(model.scheduler.config, clip_sample=False, set_alpha_to_one=False)


def ddim_timesteps(scheduler: DDIMScheduler, steps: int, strength: float = 1.0) -> torch.Tensor:
    """The last ``round(steps * strength)`` (at least one) of ``steps`` DDIM timesteps: SDEdit starts there."""
    scheduler.set_timesteps(steps)
    timesteps = scheduler.timesteps
    if strength < 1.0:
        timesteps = timesteps[steps - max(1, int(round(steps * strength))):]
    return timesteps


@torch.no_grad()
def sample(model: CytoModel, class_ids: Sequence[int], seeds: Sequence[int], guidance: float = 2.0,
           steps: int = 50, init_images: np.ndarray | None = None, strength: float = 1.0,
           precision: str = "bf16", batch_size: int = 64, progress: bool = False) -> np.ndarray:
    """Generate ``len(class_ids)`` images (N, H, W, 3 uint8).

    With ``init_images`` (N, H, W, 3 uint8 at the model's resolution) this is SDEdit: each image is noised to the
    DDIM step that ``strength`` names (0 = unchanged, 1 = pure noise) and denoised under its class.
    """
    if len(class_ids) != len(seeds):
        raise ValueError("class_ids and seeds must have the same length")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if guidance < 0:
        raise ValueError(f"guidance must be >= 0, got {guidance}")
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    if init_images is not None and len(init_images) != len(class_ids):
        raise ValueError("init_images must have one image per class id")
    if init_images is not None and strength == 0.0:
        return np.asarray(init_images, dtype=np.uint8).copy()
    device = model.device
    res = model.resolution
    scheduler = ddim_scheduler(model)
    timesteps = ddim_timesteps(scheduler, steps, strength if init_images is not None else 1.0)
    model.unet.eval()
    out = np.empty((len(class_ids), res, res, 3), dtype=np.uint8)
    chunks = range(0, len(class_ids), batch_size)
    if progress:
        from tqdm.auto import tqdm
        chunks = tqdm(chunks, desc="sampling", unit="batch")
    for start in chunks:
        ids = torch.tensor([model.class_index(c) for c in class_ids[start:start + batch_size]], device=device)
        noise = _noise(seeds[start:start + batch_size], (3, res, res), device)
        if init_images is not None and strength < 1.0:
            x0 = model.encode(init_images[start:start + batch_size])
            x = scheduler.add_noise(x0, noise, timesteps[:1].repeat(len(ids)))
        else:
            x = noise * scheduler.init_noise_sigma
        null = torch.full_like(ids, model.null_class)
        for t in timesteps:
            if guidance == 1.0:
                with autocast(device, precision):
                    eps = model.unet(x, t, class_labels=ids).sample.float()
            else:
                with autocast(device, precision):
                    both = model.unet(torch.cat([x, x]), t, class_labels=torch.cat([ids, null])).sample.float()
                cond, uncond = both.chunk(2)
                eps = uncond + guidance * (cond - uncond)
            x = scheduler.step(eps, t, x, eta=0.0).prev_sample
        out[start:start + len(ids)] = model.decode(x)
    return out


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

    ``model`` is a base stage or a :class:`~cytomodel.cascade.Cascade` (then ``superres_steps`` sets the second
    stage's DDIM steps; default: the cascade's own)."""
    classes = [class_name] if isinstance(class_name, str) else list(class_name)
    class_ids, seeds, names = [], [], []
    for c in classes:
        model.class_index(c)
        for i in range(n):
            class_ids.append(c)
            seeds.append(seed + i)
            names.append(c)
    imgs = pipeline_for(model)(model, class_ids, seeds, guidance=guidance, steps=steps, precision=precision,
                           batch_size=batch_size, progress=progress, **_stage_options(model, superres_steps))
    records = pd.DataFrame({"class_name": names, "seed": seeds, "guidance": guidance, "steps": steps,
                            "strength": 1.0, "precision": precision, "init_image": "",
                            **_stage_columns(model, superres_steps)})
    return GeneratedImages(imgs, records)


def pipeline_for(model):
    """The sampling function for what ``model`` is: one base stage (:func:`sample`) or a cascade
    (:func:`cytomodel.cascade.sample_cascade`); both take ``(model, class_ids, seeds, guidance=, steps=, ...)``."""
    if getattr(model, "STAGE", "base") == "cascade":
        from .cascade import sample_cascade
        return sample_cascade
    if getattr(model, "STAGE", "base") != "base":
        raise ValueError(f"a {model.STAGE} stage cannot generate on its own; use a cascade (cytomodel.load_generator)")
    return sample


def _stage_options(model, superres_steps: int | None) -> dict:
    if getattr(model, "STAGE", "base") == "cascade":
        return {"superres_steps": superres_steps}
    return {}


def _stage_columns(model, superres_steps: int | None = None) -> dict:
    if getattr(model, "STAGE", "base") == "cascade":
        return {"superres_steps": superres_steps or model.superres_steps,
                "superres_level": model.superres.cond_noise_sample}
    return {}


def sdedit_images(model: CytoModel, images: Sequence, class_name: str | Sequence[str], strength: float,
                  guidance: float = 2.0, steps: int = 50, seed: int = 0, precision: str = "bf16",
                  batch_size: int = 64, names: Sequence[str] | None = None, progress: bool = False,
                  superres_steps: int | None = None, intake=None) -> GeneratedImages:
    """Morph real images towards the model: noise to ``strength`` and denoise under ``class_name``.

    Paths and PIL images are framed like the training cells first (``intake``, default ``model.intake()``). With a
    cascade the morph is made at its high resolution, one strength shared by both stages (:mod:`cytomodel.cascade`).
    """
    from .model import frame_or_raise

    intake = intake or model.intake()
    arrays = np.stack([frame_or_raise(intake, im) if not isinstance(im, np.ndarray) else im for im in images])
    classes = [class_name] * len(arrays) if isinstance(class_name, str) else list(class_name)
    seeds = [seed + i for i in range(len(arrays))]
    if arrays.shape[1:] != (model.resolution, model.resolution, 3):
        raise ValueError(f"images to morph must be {model.resolution}x{model.resolution} RGB (the model's size), got "
                         f"{arrays.shape[1:]}; pass paths or PIL images to have them preprocessed")
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1] (0 = the real image, 1 = fully generated), got {strength}")
    out = pipeline_for(model)(model, classes, seeds, guidance=guidance, steps=steps, init_images=arrays,
                          strength=strength, precision=precision, batch_size=batch_size, progress=progress,
                          **_stage_options(model, superres_steps))
    if names is None:
        names = [str(im) if isinstance(im, (str, Path)) else f"image-{i}" for i, im in enumerate(images)]
    records = pd.DataFrame({"class_name": classes, "seed": seeds, "guidance": guidance, "steps": steps,
                            "strength": strength, "precision": precision, "init_image": list(names),
                            **_stage_columns(model, superres_steps)})
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
