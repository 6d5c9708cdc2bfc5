"""A discriminative baseline: a small ResNet-style CNN that names the cell type of a preprocessed image.

It is the yardstick the diffusion model is measured against (class fidelity of generated cells, memorisation in its
feature space) and the comparison the diffusion classifier reports — evidence, so it lives in ``evaluate/`` (its
training: :mod:`.baseline_training`). Stable API::

    clf = train_baseline(train_arrays, val_arrays, epochs=20, seed=0)      # ImageArrays from load_dataset
    clf.predict_proba(images_uint8_nhwc)   # (N, C) float32, rows sum to 1
    clf.logits(images) / clf.features(images) / clf.predict(images)
    clf.class_names, clf.resolution
    clf.save_pretrained(dir, dtype=torch.float16); BaselineClassifier.from_pretrained(dir)

On disk: ``model.safetensors`` + ``baseline.json`` (classes, resolution, normalisation, architecture, data hash,
code version, training settings, validation metrics). ``device`` (train, load) follows
:func:`cytomodel.runtime.resolve_device`. Command line: ``cytomodel baseline train|predict``
(:mod:`cytomodel.cli.baseline`).
"""
from __future__ import annotations

import contextlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from cytocore import classification as ct
from cytocore.provenance import provenance_record, write_json

from .. import bundled_baseline_path
from ..classify.config import FIT_DENSITY
from ..data import ImageArrays, Intake
from .feature_density import DENSITY_FILE, FeatureDensity
from .metrics import classification_metrics

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
    density: FeatureDensity | None = None   # of its features on its training cells (:meth:`fit_density`)

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @property
    def student(self) -> dict[str, Any] | None:
        """A distilled student's record (its teacher, and the scale of its anomaly head), or None for a baseline:
        a student's network has one output more than it has classes, the teacher's anomaly score."""
        return self.metadata.get("student")

    def to(self, device) -> "BaselineClassifier":
        self.net.to(device)
        return self

    def intake(self, um_per_px: float | None = None, stain: str = "auto") -> Intake:
        """How input images reach this classifier: framed as its training cells were (:mod:`cytomodel.data.intake`); by
        default (``stain="auto"``) a set lit unlike them is stain-normalised first."""
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
            if what == "logits":
                y = y[:, :len(self.class_names)]
            elif what == "student":      # the class logits and the anomaly head, one pass
                y = y[:, :len(self.class_names) + 1]
            elif what == "anomaly":
                y = y[:, len(self.class_names)]
            out.append(y.float().cpu())
        if not out:
            if what == "anomaly":
                return np.zeros(0, np.float32)
            dim = self.net.feature_dim if what == "features" else len(self.class_names) + (what == "student")
            return np.zeros((0, dim), np.float32)
        return torch.cat(out).numpy()

    def logits(self, images, batch_size: int = 256, precision: str = "fp32") -> np.ndarray:
        """(N, C) float32 logits."""
        return self._run(images, "logits", batch_size, precision)

    @property
    def temperature(self) -> float:
        """The fitted temperature (a distilled student's, :func:`cytomodel.evaluate.distillation.fit_temperature_on`);
        1 for a classifier that has none."""
        return float(self.metadata.get("temperature") or 1.0)

    def predict_proba(self, images, batch_size: int = 256, precision: str = "fp32") -> np.ndarray:
        """(N, C) float32 class probabilities (softmax of the logits over the temperature), columns in
        ``class_names`` order."""
        return self._probabilities(self.logits(images, batch_size, precision))

    def _probabilities(self, logits: np.ndarray) -> np.ndarray:
        return torch.softmax(torch.from_numpy(np.ascontiguousarray(logits)) / self.temperature, dim=1).numpy()

    def predict(self, images, batch_size: int = 256, precision: str = "fp32") -> np.ndarray:
        """(N,) int64 index of the most probable class."""
        return self.logits(images, batch_size, precision).argmax(1)

    @property
    def anomaly_rule(self) -> str:
        """A student's anomaly score: "entropy" (the predictive entropy of its calibrated probabilities; students
        distilled since the held-out-class proxy chose it, see :mod:`cytomodel.evaluate.distillation`) or "head"
        (its estimate of the teacher's score; students recorded without a rule)."""
        if not self.student:
            raise ValueError("only a distilled student has an anomaly score; this is a baseline classifier")
        return self.student.get("anomaly_score", "head")

    def anomaly(self, images, batch_size: int = 256, precision: str = "fp32") -> np.ndarray:
        """(N,) a student's anomaly score, by its :attr:`anomaly_rule`."""
        return self.student_outputs(images, batch_size, precision)[1]

    def anomaly_head(self, images, batch_size: int = 256, precision: str = "fp32") -> np.ndarray:
        """(N,) a student's estimate of its teacher's anomaly score (on the teacher's scale)."""
        if not self.student:
            raise ValueError("only a distilled student has an anomaly head; this is a baseline classifier")
        return self._head_scale(self._run(images, "anomaly", batch_size, precision))

    def _head_scale(self, raw: np.ndarray) -> np.ndarray:
        a = self.student["anomaly"]
        return raw * a["scale"] + a["loc"]

    def student_outputs(self, images, batch_size: int = 256,
                        precision: str = "fp32") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A student's (N, C) probabilities, (N,) anomaly score (by its rule) and (N,) anomaly head, from one
        forward pass (what a classification table needs)."""
        out = self._run(images, "student", batch_size, precision)
        proba = self._probabilities(out[:, :len(self.class_names)])
        head = self._head_scale(out[:, len(self.class_names)])
        return proba, ct.predictive_entropy(proba) if self.anomaly_rule == "entropy" else head, head

    def features(self, images, batch_size: int = 256, precision: str = "fp32") -> np.ndarray:
        """(N, D) float32 penultimate-layer (globally pooled) features, e.g. for nearest-neighbour checks."""
        return self._run(images, "features", batch_size, precision)

    def fit_density(self, data: ImageArrays, record: dict[str, Any] | None = None,
                    required: bool = True) -> FeatureDensity | None:
        """Fit :attr:`density` on labelled cells (its training cells), loaded like its training data; saved with
        :meth:`save_density` or :meth:`save_pretrained`. ``required=False`` (after training): where the cells are
        too few for it, warn and leave the baseline without one."""
        labels = map_labels(data, self.class_names)
        try:
            self.density = FeatureDensity.fit(self.features(data.images), labels, self.class_names,
                                              {**(record or {}), "data_hash": data.data_hash, **provenance_record()})
        except ValueError as e:
            if required:
                raise
            warnings.warn(f"no feature density fitted ({e}); the baseline's feature distance is unavailable",
                          stacklevel=2)
        return self.density

    def feature_distances(self, images, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray | None]:
        """Both feature statistics from one forward pass (higher = less like what it knows): the relative Mahalanobis
        distance from the trained classes (:mod:`.feature_density`) and the cosine distance to the k-th nearest
        training cell (:meth:`FeatureDensity.neighbour_distance`; None where the density keeps no training
        features)."""
        if self.density is None:
            raise ValueError(f"this baseline has no feature density: {FIT_DENSITY}")
        density = self.density
        f = self.features(images, batch_size)
        return density.distance(f), density.neighbour_distance(f) if density.neighbours is not None else None

    def save_density(self, path: str | Path) -> Path:
        """Write :attr:`density` into the saved baseline folder ``path`` (its record into ``baseline.json``)."""
        path = Path(path)
        if self.density is None:
            raise ValueError("no feature density to save: fit_density first")
        self.density.save(path)
        meta = json.loads((path / META_FILE).read_text())
        meta["feature_density"] = self.density.record
        write_json(path / META_FILE, meta)
        self.metadata = meta
        return path / DENSITY_FILE

    def evaluate(self, data: ImageArrays, precision: str = "fp32") -> dict[str, Any]:
        """Accuracy, balanced accuracy, per-class recall and confusion matrix on labelled ``data``."""
        labels = map_labels(data, self.class_names)
        return classification_metrics(labels, self.predict(data.images, precision=precision), self.class_names)

    # --------------------------------------------------------------- persistence
    def save_pretrained(self, path: str | Path, dtype: torch.dtype = torch.float32,
                        extra: dict[str, Any] | None = None) -> Path:
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
        if self.density is not None:
            self.save_density(path)
        return path

    @property
    def architecture(self) -> dict[str, Any]:
        return self.metadata.get("architecture") or {}

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device | None = None) -> "BaselineClassifier":
        """Load a saved baseline; ``device`` None leaves it on the CPU, else it is moved there."""
        path = Path(path)
        if not (path / META_FILE).is_file():
            raise FileNotFoundError(f"{path} is not a baseline classifier folder (no {META_FILE}); "
                                    "train one with `cytomodel baseline train`")
        meta = json.loads((path / META_FILE).read_text())
        if meta.get("format_version", 0) > FORMAT_VERSION:
            raise ValueError(f"{path} was written by a newer cytomodel (format {meta['format_version']}); upgrade")
        arch = meta["architecture"]
        outputs = len(meta["class_names"]) + (1 if meta.get("student") else 0)
        net = ResNetSmall(outputs, tuple(arch["widths"]), tuple(arch["blocks"]),
                          float(arch.get("dropout", 0.0)), int(arch.get("stem_stride", 1)), arch.get("norm", "batch"))
        state = {k: (v.float() if v.is_floating_point() else v) for k, v in load_file(str(path / WEIGHTS_FILE)).items()}
        net.load_state_dict(state)
        net.eval()
        if device is not None:
            net.to(device)
        norm = meta["normalisation"]
        density = (FeatureDensity.load(path, meta["class_names"], meta.get("feature_density") or {})
                   if (path / DENSITY_FILE).is_file() else None)
        return cls(net, list(meta["class_names"]), int(meta["resolution"]), list(norm["pixel_mean"]),
                   list(norm["pixel_std"]), meta, density)


def load_baseline(path: str | Path | None = None, device: str | torch.device | None = None) -> BaselineClassifier:
    """Load a saved baseline (default: the bundled ``data/models/baseline-32``), on ``device`` (None: the CPU)."""
    return BaselineClassifier.from_pretrained(path or bundled_baseline_path(), device=device)


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
