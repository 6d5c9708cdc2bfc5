"""Variation another lab brings — stain, illumination, magnification, focus, camera noise, JPEG, any-angle
rotation — as a training augmentation.

Parameters are drawn per image (:func:`sample_parameters`) and applied to the high-resolution source cell
(:func:`apply`, torch, batched) before it is brought to the training resolution. The base stage is told which
augmentation each image got (non-leaky: the vector of :func:`cytomodel.models.lab_embedding.encode`, through the
model's :class:`~cytomodel.models.lab_embedding.AugmentationEmbedding`); a share of images has it withheld (the
*unknown* token), so the network also denoises a cell whose lab it is not told. The baseline CNN gets the same
augmentation without being told (:mod:`cytomodel.evaluate.baseline_training`).
"""
from __future__ import annotations

import io
import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..models.lab_embedding import DIM
from .config import LabVariation


def sample_parameters(n: int, gen: torch.Generator, variation: LabVariation = LabVariation(),
                      p_augment: float = 1.0) -> torch.Tensor:
    """(n, DIM) raw parameters; rows not augmented (probability 1 - ``p_augment``) are all zero (identity)."""
    v = variation

    def u(lo: float, hi: float, shape=(n,)) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(shape, generator=gen)

    p = torch.zeros(n, DIM)
    p[:, 0] = u(-math.log(v.zoom), math.log(v.zoom))
    angle = u(0.0, math.pi / 2)  # the dihedral flips/rotations of the base augmentation cover the rest
    p[:, 1], p[:, 2] = torch.cos(4 * angle) - 1, torch.sin(4 * angle)
    p[:, 3:5] = u(-v.shift, v.shift, (n, 2))
    p[:, 5] = u(0.0, v.blur_max) * (torch.rand(n, generator=gen) < 0.5)
    p[:, 6] = u(0.0, v.noise_max) * (torch.rand(n, generator=gen) < 1 / 3)
    quality = u(v.jpeg_min_quality, 95.0).round()
    p[:, 7] = (1 - quality / 100) * (torch.rand(n, generator=gen) < 1 / 3)
    p[:, 8:11] = u(-v.gamma, v.gamma, (n, 3))
    p[:, 11:14] = u(-v.gain, v.gain, (n, 3))
    hue = u(-v.hue, v.hue) * 2 * math.pi
    p[:, 14], p[:, 15] = torch.cos(hue) - 1, torch.sin(hue)
    p[:, 16] = u(-v.saturation, v.saturation)
    p[:, 17] = u(-v.contrast, v.contrast)
    p[:, 18] = u(-v.brightness, v.brightness)
    keep = torch.rand(n, generator=gen) < p_augment
    return p * keep[:, None]


def apply(images: torch.Tensor, params: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Apply raw ``params`` (n, DIM) to (n, 3, H, W) images in [0, 1]; rows of zeros are returned unchanged."""
    x = images.float()
    n, _, h, w = x.shape
    rows = params.abs().sum(1) > 0
    if not rows.any():
        return x
    out = x.clone()
    y, p = x[rows], params[rows]
    y = _geometry(y, p)
    y = _blur(y, p[:, 5])
    y = _colour(y, p)
    y = _jpeg(y, p[:, 7])
    noise = torch.randn(y.shape, generator=gen) * p[:, 6].view(-1, 1, 1, 1)
    out[rows] = (y + noise).clamp(0, 1)
    return out


def vary_rows(x: torch.Tensor, source: torch.Tensor, idx: torch.Tensor, params: torch.Tensor,
              gen: torch.Generator) -> torch.Tensor:
    """``x`` (B, 3, h, w) in [0, 1], each row that ``params`` augments replaced, in place, by its source image
    (``source[idx]``: uint8, the same cells, possibly larger) with the variation applied and brought to x's size
    (bicubic, antialiased)."""
    rows = params.abs().sum(1) > 0
    if rows.any():
        varied = apply(source[idx[rows]].float() / 255.0, params[rows], gen)
        if varied.shape[-1] != x.shape[-1]:
            varied = F.interpolate(varied, size=tuple(x.shape[-2:]), mode="bicubic", antialias=True,
                                   align_corners=False).clamp(0, 1)
        x[rows] = varied
    return x


def _geometry(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Zoom (about the centre), rotation and shift; the border is reflected (the training cells have red cells
    around them to reflect; framing fills beyond an input's border with its background colour instead, since in a
    crop cut close to its cell the reflection would be the cell)."""
    zoom = torch.exp(p[:, 0])
    angle = torch.atan2(p[:, 2], p[:, 1] + 1) / 4
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, -sin, p[:, 3] * 2], 1), torch.stack([sin, cos, p[:, 4] * 2], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    if not (sigma > 0).any():
        return x
    radius = int(math.ceil(3 * float(sigma.max())))
    r = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (r[None] / sigma.clamp(min=1e-3)[:, None]) ** 2)
    k = torch.where(sigma[:, None] > 0, k, (r[None] == 0).float())
    k = k / k.sum(1, keepdim=True)
    n, c, h, w = x.shape
    y = F.pad(x.reshape(1, n * c, h, w), (radius, radius, radius, radius), mode="reflect")
    kk = k.repeat_interleave(c, 0)
    y = F.conv2d(y, kk.view(n * c, 1, 1, -1), groups=n * c)
    y = F.conv2d(y, kk.view(n * c, 1, -1, 1), groups=n * c)
    return y.view(n, c, h, w)


def _colour(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Stain strength (per-channel optical-density scale), illumination gain, hue, saturation, contrast, brightness."""
    x = x.clamp(1e-3, 1).pow(torch.exp(p[:, 8:11])[..., None, None])
    x = (x * torch.exp(p[:, 11:14])[..., None, None]).clamp(0, 1)
    hue = torch.atan2(p[:, 15], p[:, 14] + 1)
    x = _rotate_hue(x, hue)
    grey = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)
    x = grey + (x - grey) * torch.exp(p[:, 16]).view(-1, 1, 1, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = mean + (x - mean) * torch.exp(p[:, 17]).view(-1, 1, 1, 1)
    return (x + p[:, 18].view(-1, 1, 1, 1)).clamp(0, 1)


def _rotate_hue(x: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotate the chroma of RGB images about the grey axis (YIQ), one angle per image."""
    to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    from_yiq = torch.linalg.inv(to_yiq)
    c, s = torch.cos(angle), torch.sin(angle)
    rot = torch.zeros(len(angle), 3, 3)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = c, -s, s, c
    m = from_yiq @ rot @ to_yiq
    return torch.einsum("nij,njhw->nihw", m, x).clamp(0, 1)


def _jpeg(x: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
    """Re-encode as JPEG at quality 100·(1 − strength) where strength > 0 (PIL, as a camera or export would)."""
    idx = torch.nonzero(strength > 0).flatten().tolist()
    if not idx:
        return x
    x = x.clone()
    for i in idx:
        arr = (x[i].permute(1, 2, 0).clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG", quality=int(round(100 * (1 - float(strength[i])))))
        back = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
        x[i] = torch.from_numpy(back.copy()).permute(2, 0, 1).float() / 255
    return x
