"""Training the baseline CNN (:func:`train_baseline`), also on the held-out-class and low-data variants of
``cytomodel train-variant`` (:func:`train_variant_baseline`).

AdamW with one-cycle (warm-up + cosine) learning rate, label smoothing, class-balanced loss weights, bf16 autocast by
default; the diffusion model's augmentation (dihedral flips/rotations, mild jitter) and, for a share of the images,
another lab's look (:mod:`cytomodel.train.lab_augmentation`, leaky: a discriminative model should ignore the lab).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from cytocore.provenance import code_version

from ..data import ImageArrays
from ..models.base import pixel_statistics
from ..runtime import configure_runtime, resolve_device
from ..train import lab_augmentation as lab
from ..train.augmentation import augment
from ..train.variants import holdout_class, low_data
from .baseline import BaselineClassifier, ResNetSmall, _autocast


def train_baseline(data: ImageArrays, val: ImageArrays | None = None, epochs: int = 20, batch_size: int = 128,
                   seed: int = 0, progress: bool = True, lr: float = 3e-3, weight_decay: float = 5e-4,
                   widths: Sequence[int] = (32, 64, 128), blocks: Sequence[int] = (1, 1, 1), dropout: float = 0.1,
                   label_smoothing: float = 0.05, color_jitter: float = 0.05, balanced: bool = True,
                   precision: str = "bf16", threads: int | None = None, max_steps: int | None = None,
                   log: Any = None, device: str | torch.device | None = None, stem_stride: int = 1,
                   norm: str = "batch", lab_augment: float = 0.0, source: ImageArrays | None = None
                   ) -> BaselineClassifier:
    """Train a ``ResNetSmall`` on ``data`` (preprocessed uint8 images).

    Class-balanced loss weights make the classifier's implicit prior uniform over classes (what class fidelity of
    class-balanced samples needs). On ``device`` (:func:`cytomodel.runtime.resolve_device`: None = CUDA if present,
    else the CPU). Seeded: same data, seed, device and thread count, same weights. ``max_steps`` caps the number of
    optimiser steps (for tests). Validation metrics land in ``metadata``. ``norm``: "batch" or "group";
    ``lab_augment``: the share of images given another lab's stain, scale, focus, noise and rotation, at the
    resolution of ``source`` (the same images, larger) when given.
    """
    configure_runtime(threads)
    dev = resolve_device(device)
    counts = _class_counts(data, val)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    mean, std = pixel_statistics(data.images)
    net = ResNetSmall(len(counts), widths, blocks, dropout, stem_stride, norm).to(dev)
    clf = BaselineClassifier(net, list(data.class_names), int(data.images.shape[1]), mean, std)
    run = _Run(net, _Batches(data, source, mean, std, color_jitter, lab_augment), dev, precision, label_smoothing,
               torch.tensor(counts.sum() / (len(counts) * counts), dtype=torch.float32, device=dev)
               if balanced else None, batch_size)

    def after_epoch(row: dict[str, Any]) -> None:
        if val is not None:
            m = clf.evaluate(val, precision=precision)
            row.update(val_accuracy=round(m["accuracy"], 5), val_balanced_accuracy=round(m["balanced_accuracy"], 5))
        if log is not None:
            print(json.dumps(row), file=log, flush=True)

    history, seconds = run.train(epochs, max_steps, lr, weight_decay, gen, "train baseline", progress, after_epoch)
    net.eval()
    clf.metadata = _record(data, counts, net, run.step, history, seconds, dict(
        epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, label_smoothing=label_smoothing,
        color_jitter=color_jitter, lab_augment=lab_augment, balanced=balanced, precision=precision, seed=seed,
        widths=widths, blocks=blocks, dropout=dropout, stem_stride=stem_stride, norm=norm,
        source_px=source.images.shape[1] if source is not None else None))
    if val is not None:
        m = clf.evaluate(val)  # final figures in fp32, like default inference
        clf.metadata["val_metrics"] = {"n": m["n"], "accuracy": m["accuracy"],
                                       "balanced_accuracy": m["balanced_accuracy"], "recall": m["recall"],
                                       "data_hash": val.data_hash}
    return clf


def _class_counts(data: ImageArrays, val: ImageArrays | None) -> np.ndarray:
    """Training images per class, after checking that training and validation images can be used."""
    if len(data.images) == 0:
        raise ValueError("no training images")
    _, h, w, _ = data.images.shape
    if h != w:
        raise ValueError(f"training images must be square, got {h}x{w}")
    counts = np.bincount(data.labels, minlength=len(data.class_names))
    if (counts == 0).any():
        raise ValueError(f"class(es) {[c for c, m in zip(data.class_names, counts) if m == 0]} have no images")
    if val is not None and val.images.shape[1:3] != (h, w):
        raise ValueError(f"validation images are {val.images.shape[1]}px but training images are {h}px")
    return counts


class _Batches:
    """The training images (and their larger source versions) as tensors, and the augmented, normalised batches
    drawn from them."""

    def __init__(self, data: ImageArrays, source: ImageArrays | None, mean: list[float], std: list[float],
                 color_jitter: float, lab_augment: float) -> None:
        self.images = torch.from_numpy(np.ascontiguousarray(data.images.transpose(0, 3, 1, 2)))
        self.source = self.images
        if source is not None:
            if len(source.images) != len(data.images) or not np.array_equal(source.labels, data.labels):
                raise ValueError("source images must be the training images at a higher resolution, in the same "
                                 "order")
            self.source = torch.from_numpy(np.ascontiguousarray(source.images.transpose(0, 3, 1, 2)))
        self.labels = torch.from_numpy(data.labels.astype(np.int64))
        self.mean, self.std = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
        self.augmentation = SimpleNamespace(flips=True, rotations=True, color_jitter=color_jitter)
        self.lab_augment = lab_augment

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, idx: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Images ``idx``, a share ``lab_augment`` given another lab's look, then flipped/rotated and jittered, in
        the network's normalisation."""
        if self.lab_augment <= 0:
            x = augment(self.images[idx], self.augmentation, gen)
        else:
            params = lab.sample_parameters(len(idx), gen, p_augment=self.lab_augment)
            x = lab.vary_rows(self.images[idx].float() / 255.0, self.source, idx, params, gen)
            x = augment(x, self.augmentation, gen)
        return (x - self.mean) / self.std


@dataclass
class _Run:
    """The network, its batches, optimiser and schedule, and the steps taken."""
    net: ResNetSmall
    batches: _Batches
    device: torch.device
    precision: str
    label_smoothing: float
    weight: torch.Tensor | None
    batch_size: int
    step: int = 0

    @property
    def steps_per_epoch(self) -> int:
        return max(1, len(self.batches) // self.batch_size)

    def optimise(self, lr: float, weight_decay: float, total: int) -> None:
        """AdamW (no weight decay on norms and biases) and a one-cycle schedule over ``total`` steps."""
        decay, no_decay = [], []
        for _, p in self.net.named_parameters():
            (no_decay if p.ndim <= 1 else decay).append(p)
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                                      {"params": no_decay, "weight_decay": 0.0}], lr=lr)
        warm = max(1, int(0.05 * total))
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: (s + 1) / warm if s < warm else
            0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, total - warm))))

    def loss(self, logits: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Class-weighted, label-smoothed cross-entropy against the images' labels."""
        return F.cross_entropy(logits, self.batches.labels[idx].to(self.device), weight=self.weight,
                               label_smoothing=self.label_smoothing)

    def train(self, epochs: int, max_steps: int | None, lr: float, weight_decay: float, gen: torch.Generator,
              desc: str, progress: bool, after_epoch=None) -> tuple[list[dict[str, Any]], float]:
        """Epochs (at most ``max_steps`` optimiser steps) under the one-cycle schedule, with a progress bar; the
        history (one row per epoch, which ``after_epoch`` may extend) and the wall seconds."""
        total = epochs * self.steps_per_epoch if max_steps is None else min(max_steps, epochs * self.steps_per_epoch)
        self.optimise(lr, weight_decay, total)
        history, t0 = [], time.time()
        bar = tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True) if progress else None
        for epoch in range(epochs):
            if self.step >= total:
                break
            loss = self.epoch(epoch, total, gen, bar)
            row = {"epoch": epoch + 1, "step": self.step, "train_loss": round(loss, 5),
                   "seconds": round(time.time() - t0, 1)}
            if after_epoch is not None:
                after_epoch(row)
            history.append(row)
        if bar is not None:
            bar.close()
        return history, round(time.time() - t0, 1)

    def epoch(self, epoch: int, total: int, gen: torch.Generator, bar) -> float:
        """One pass over the images in a random order (stopping at ``total`` steps); its mean training loss."""
        self.net.train()
        order = torch.randperm(len(self.batches), generator=gen)
        loss_sum, seen = 0.0, 0
        for b in range(self.steps_per_epoch):
            if self.step >= total:
                break
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            xb = self.batches.batch(idx, gen).to(self.device)
            with _autocast(self.precision, self.device):
                out = self.net(xb)
            loss = self.loss(out.float(), idx)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            self.sched.step()
            self.step += 1
            loss_sum += loss.item() * len(idx)
            seen += len(idx)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss_sum / seen:.3f}")
        return loss_sum / max(seen, 1)


def _record(data: ImageArrays, counts: np.ndarray, net: ResNetSmall, steps: int, history: list[dict],
            wall_seconds: float, s: dict[str, Any]) -> dict[str, Any]:
    """``baseline.json``'s account of a training run (``s``: its settings)."""
    h = data.images.shape[1]
    return {
        "name": f"cytomodel-baseline-{h}", "data_hash": data.data_hash, "code_version": code_version(),
        "class_counts": dict(zip(data.class_names, counts.tolist())),
        "architecture": {"type": "ResNetSmall", "widths": list(s["widths"]), "blocks": list(s["blocks"]),
                         "dropout": s["dropout"], "stem_stride": s["stem_stride"], "norm": s["norm"],
                         "parameters": int(sum(p.numel() for p in net.parameters()))},
        "training": {"epochs": s["epochs"], "steps": steps, "batch_size": s["batch_size"], "lr": s["lr"],
                     "weight_decay": s["weight_decay"], "label_smoothing": s["label_smoothing"],
                     "color_jitter": s["color_jitter"],
                     "augmentation": "random flip, random 90-degree rotation, brightness/colour gain jitter"
                                     + (f"; lab variation for {s['lab_augment']:.0%} of images at "
                                        f"{s['source_px'] or h} px" if s["lab_augment"] > 0 else ""),
                     "lab_augment": s["lab_augment"], "balanced_loss": s["balanced"], "precision": s["precision"],
                     "seed": s["seed"], "threads": torch.get_num_threads(), "wall_seconds": wall_seconds},
        "history": history,
    }


def train_variant_baseline(data: ImageArrays, val: ImageArrays | None, out: str | Path, holdout: str | None = None,
                           labelled_per_class: int | None = None, seed: int = 0, epochs: int = 20, **kw):
    """The baseline on a variant of ``data`` (:mod:`cytomodel.train.variants`; labelled images only: a
    discriminative model cannot use the rest), saved to ``out``."""
    variant = data
    if holdout:
        variant = holdout_class(variant, holdout)
        if val is not None:
            val = holdout_class(val, holdout)
    if labelled_per_class:
        variant = low_data(variant, labelled_per_class, seed=seed, unlabelled=False)
    clf = train_baseline(variant, val, epochs=epochs, seed=seed, **kw)
    clf.fit_density(variant, {"data": "the training variant", "holdout": holdout}, required=False)
    clf.save_pretrained(out)
    return clf
