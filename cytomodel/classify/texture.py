"""Texture evidence for the anomaly score: does a cell's fine detail fit the class it was called, better than no class?

Why: the 32-px base stage cannot see chromatin, granules or nucleoli, and a cell of a class the model never saw (a
blast) is often denoised as well as a normal cell at that scale. The cascade's super-resolution stage sees exactly
that detail: it predicts the *residual* (the 128-px cell minus the bicubic upsampling of its 32-px version), is
class-conditional with a null class, and is fully convolutional and trained on 64 × 64 crops — so the centre crop of
a framed cell (the cell, not the field of red cells) is what it is scored on.

``texture_errors`` gives, per cell, noise level and draw, the stage's noise-prediction error of that residual crop
under the predicted class and under the null class; ``texture_levels`` = log(E_class / E_null) per noise level
and ``null_levels`` = log E_null per noise level (how hard the detail is to predict at all) — together the cell's
texture profile across scales — and ``texture_gain`` the mean of the first — negative where the class explains the
detail (a normal cell), near zero or positive where it does not. The anomaly score reads both the gain and how far
the profile lies from its class's (:mod:`.novelty`). Measured on PBC with `ig` and with `erythroblast` held out of
both stages (``benchmarks/texture_scores.py``, docs/classifier.md).

:class:`TextureScorer` is what ``classify --anomaly texture`` / ``class-gain+texture`` runs on input images: frames
them at the cascade's size, saves each as the stage's training files were (:mod:`cytomodel.data.encoding`) and
returns the texture profile (gain and null error per level), with noise drawn per image (the same image gets the
same draws anywhere).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from ..data import Intake, encode_like, framed_arrays
from ..models.superres import downsample
from ..runtime import autocast
from .draw_plan import dihedral, image_seed

if TYPE_CHECKING:
    from ..models.cascade import Cascade
    from ..models.superres import SuperResModel

CROP = 64             # crop size of a stage whose record does not say its own
TIMESTEPS = (200, 350, 500, 650, 800)   # the levels chosen on val cells with ig held out, for classify's combination
                                        # with class-gain (docs/classifier.md)


def texture_errors(superres: "SuperResModel", images: np.ndarray, predicted: Sequence[int], draws: int = 2,
                   seed: int = 0, timesteps: Sequence[int] = TIMESTEPS, crop: int | None = None, batch: int = 96,
                   precision: str = "bf16", image_seeds: Sequence[int] | None = None) -> np.ndarray:
    """(N, T, D, 2) mean squared noise-prediction errors of the residual's centre ``crop``, per timestep and draw, under
    the ``predicted`` class (N class indices of ``superres``) and under the null class.

    ``images``: (N, H, H, 3) uint8 cells framed like the stage's training cells, H its resolution. A draw is one
    (ε, conditioning noise, dihedral view); the same draw serves both classes (paired). ``crop``: by default the
    crop size the stage was trained on (its record's ``config.crop_size``)."""
    arr = np.asarray(images)
    if arr.ndim != 4 or arr.shape[1:] != (superres.resolution, superres.resolution, 3):
        raise ValueError(f"texture errors need ({superres.resolution}, {superres.resolution}, 3) framed cells, the "
                         f"super-resolution stage's size; got {arr.shape}")
    if len(predicted) != len(arr):
        raise ValueError(f"{len(predicted)} predicted classes for {len(arr)} images")
    if crop is None:   # a stage trained on whole images records crop_size 0
        recorded = superres.metadata.get("config", {}).get("crop_size")
        crop = CROP if recorded is None else int(recorded) or superres.resolution
    if not 0 < crop <= superres.resolution:
        raise ValueError(f"the stage's resolution {superres.resolution} is smaller than the {crop}-px crop")
    n_t = superres.scheduler.config.num_train_timesteps
    if any(not 0 <= int(t) < n_t for t in timesteps):
        raise ValueError(f"timesteps must lie in [0, {n_t}), got {list(timesteps)}")
    alphas = superres.scheduler.alphas_cumprod.float()
    device = superres.device
    high = superres.encode(arr)
    low = superres.encode(downsample(arr, superres.low_resolution))
    residual = superres.to_residual(high, low)
    lo = (superres.resolution - crop) // 2
    window = (slice(None), slice(None), slice(lo, lo + crop), slice(lo, lo + crop))
    labels = (torch.as_tensor(np.asarray(predicted), dtype=torch.long, device=device),
              torch.full((len(arr),), superres.null_class, device=device))
    level = torch.full((len(arr),), superres.cond_noise_sample, device=device)
    gen = torch.Generator().manual_seed(int(seed))
    if image_seeds is not None:
        if len(image_seeds) != len(arr):
            raise ValueError(f"{len(image_seeds)} image seeds for {len(arr)} images")
        gens = [torch.Generator().manual_seed(int(s)) for s in image_seeds]

    def noise(shape: torch.Size) -> torch.Tensor:
        if image_seeds is None:
            return torch.randn(shape, generator=gen).to(device)
        return torch.stack([torch.randn(shape[1:], generator=g) for g in gens]).to(device)
    out = np.zeros((len(arr), len(timesteps), draws, 2), np.float32)
    for ti, t in enumerate(timesteps):
        a = alphas[int(t)].to(device)
        for d in range(draws):
            eps = noise(residual.shape)
            cond = superres.condition(low, level, noise(low.shape))
            x = torch.cat([a.sqrt() * residual + (1 - a).sqrt() * eps, cond], dim=1)[window]
            x, e = dihedral(x, d % 8), dihedral(eps[window], d % 8)
            for c, lab in enumerate(labels):
                for b in range(0, len(x), batch):
                    xb = x[b:b + batch]
                    with torch.no_grad(), autocast(device, precision):
                        pred = superres.unet(xb, torch.full((len(xb),), int(t), device=device),
                                             class_labels=lab[b:b + batch]).sample
                    out[b:b + len(xb), ti, d, c] = (pred.float() - e[b:b + batch]).pow(2).mean(dim=(1, 2, 3)).cpu()
    return out


def _at_levels(errors: np.ndarray, timestep_index: Sequence[int] | None) -> np.ndarray:
    """:func:`texture_errors`' output (N, T, D, 2) at the chosen noise levels (indices; all when None)."""
    e = np.asarray(errors)
    if e.ndim != 4 or e.shape[-1] != 2:
        raise ValueError(f"expected (N, T, D, 2) texture errors, got shape {e.shape}")
    return e if timestep_index is None else e[:, list(timestep_index)]


def texture_levels(errors: np.ndarray, timestep_index: Sequence[int] | None = None) -> np.ndarray:
    """(N, T): per cell and noise level (indices into the computed ones; all by default), the mean over draws of
    log(E_class / E_null) from :func:`texture_errors`' output — the gains of the cell's texture profile across
    scales."""
    e = _at_levels(errors, timestep_index)
    return np.log(e[..., 0] / e[..., 1]).mean(axis=2)


def null_levels(errors: np.ndarray, timestep_index: Sequence[int] | None = None) -> np.ndarray:
    """(N, T): per cell and noise level, the mean over draws of log E_null (:func:`texture_errors`' null-class error).
    Why beside the gains: a cell of an unseen class may be explained by its called class about as well as a normal
    one is, yet its detail be unlike that class's at some scale (on val cells with ig and with erythroblast held out,
    the profile of gains and null errors ranked both classes better than the gains alone: docs/classifier.md)."""
    return np.log(_at_levels(errors, timestep_index)[..., 1]).mean(axis=2)


def texture_gain(errors: np.ndarray, timestep_index: Sequence[int] | None = None) -> np.ndarray:
    """Per cell, the mean over the chosen noise levels and draws of log(E_class / E_null) (:func:`texture_levels`
    averaged over the levels)."""
    return texture_levels(errors, timestep_index).mean(axis=1)


def training_encoding(superres: "SuperResModel", cascade: "Cascade | None" = None) -> dict[str, Any] | None:
    """How the stage's training files were saved (its framing record's ``encoding``, else the cascade's), or None."""
    for meta in (superres.metadata, cascade.metadata if cascade is not None else {}):
        enc = (meta.get("framing") or {}).get("encoding")
        if enc:
            return enc
    return None


@dataclass
class TextureScorer:
    """The texture gain of input images (paths, bytes, PIL) for a cascade's 128-px stage: framed by ``intake`` at the
    stage's size, saved like its training files (``encoding``), scored under their predicted class."""
    superres: "SuperResModel"
    intake: Intake
    encoding: dict[str, Any] | None
    draws: int = 2
    timesteps: tuple[int, ...] = TIMESTEPS
    weights_sha256: str | None = None   # the stage's weights (a cascade records them): which reference fits it

    @classmethod
    def of_cascade(cls, cascade: "Cascade", intake: Intake | None = None, warn: bool = True) -> "TextureScorer":
        enc = training_encoding(cascade.superres, cascade)
        if enc is None and warn:
            warnings.warn("the 128-px stage's record does not say how its training files were saved, so input cells "
                          "are not re-saved like them and the texture score of cells from other pipelines (e.g. "
                          "360-px originals) is not comparable with its validation cells. Record it with "
                          "`cytomodel framing measure --model DIR --data TRAINING_DATA`.", stacklevel=2)
        sha = (cascade.metadata.get("stages") or {}).get("superres", {}).get("weights_sha256")
        return cls(cascade.superres, intake or cascade.intake(), enc, weights_sha256=sha)

    def identity(self) -> dict[str, Any]:
        """What makes two runs' texture statistics the same numbers (for a results table's run key)."""
        m = self.superres.metadata
        return {"superres_train_steps": m.get("train_steps"), "superres_created": m.get("created_utc"),
                "superres_weights_sha256": self.weights_sha256, "draws": self.draws,
                "timesteps": list(self.timesteps), "encoding": self.encoding is not None,
                "level_columns": True,   # tables from before the per-level columns cannot be resumed,
                "null_level_columns": True}   # nor those from before the null-error columns

    def profile(self, sources: Sequence, predicted: Sequence[str], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Two (N, T) arrays per source and noise level (``timesteps``), averaged over draws: log(E_class / E_null)
        under its predicted class name (:func:`texture_levels`) and log E_null (:func:`null_levels`); NaN rows
        where a source could not be framed."""
        if len(sources) != len(predicted):
            raise ValueError(f"{len(predicted)} predicted classes for {len(sources)} images")
        gains = np.full((len(sources), len(self.timesteps)), np.nan)
        nulls = gains.copy()
        if not len(sources):
            return gains, nulls
        cells = self.intake.frame(list(sources))
        arrays, keep = framed_arrays(cells, self.superres.resolution)
        if not keep:
            return gains, nulls
        arrays = encode_like(arrays, self.encoding)
        labels = [self.superres.class_index(predicted[i]) for i in keep]
        errors = texture_errors(self.superres, arrays, labels, self.draws, timesteps=self.timesteps,
                                image_seeds=[image_seed(a, seed) for a in arrays])
        gains[keep], nulls[keep] = texture_levels(errors), null_levels(errors)
        return gains, nulls

    def levels(self, sources: Sequence, predicted: Sequence[str], seed: int = 0) -> np.ndarray:
        """(N, T): per source and noise level, log(E_class / E_null) averaged over draws (:meth:`profile`'s gains)."""
        return self.profile(sources, predicted, seed)[0]

    def gains(self, sources: Sequence, predicted: Sequence[str], seed: int = 0) -> np.ndarray:
        """Per source, the texture gain (the mean of :meth:`levels` over the levels); NaN where not framed."""
        return self.levels(sources, predicted, seed).mean(axis=1)
