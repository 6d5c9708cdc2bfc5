"""Shared pieces of the quality benchmarks: loading the models and real data, seeded generation with an on-disk
cache (an image depends only on its model, class, seed, guidance, steps and precision, so benchmarks share
samples), dihedral views, and small statistics helpers. Not a benchmark itself."""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from cytocore.provenance import atomic_output  # noqa: E402

DEFAULT_MODEL = REPO / "data" / "models" / "cpu-32"
DEFAULT_BASELINE = REPO / "data" / "models" / "baseline-32"
DEFAULT_DATA = Path(os.environ.get("CYTOSTUDY_SHARED_DATA", REPO.parent / "shared" / "data")) / "pbc"


def common_args(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="diffusion model folder (%(default)s)")
    p.add_argument("--baseline", default=str(DEFAULT_BASELINE), help="baseline classifier folder (%(default)s)")
    p.add_argument("--data", default=str(DEFAULT_DATA), help="real data with a train/val/test manifest (%(default)s)")
    p.add_argument("--steps", type=int, default=25, help="DDIM sampling steps (%(default)s; a cascade's base stage)")
    p.add_argument("--superres-steps", type=int, default=None,
                   help="DDIM steps of a cascade's super-resolution stage (default: the cascade's own)")
    p.add_argument("--precision", default="bf16", choices=["bf16", "fp32"], help="sampling precision")
    p.add_argument("--seed", type=int, default=0, help="first sampling seed; image i of a class uses seed+i")
    p.add_argument("--no-cache", action="store_true", help="do not reuse or store generated images")
    p.add_argument("--json", help="also write the figures to this JSON file")
    return p


def setup_runtime() -> None:
    from cytomodel.runtime import configure_runtime
    configure_runtime()  # CYTOMODEL_THREADS, malloc tuning


def model_fingerprint(model_dir: str | Path) -> str:
    """Content hash of a model's weights (every stage of a cascade), so cached samples never outlive them."""
    model_dir = Path(model_dir)
    h = hashlib.sha256()
    for f in sorted(model_dir.rglob("*.safetensors")):
        h.update(f.relative_to(model_dir).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def load_model_any(model_dir: str | Path):
    """A cascade or a single base stage, whichever the folder holds."""
    from cytomodel.models import load_generator
    return load_generator(model_dir)


def load_real(data: str | Path, split: str, resolution: int, class_names, crop_fraction: float = 1.0):
    from cytomodel.data import load_dataset
    return load_dataset(data, resolution, crop_fraction, split=split, class_names=class_names)


def generate(model, model_dir, class_index: int, seeds, guidance: float, steps: int, precision: str,
             use_cache: bool = True, progress: bool = False, superres_steps: int | None = None) -> np.ndarray:
    """(len(seeds), H, W, 3) uint8 samples of one class, reusing cached ones (same model weights and settings)."""
    from cytomodel.data import cache_dir
    from cytomodel.pipelines import pipeline_for

    seeds = [int(s) for s in seeds]
    extra = {}
    key = f"{model_fingerprint(model_dir)}-c{class_index}-g{guidance:g}-s{steps}-{precision}"
    if getattr(model, "STAGE", "base") == "cascade":
        extra = {"superres_steps": superres_steps or model.superres_steps}
        key += f"-sr{extra['superres_steps']}"
    path = cache_dir() / "generated" / f"{key}.npz"
    have: dict[int, np.ndarray] = {}
    if use_cache and path.is_file():
        with np.load(path) as z:
            have = dict(zip(z["seeds"].tolist(), z["images"]))
    missing = [s for s in seeds if s not in have]
    if missing:
        out = pipeline_for(model)(model, [class_index] * len(missing), missing, guidance=guidance, steps=steps,
                                  precision=precision, progress=progress, **extra)
        have.update(zip(missing, out))
        if use_cache:
            path.parent.mkdir(parents=True, exist_ok=True)
            ks = sorted(have)
            with atomic_output(path) as tmp:
                np.savez(tmp, seeds=np.array(ks), images=np.stack([have[k] for k in ks]))
    return np.stack([have[s] for s in seeds])


def generate_balanced(model, model_dir, n_per_class: int, guidance: float, steps: int, precision: str,
                      seed: int = 0, use_cache: bool = True, log=print,
                      superres_steps: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``n_per_class`` images of every class (seeds seed..seed+n-1): (images, labels)."""
    imgs, labels = [], []
    t0 = time.time()
    for c in range(len(model.class_names)):
        imgs.append(generate(model, model_dir, c, range(seed, seed + n_per_class), guidance, steps, precision,
                             use_cache, superres_steps=superres_steps))
        labels += [c] * n_per_class
    if log:
        log(f"  [{len(labels)} samples at guidance {guidance:g}, {steps} steps, {precision}: "
            f"{time.time() - t0:.0f}s incl. cache]")
    return np.concatenate(imgs), np.asarray(labels)


def dihedral_views(x: np.ndarray) -> list[np.ndarray]:
    """The 8 flips/rotations of (N, H, W, C) images, identity first."""
    out = []
    for flip in (False, True):
        y = x[:, :, ::-1] if flip else x
        for k in range(4):
            out.append(np.ascontiguousarray(np.rot90(y, k, axes=(1, 2))))
    return out


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion."""
    if n == 0:
        return float("nan"), float("nan")
    p = successes / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)


def model_info(model) -> dict:
    if getattr(model, "STAGE", "base") == "cascade":
        return {"stage": "cascade", "resolution": model.resolution, "superres_steps": model.superres_steps,
                "base": model_info(model.base), "superres": model_info(model.superres)}
    m = model.metadata
    return {"train_steps": m.get("train_steps"), "wall_seconds": m.get("wall_seconds"),
            "data_hash": (m.get("data_hash") or "")[:12], "code_version": m.get("code_version")}


def describe_model(path, info: dict) -> str:
    """One line naming the model and its training steps (both stages of a cascade)."""
    if info.get("stage") == "cascade":
        return (f"cascade {path}: base step {info['base']['train_steps']}, super-resolution step "
                f"{info['superres']['train_steps']} ({info['superres_steps']} DDIM steps), {info['resolution']} px")
    return f"model {path}: step {info['train_steps']}, {info['wall_seconds']}s of training"


def bicubic_upscale(images: np.ndarray, size: int) -> np.ndarray:
    """(N, h, w, 3) uint8 -> (N, size, size, 3) by PIL's bicubic filter: the floor a super-resolution stage must beat."""
    from PIL import Image
    return np.stack([np.asarray(Image.fromarray(a).resize((size, size), Image.Resampling.BICUBIC)) for a in images])


def lanczos_resize(images: np.ndarray, size: int) -> np.ndarray:
    """(N, h, w, 3) uint8 -> (N, size, size, 3) by PIL's Lanczos filter (the models' own preprocessing); a no-op at
    the same size."""
    if images.shape[1] == size:
        return images
    from PIL import Image
    return np.stack([np.asarray(Image.fromarray(a).resize((size, size), Image.Resampling.LANCZOS)) for a in images])


def write_json(path: str | None, data: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(data, indent=2, default=float) + "\n")
        print(f"wrote {path}")
