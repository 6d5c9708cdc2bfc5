"""A discriminative baseline: a small ResNet-style CNN that names the cell type of a preprocessed image.

It is the yardstick the diffusion model is measured against (class fidelity of generated cells, memorisation in its
feature space) and the comparison the diffusion classifier reports. Stable API::

    clf = train_baseline(train_arrays, val_arrays, epochs=20, seed=0)      # ImageArrays from load_dataset
    clf.predict_proba(images_uint8_nhwc)   # (N, C) float32, rows sum to 1
    clf.logits(images) / clf.features(images) / clf.predict(images)
    clf.class_names, clf.resolution
    clf.save_pretrained(dir, dtype=torch.float16); BaselineClassifier.from_pretrained(dir)

On disk: ``model.safetensors`` + ``baseline.json`` (classes, resolution, normalisation, architecture, data hash,
code version, training settings, validation metrics). ``device`` (train, load) follows
:func:`cytomodel.runtime.resolve_device`. Command line: ``cytomodel baseline train|predict``
(:mod:`cytomodel.cli_baseline`).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .data import ImageArrays
from .metrics import classification_metrics  # noqa: F401  (re-exported: cytomodel.baseline.classification_metrics)
from cytocore.provenance import code_version, write_json

WEIGHTS_FILE = "model.safetensors"
META_FILE = "baseline.json"
FORMAT_VERSION = 1


# ----------------------------------------------------------------------------------------------- network
NORMS = ("batch", "group")


def norm_layer(kind: str, channels: int) -> nn.Module:
    """Batch norm, or group norm (8 groups): statistics of the image itself, not of the training batches — what
    carries over to another lab's stain (Tsutsui et al., ICASSP 2023)."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    raise ValueError(f"norm must be one of {', '.join(NORMS)}, not {kind!r}")


class BasicBlock(nn.Module):
    """Pre-activation-free ResNet basic block (conv-norm-ReLU-conv-norm + shortcut), optional stride-2
    downsampling. The attribute names (bn1, bn2) are kept for batch and group norm alike, so weights load."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, norm: str = "batch"):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = norm_layer(norm, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = norm_layer(norm, c_out)
        nn.init.zeros_(self.bn2.weight)  # each residual branch starts as identity ("zero-init gamma")
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), norm_layer(norm, c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x), inplace=True)


class ResNetSmall(nn.Module):
    """Stem (3x3 conv) + one stage per width, each halving the resolution after the first, then global average
    pooling, so any input size works. Default widths (32, 64, 128), one block each: ~0.3 M parameters, ~50 MMAC per
    32 px image. ``stem_stride`` > 1 makes the stem a strided ``stem_stride``-wide conv, so a 128-px network costs
    what a 32-px one does (stride 4) while still seeing every pixel."""

    def __init__(self, num_classes: int, widths: Sequence[int] = (32, 64, 128), blocks: Sequence[int] = (1, 1, 1),
                 dropout: float = 0.1, stem_stride: int = 1, norm: str = "batch"):
        super().__init__()
        if len(widths) != len(blocks) or not widths:
            raise ValueError("widths and blocks must be non-empty and of equal length")
        if stem_stride < 1:
            raise ValueError(f"stem_stride must be ≥ 1, got {stem_stride}")
        k = 3 if stem_stride == 1 else stem_stride + 1 + (stem_stride % 2)
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], k, stem_stride, k // 2, bias=False),
                                  norm_layer(norm, widths[0]), nn.ReLU(inplace=True))
        layers, c = [], widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks)):
            for j in range(n):
                layers.append(BasicBlock(c, w, stride=2 if (i > 0 and j == 0) else 1, norm=norm))
                c = w
        self.stages = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(c, num_classes)
        self.feature_dim = c
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(self.stages(self.stem(x)), 1).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(x)))


# ----------------------------------------------------------------------------------------------- classifier
def _autocast(precision: str, device: torch.device):
    import contextlib

    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "fp32":
        return contextlib.nullcontext()
    raise ValueError(f"precision must be 'bf16' or 'fp32', not {precision!r}")


@dataclass
class BaselineClassifier:
    """A trained ``ResNetSmall`` plus what its inputs mean. Inputs are (N, H, W, 3) uint8 at ``resolution``,
    preprocessed like the training data (``load_dataset`` / ``CytoModel.preprocess``)."""
    net: ResNetSmall
    class_names: list[str]
    resolution: int
    pixel_mean: list[float]
    pixel_std: list[float]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def to(self, device) -> "BaselineClassifier":
        self.net.to(device)
        return self

    def intake(self, um_per_px: float | None = None, stain: str = "none"):
        """How input images reach this classifier: framed as its training cells were (:mod:`cytomodel.intake`)."""
        from .intake import Intake

        crop = float(self.metadata.get("crop_fraction") or 1.0)
        return Intake.for_record(self.metadata, self.resolution, crop, um_per_px, stain)

    # --------------------------------------------------------------- inference
    def _prepare(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(images))
        if x.ndim == 3:
            x = x.unsqueeze(0)
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"expected (N, H, W, 3) uint8 images, got shape {tuple(x.shape)}")
        if x.dtype != torch.uint8:
            raise ValueError(f"expected uint8 images (0-255), got {x.dtype}")
        if x.shape[1] != self.resolution or x.shape[2] != self.resolution:
            raise ValueError(f"images are {x.shape[1]}x{x.shape[2]} but this baseline was trained at "
                             f"{self.resolution}px; preprocess them to {self.resolution}px first")
        return x

    def _normalise(self, x_uint8_nhwc: torch.Tensor) -> torch.Tensor:
        x = x_uint8_nhwc.permute(0, 3, 1, 2).float() / 255.0
        mean = torch.tensor(self.pixel_mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.pixel_std, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    @torch.no_grad()
    def _run(self, images, what: str, batch_size: int, precision: str) -> np.ndarray:
        x = self._prepare(images)
        self.net.eval()
        device = self.device
        out = []
        for s in range(0, len(x), batch_size):
            xb = self._normalise(x[s:s + batch_size].to(device))
            with _autocast(precision, device):
                y = self.net.features(xb) if what == "features" else self.net(xb)
            out.append(y.float().cpu())
        if not out:
            dim = self.net.feature_dim if what == "features" else len(self.class_names)
            return np.zeros((0, dim), np.float32)
        return torch.cat(out).numpy()

    def logits(self, images, batch_size: int = 256, precision: str = "fp32") -> np.ndarray:
        """(N, C) float32 logits."""
        return self._run(images, "logits", batch_size, precision)

    def predict_proba(self, images, batch_size: int = 256, precision: str = "fp32") -> np.ndarray:
        """(N, C) float32 class probabilities (softmax of the logits), columns in ``class_names`` order."""
        z = torch.from_numpy(self.logits(images, batch_size, precision))
        return torch.softmax(z, dim=1).numpy()

    def predict(self, images, batch_size: int = 256, precision: str = "fp32") -> np.ndarray:
        """(N,) int64 index of the most probable class."""
        return self.logits(images, batch_size, precision).argmax(1)

    def features(self, images, batch_size: int = 256, precision: str = "fp32") -> np.ndarray:
        """(N, D) float32 penultimate-layer (globally pooled) features, e.g. for nearest-neighbour checks."""
        return self._run(images, "features", batch_size, precision)

    def evaluate(self, data: ImageArrays, precision: str = "fp32") -> dict[str, Any]:
        """Accuracy, balanced accuracy, per-class recall and confusion matrix on labelled ``data``."""
        labels = map_labels(data, self.class_names)
        return classification_metrics(labels, self.predict(data.images, precision=precision), self.class_names)

    # --------------------------------------------------------------- persistence
    def save_pretrained(self, path: str | Path, dtype: torch.dtype = torch.float32,
                        extra: dict[str, Any] | None = None) -> Path:
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {k: (v.to(dtype) if v.is_floating_point() else v).cpu().contiguous()
                 for k, v in self.net.state_dict().items()}
        save_file(state, str(path / WEIGHTS_FILE))
        meta = {**self.metadata, **(extra or {})}
        meta.update(format_version=FORMAT_VERSION, kind="cytomodel-baseline", class_names=self.class_names,
                    resolution=self.resolution,
                    normalisation={"pixel_mean": self.pixel_mean, "pixel_std": self.pixel_std,
                                   "formula": "(x/255 - mean) / std, x uint8 RGB"},
                    architecture=self.architecture, weights_dtype=str(dtype).replace("torch.", ""))
        write_json(path / META_FILE, meta)
        self.metadata = meta
        return path

    @property
    def architecture(self) -> dict[str, Any]:
        return self.metadata.get("architecture") or {}

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device | None = None) -> "BaselineClassifier":
        """Load a saved baseline; ``device`` None leaves it on the CPU, else it is moved there."""
        from safetensors.torch import load_file

        path = Path(path)
        if not (path / META_FILE).is_file():
            raise FileNotFoundError(f"{path} is not a baseline classifier folder (no {META_FILE}); "
                                    "train one with `cytomodel baseline train`")
        meta = json.loads((path / META_FILE).read_text())
        if meta.get("format_version", 0) > FORMAT_VERSION:
            raise ValueError(f"{path} was written by a newer cytomodel (format {meta['format_version']}); upgrade")
        arch = meta["architecture"]
        net = ResNetSmall(len(meta["class_names"]), tuple(arch["widths"]), tuple(arch["blocks"]),
                          float(arch.get("dropout", 0.0)), int(arch.get("stem_stride", 1)), arch.get("norm", "batch"))
        state = {k: (v.float() if v.is_floating_point() else v) for k, v in load_file(str(path / WEIGHTS_FILE)).items()}
        net.load_state_dict(state)
        net.eval()
        if device is not None:
            net.to(device)
        norm = meta["normalisation"]
        return cls(net, list(meta["class_names"]), int(meta["resolution"]), list(norm["pixel_mean"]),
                   list(norm["pixel_std"]), meta)


def load_baseline(path: str | Path | None = None, device: str | torch.device | None = None) -> BaselineClassifier:
    """Load a saved baseline (default: the bundled ``data/models/baseline-32``), on ``device`` (None: the CPU)."""
    return BaselineClassifier.from_pretrained(path or bundled_baseline_path(), device=device)


def bundled_baseline_path() -> Path:
    return Path(__file__).resolve().parent.parent / "data" / "models" / "baseline-32"


# ----------------------------------------------------------------------------------------------- labels
def map_labels(data: ImageArrays, class_names: Sequence[str]) -> np.ndarray:
    """``data.labels`` re-indexed into ``class_names`` (data may list its classes in another order)."""
    unknown = sorted(set(data.class_names) - set(class_names))
    present = {data.class_names[i] for i in np.unique(data.labels)}
    if present & set(unknown):
        raise ValueError(f"data have label(s) {sorted(present & set(unknown))} the classifier does not know "
                         f"(it knows {list(class_names)})")
    lut = np.array([class_names.index(c) if c in class_names else -1 for c in data.class_names])
    return lut[data.labels]



# ----------------------------------------------------------------------------------------------- training
def _augment(batch_uint8_nchw: torch.Tensor, color_jitter: float, gen: torch.Generator) -> torch.Tensor:
    """The diffusion model's augmentation (dihedral flips/rotations + mild brightness/colour gain jitter)."""
    from types import SimpleNamespace

    from .objectives import augment

    return augment(batch_uint8_nchw, SimpleNamespace(flips=True, rotations=True, color_jitter=color_jitter), gen)


def _training_batch(images: torch.Tensor, source: torch.Tensor | None, idx: torch.Tensor, color_jitter: float,
                    lab_augment: float, gen: torch.Generator) -> torch.Tensor:
    """One augmented batch in [0, 1]: a share ``lab_augment`` given another lab's look (cytomodel.lab_augmentation,
    applied to the source images and downsampled; leaky — a discriminative model should ignore the lab), then the
    dihedral flips/rotations and jitter."""
    if lab_augment <= 0:
        return _augment(images[idx], color_jitter, gen)
    from . import lab_augmentation as lab

    x = images[idx].float() / 255.0
    params = lab.sample_parameters(len(idx), gen, p_augment=lab_augment)
    rows = params.abs().sum(1) > 0
    if rows.any():
        src = (source if source is not None else images)[idx[rows]].float() / 255.0
        varied = lab.apply(src, params[rows], gen)
        if varied.shape[-1] != x.shape[-1]:
            varied = F.interpolate(varied, size=x.shape[-2:], mode="bicubic", antialias=True,
                                   align_corners=False).clamp(0, 1)
        x[rows] = varied
    return _augment(x, color_jitter, gen)


def train_baseline(data: ImageArrays, val: ImageArrays | None = None, epochs: int = 20, batch_size: int = 128,
                   seed: int = 0, progress: bool = True, lr: float = 3e-3, weight_decay: float = 5e-4,
                   widths: Sequence[int] = (32, 64, 128), blocks: Sequence[int] = (1, 1, 1), dropout: float = 0.1,
                   label_smoothing: float = 0.05, color_jitter: float = 0.05, balanced: bool = True,
                   precision: str = "bf16", threads: int | None = None, max_steps: int | None = None,
                   log: Any = None, device: str | torch.device | None = None, stem_stride: int = 1,
                   norm: str = "batch", lab_augment: float = 0.0, source: ImageArrays | None = None
                   ) -> BaselineClassifier:
    """Train a ``ResNetSmall`` on ``data`` (preprocessed uint8 images).

    AdamW with one-cycle (warm-up + cosine) learning rate, label smoothing, class-balanced loss weights (so the
    classifier's implicit prior is uniform over classes: what class fidelity of class-balanced samples needs),
    bf16 autocast by default, on ``device`` (:func:`cytomodel.runtime.resolve_device`: None = CUDA if present, else
    the CPU). Seeded: same data, seed, device and thread count, same weights.
    ``max_steps`` caps the number of optimiser steps (for tests). Validation metrics land in ``metadata``.
    ``norm``: "batch" or "group"; ``lab_augment``: the share of images given another lab's stain, scale, focus, noise
    and rotation (:mod:`cytomodel.lab_augmentation`), at the resolution of ``source`` (the same images, larger) when
    given.
    """
    from .runtime import configure_runtime, resolve_device

    configure_runtime(threads)
    dev = resolve_device(device)
    if len(data.images) == 0:
        raise ValueError("no training images")
    n, h, w, _ = data.images.shape
    if h != w:
        raise ValueError(f"training images must be square, got {h}x{w}")
    k = len(data.class_names)
    counts = np.bincount(data.labels, minlength=k)
    if (counts == 0).any():
        raise ValueError(f"class(es) {[c for c, m in zip(data.class_names, counts) if m == 0]} have no images")
    if val is not None and val.images.shape[1:3] != (h, w):
        raise ValueError(f"validation images are {val.images.shape[1]}px but training images are {h}px")

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x = data.images.reshape(-1, 3).astype(np.float64) / 255.0
    mean, std = x.mean(0).round(6).tolist(), np.maximum(x.std(0), 1e-3).round(6).tolist()
    net = ResNetSmall(k, widths, blocks, dropout, stem_stride, norm).to(dev)
    clf = BaselineClassifier(net, list(data.class_names), int(h), mean, std)
    images = torch.from_numpy(np.ascontiguousarray(data.images.transpose(0, 3, 1, 2)))
    src = None
    if source is not None:
        if len(source.images) != n or not np.array_equal(source.labels, data.labels):
            raise ValueError("source images must be the training images at a higher resolution, in the same order")
        src = torch.from_numpy(np.ascontiguousarray(source.images.transpose(0, 3, 1, 2)))
    labels = torch.from_numpy(data.labels.astype(np.int64))
    mean_t, std_t = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    weight = torch.tensor(counts.sum() / (k * counts), dtype=torch.float32, device=dev) if balanced else None

    steps_per_epoch = max(1, n // batch_size)
    total = epochs * steps_per_epoch if max_steps is None else min(max_steps, epochs * steps_per_epoch)
    decay, no_decay = [], []
    for name, p in net.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr)
    warm = max(1, int(0.05 * total))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (s + 1) / warm if s < warm else
                                              0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, total - warm))))
    history, step, t0 = [], 0, time.time()
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=total, desc="train baseline", unit="step", dynamic_ncols=True)
    for epoch in range(epochs):
        if step >= total:
            break
        net.train()
        order = torch.randperm(n, generator=gen)
        loss_sum, seen = 0.0, 0
        for b in range(steps_per_epoch):
            if step >= total:
                break
            idx = order[b * batch_size:(b + 1) * batch_size]
            xb = ((_training_batch(images, src, idx, color_jitter, lab_augment, gen) - mean_t) / std_t).to(dev)
            with _autocast(precision, dev):
                logits = net(xb)
            loss = F.cross_entropy(logits.float(), labels[idx].to(dev), weight=weight,
                                   label_smoothing=label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            loss_sum += loss.item() * len(idx)
            seen += len(idx)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss_sum / seen:.3f}")
        row = {"epoch": epoch + 1, "step": step, "train_loss": round(loss_sum / max(seen, 1), 5),
               "seconds": round(time.time() - t0, 1)}
        if val is not None:
            m = clf.evaluate(val, precision=precision)
            row.update(val_accuracy=round(m["accuracy"], 5), val_balanced_accuracy=round(m["balanced_accuracy"], 5))
        history.append(row)
        if log is not None:
            print(json.dumps(row), file=log, flush=True)
    if bar is not None:
        bar.close()
    net.eval()
    meta: dict[str, Any] = {
        "name": f"cytomodel-baseline-{h}", "data_hash": data.data_hash, "code_version": code_version(),
        "class_counts": dict(zip(data.class_names, counts.tolist())),
        "architecture": {"type": "ResNetSmall", "widths": list(widths), "blocks": list(blocks), "dropout": dropout,
                         "stem_stride": stem_stride, "norm": norm,
                         "parameters": int(sum(p.numel() for p in net.parameters()))},
        "training": {"epochs": epochs, "steps": step, "batch_size": batch_size, "lr": lr,
                     "weight_decay": weight_decay, "label_smoothing": label_smoothing, "color_jitter": color_jitter,
                     "augmentation": "random flip, random 90-degree rotation, brightness/colour gain jitter"
                                     + (f"; lab variation for {lab_augment:.0%} of images at "
                                        f"{source.images.shape[1] if source is not None else h} px"
                                        if lab_augment > 0 else ""),
                     "lab_augment": lab_augment,
                     "balanced_loss": balanced, "precision": precision, "seed": seed,
                     "threads": torch.get_num_threads(), "wall_seconds": round(time.time() - t0, 1)},
        "history": history,
    }
    if val is not None:
        m = clf.evaluate(val)  # final figures in fp32, like default inference
        meta["val_metrics"] = {"n": m["n"], "accuracy": m["accuracy"], "balanced_accuracy": m["balanced_accuracy"],
                               "recall": m["recall"], "data_hash": val.data_hash}
    clf.metadata = meta
    return clf
