"""Counterfactual heat maps (CytoDiffusion): where would this cell have to change to be the other class?

Over paired noise draws (same t, ε and view for both classes) we average the per-pixel residual r_c = ε − ε_θ(x_t, t, c)
under the predicted class p and the target class q, undoing each draw's flip/rotation. Their difference

    Δ = mean(r_p) − mean(r_q) = mean(ε_θ(x_t, t, q) − ε_θ(x_t, t, p))

is, per draw, proportional to the change the target class makes to the model's estimate of the clean image
(x̂₀,q − x̂₀,p = √((1−ᾱ)/ᾱ) · (ε_θ,p − ε_θ,q)), so its sign is consistent across draws and averaging sharpens it.
The heat map is ‖Δ‖ over colour channels per pixel, scaled to [0, 1] by its maximum.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..data import Intake, frame_or_raise
from ..models.base import CytoModel
from .config import ClassifierConfig
from .errors import estimate_errors


@dataclass
class Explanation:
    image: np.ndarray          # (H, W, 3) uint8, as the model saw it
    predicted: str
    target: str
    heatmap: np.ndarray        # (H, W) float in [0, 1]
    magnitude: np.ndarray      # (H, W) ‖Δ‖ before scaling
    delta: np.ndarray          # (3, H, W) signed Δ = mean residual(pred) − mean residual(target)
    error_gap: float           # E_target − E_predicted (positive: the image fits the predicted class better)
    errors: dict[str, float]
    draws: int                 # noise draws averaged


def explain_image(model: CytoModel, image, target: str | int, predicted: str | int | None = None,
                  config: ClassifierConfig | None = None, intake: Intake | None = None) -> Explanation:
    """Heat map of where ``image`` would differ under ``target`` instead of its predicted class.

    ``image``: a path, PIL image (framed like the training cells by ``intake``, default ``model.intake()``), or an
    (H, W, 3) uint8 array at the model's resolution. Without ``predicted`` all classes are evaluated (``config.trials``
    draws, exhaustive) and the lowest-error class is used.
    """
    cfg = dataclasses.replace(config or ClassifierConfig(trials=64), strategy="exhaustive").validate()
    if isinstance(image, np.ndarray):
        arr = np.asarray(image, dtype=np.uint8)
        if arr.shape != (model.resolution, model.resolution, 3):
            raise ValueError(f"array image must be ({model.resolution}, {model.resolution}, 3) uint8; "
                             "pass a path or PIL image to have it preprocessed")
    else:
        arr = frame_or_raise(intake or model.intake(), image)
    q = model.class_index(target)
    if predicted is None:
        classes = list(range(len(model.class_names)))
    else:
        p = model.class_index(predicted)
        if p == q:
            raise ValueError("predicted and target class are the same; choose another target")
        classes = [p, q]
    est = estimate_errors(model, arr[None], cfg, classes=classes, keep_residuals=True)
    errs = est.errors[0]
    if predicted is None:
        order = np.argsort(errs, kind="stable")
        p = classes[int(order[0])] if classes[int(order[0])] != q else classes[int(order[1])]
    pi, qi = classes.index(p), classes.index(q)
    delta = est.residuals[0, pi] - est.residuals[0, qi]
    mag = np.sqrt((delta ** 2).sum(axis=0))
    top = float(mag.max())
    heat = mag / top if top > 0 else np.zeros_like(mag)
    return Explanation(image=arr, predicted=model.class_names[p], target=model.class_names[q],
                       heatmap=heat.astype(np.float32), magnitude=mag.astype(np.float32),
                       delta=delta.astype(np.float32), error_gap=float(errs[qi] - errs[pi]),
                       errors={model.class_names[c]: float(e) for c, e in zip(classes, errs)},
                       draws=int(est.draws_run[0]))


def _colormap(values: np.ndarray) -> np.ndarray:
    """[0, 1] -> RGB uint8 with matplotlib's 'inferno' (perceptually uniform)."""
    from matplotlib import colormaps  # matplotlib: only for the overlay picture (~1 s to import)

    return (colormaps["inferno"](np.clip(values, 0, 1))[..., :3] * 255 + 0.5).astype(np.uint8)


def overlay_image(exp: Explanation, upscale: int = 8, alpha: float = 0.6) -> Image.Image:
    """Three panels: the cell, the heat map, and the heat map blended over the cell (opacity ∝ heat)."""
    size = exp.image.shape[0] * upscale
    base = Image.fromarray(exp.image).resize((size, size), Image.Resampling.LANCZOS)
    heat = np.asarray(Image.fromarray((exp.heatmap * 255).astype(np.uint8)).resize((size, size),
                                                                                   Image.Resampling.BILINEAR)) / 255.0
    colour = _colormap(heat)
    a = (alpha * heat)[..., None]
    blend = (np.asarray(base, dtype=np.float64) * (1 - a) + colour * a + 0.5).astype(np.uint8)
    pad, title = 6, 18
    canvas = Image.new("RGB", (3 * size + 4 * pad, size + title + 2 * pad), "white")
    for i, panel in enumerate([base, Image.fromarray(colour), Image.fromarray(blend)]):
        canvas.paste(panel, (pad + i * (size + pad), title + pad))
    draw = ImageDraw.Draw(canvas)
    draw.text((pad, 3), f"predicted: {exp.predicted}", fill="black")
    draw.text((pad + size + pad, 3), f"{exp.predicted} -> {exp.target}", fill="black")
    draw.text((pad + 2 * (size + pad), 3), f"error gap {exp.error_gap:+.3g} ({exp.draws} trials)", fill="black")
    return canvas


def save_overlay(exp: Explanation, out: str | Path, upscale: int = 8) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    overlay_image(exp, upscale=upscale).save(out)
    return out
