"""A single-pass student of the diffusion classifier: the baseline's network with one output more, trained on the
teacher's soft posteriors (at its fitted temperature) and on its anomaly score, over the training split with the
training augmentations.

Why: the diffusion classifier needs ~68 UNet calls per cell; a smear has thousands of cells and a cohort millions.
A student answers in one forward pass and, unlike a baseline trained on labels, inherits the teacher's calibration
(it learns the teacher's probabilities, not one-hot labels) and its anomaly flag (a regression head). The teacher's
tables come from ``cytomodel classify`` (resumable), so the expensive part is done once.

A student is saved as a baseline folder (``baseline.json`` with a ``student`` record: the teacher, its
temperature and anomaly score, and the scale of the anomaly head), so ``BaselineClassifier.from_pretrained``,
``cytomodel baseline predict``, ``cytomodel classify --model STUDENT`` and triage all take it.

A student's anomaly score (its table's ``anomaly_score``, what triage flags by) is the predictive entropy of its
calibrated probabilities by default; its head's estimate of the teacher's score is written beside it
(``anomaly_head``). Why: the head learns the teacher's *expected* score, and the teacher's −ζ is noisy (random
noise draws), so the head ranks well but compresses the tail an anomaly flag lives in. Chosen on the held-out-class
proxy's validation cells (PBC without ``ig``; docs/classifier.md): AUROC 0.882 vs 0.882 for the head, sensitivity
at specificity 0.962 0.426 vs 0.125 (the teacher's −ζ: 0.798, 0.304).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from cytocore import classification as ct

from ..classify.scores import fit_temperature
from ..data import ImageArrays, Intake, framed_arrays
from ..models.base import pixel_statistics
from ..runtime import configure_runtime, resolve_device
from .baseline import BaselineClassifier, ResNetSmall
from .baseline_training import _Batches, _Run, _record


#: a student's anomaly score: its predictive entropy, or its head's estimate of the teacher's score
ANOMALY_RULES = ("entropy", "head")


def teacher_targets(table: pd.DataFrame, class_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(N, C) probabilities (columns in ``class_names`` order) and (N,) anomaly scores of a classification table's
    classified rows, checked: every class has a ``prob_<class>`` column and nothing is missing."""
    table = ct.with_current_names(table)
    missing = [ct.prob_column(c) for c in class_names if ct.prob_column(c) not in table]
    if missing or "anomaly_score" not in table:
        raise ValueError(f"the teacher table lacks {missing + ([] if 'anomaly_score' in table else ['anomaly_score'])}"
                         ": give the output of `cytomodel classify` with the teacher model")
    probs = table[[ct.prob_column(c) for c in class_names]].to_numpy(np.float64)
    anomaly = table["anomaly_score"].to_numpy(np.float64)
    bad = ~np.isfinite(probs).all(axis=1) | ~np.isfinite(anomaly)
    if bad.any():
        raise ValueError(f"{int(bad.sum())} teacher rows have no probabilities or anomaly score (first: "
                         f"{table[ct.IMAGE].iloc[int(np.argmax(bad))]}); keep only classified rows")
    return probs / probs.sum(axis=1, keepdims=True), anomaly


def teacher_training_rows(table: pd.DataFrame, class_names: Sequence[str]) -> tuple[pd.DataFrame, int]:
    """The rows a student may learn from and how many were left out: cells labelled with a class the teacher was
    not trained on (a held-out class in its split) are dropped, or the student would learn the teacher's verdict on
    the very cells its anomaly flag is later measured on. Unlabelled rows are kept."""
    table = ct.with_current_names(table)
    if ct.LABEL not in table:
        return table, 0
    foreign = table[ct.LABEL].notna() & ~table[ct.LABEL].isin(list(class_names))
    return table[~foreign].reset_index(drop=True), int(foreign.sum())


def lab_variation(teacher, paths: Sequence, images: ImageArrays,
                  share: float | None = None) -> tuple[float, ImageArrays | None]:
    """The share of training images a student gives another lab's look (``share``, else its teacher's own, from the
    teacher's training config) and, where the teacher drew those looks from larger cells, the student's training
    cells (``paths``, in the order of ``images``) framed again at that size."""
    config = teacher.metadata.get("config", {})
    share = float(config.get("lab_augment", 0.0)) if share is None else float(share)
    px = int(config.get("source_resolution") or 0)
    if share <= 0 or px <= teacher.resolution:
        return share, None
    wide = Intake.for_record(teacher.metadata, px, teacher.crop_fraction)
    big, keep = framed_arrays(wide.frame(list(paths), progress=True), px)
    if len(keep) != len(paths):
        raise ValueError(f"{len(paths) - len(keep)} cells framed at {teacher.resolution} px could not be framed at "
                         f"{px} px for the lab variation; give a lab-variation share of 0")
    return share, ImageArrays(big, images.labels, list(images.class_names), [], images.data_hash)


class _DistilRun(_Run):
    """The baseline's training run with the student's loss: cross-entropy against the teacher's probabilities plus
    a Huber loss of the anomaly head against the teacher's standardised anomaly score."""

    def targets(self, probs: np.ndarray, anomaly_z: np.ndarray, anomaly_weight: float) -> None:
        self.probs = torch.from_numpy(probs.astype(np.float32))
        self.anomaly_z = torch.from_numpy(anomaly_z.astype(np.float32))
        self.anomaly_weight = anomaly_weight

    def loss(self, out: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        c = self.probs.shape[1]
        p = self.probs[idx].to(self.device)
        soft_ce = -(p * torch.log_softmax(out[:, :c], dim=1)).sum(dim=1).mean()
        huber = torch.nn.functional.smooth_l1_loss(out[:, c], self.anomaly_z[idx].to(self.device))
        return soft_ce + self.anomaly_weight * huber


def distil_student(data: ImageArrays, probs: np.ndarray, anomaly: np.ndarray, teacher: dict[str, Any],
                   epochs: int = 20, batch_size: int = 128, seed: int = 0, lr: float = 3e-3,
                   weight_decay: float = 5e-4, widths: Sequence[int] = (32, 64, 128),
                   blocks: Sequence[int] = (1, 1, 1), dropout: float = 0.1, color_jitter: float = 0.05,
                   anomaly_weight: float = 1.0, anomaly_score: str = "entropy", norm: str = "group",
                   precision: str = "bf16", lab_augment: float = 0.0, source: ImageArrays | None = None,
                   max_steps: int | None = None, progress: bool = True, threads: int | None = None,
                   device: str | torch.device | None = None) -> BaselineClassifier:
    """Train a student on ``data`` (the teacher's framed images, in the order of ``probs``/``anomaly`` rows).

    ``teacher``: what the student records about its teacher (model, hash, temperature, anomaly score, table hash).
    Group norm by default: a cell's own statistics, not the batch's, as for other labs' cells. ``lab_augment``: the
    share of images given another lab's look (``source``: the same cells at a higher resolution, for the scale
    changes), the targets staying the teacher's verdict on the clean cell — so a student of a teacher trained with
    lab variation learns its invariance too (without it, measured: another lab's cells 0.19 against the teacher's
    0.64). ``anomaly_score``: the rule of the student's anomaly score (``ANOMALY_RULES``). Seeded."""
    if anomaly_score not in ANOMALY_RULES:
        raise ValueError(f"anomaly_score must be one of {ANOMALY_RULES}, not {anomaly_score!r}")
    if len(probs) != len(data.images) or len(anomaly) != len(data.images):
        raise ValueError(f"{len(data.images)} images but {len(probs)} teacher rows: they must match one to one")
    configure_runtime(threads)
    dev = resolve_device(device)
    if len(data.images) == 0:
        raise ValueError("no training images for the student")
    # predicted-class counts, for the record only: soft targets teach every class, whichever the teacher picked
    counts = np.bincount(data.labels, minlength=len(data.class_names))
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    mean, std = pixel_statistics(data.images)
    loc = float(np.median(anomaly))
    scale = float(1.4826 * np.median(np.abs(anomaly - loc))) or float(np.std(anomaly)) or 1.0
    net = ResNetSmall(len(data.class_names) + 1, widths, blocks, dropout, 1, norm).to(dev)
    clf = BaselineClassifier(net, list(data.class_names), int(data.images.shape[1]), mean, std)
    run = _DistilRun(net, _Batches(data, source, mean, std, color_jitter, lab_augment), dev, precision, 0.0, None,
                     batch_size)
    run.targets(probs, (anomaly - loc) / scale, anomaly_weight)
    history, seconds = run.train(epochs, max_steps, lr, weight_decay, gen, "distil student", progress)
    net.eval()
    clf.metadata = _record(data, counts, net, run.step, history, seconds, dict(
        epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, label_smoothing=0.0,
        color_jitter=color_jitter, lab_augment=lab_augment, balanced=False, precision=precision, seed=seed,
        widths=widths, blocks=blocks, dropout=dropout, stem_stride=1, norm=norm,
        source_px=int(source.images.shape[1]) if source is not None and lab_augment > 0 else None))
    clf.metadata["name"] = f"cytomodel-student-{data.images.shape[1]}"
    clf.metadata["student"] = {"teacher": teacher, "anomaly": {"loc": loc, "scale": scale},
                               "anomaly_score": anomaly_score,
                               "loss": "soft cross-entropy to the teacher's probabilities + "
                                       f"{anomaly_weight:g} x Huber(anomaly head, standardised teacher anomaly)"}
    return clf


def fit_temperature_on(student: BaselineClassifier, table: pd.DataFrame) -> dict[str, Any]:
    """Fit the student's temperature by the NLL of the labels of a classification table's cells (the teacher's table
    of the val split: its images and labels), as the teacher's own temperature was fitted; stored in the student's
    metadata (``temperature``, ``temperature_fit``), so ``predict_proba`` and every table use it.

    Why: soft targets carry the teacher's calibration only as far as the student can follow them (measured on PBC:
    ECE 0.050 against the teacher's 0.021 at T = 1)."""
    table = ct.with_current_names(table)
    if ct.LABEL not in table:
        raise ValueError("the temperature is fitted on labelled cells: give a classification table with a 'label' "
                         "column (e.g. `cytomodel classify --split val` of the teacher)")
    known = table[table[ct.LABEL].isin(student.class_names)].reset_index(drop=True)
    cells = student.intake().frame(list(known[ct.IMAGE]))
    arrays, keep = framed_arrays(cells, student.resolution)
    if len(keep) < 10:
        raise ValueError(f"{len(keep)} framed labelled cells are too few to fit a temperature on")
    labels = known[ct.LABEL].to_numpy()[keep]
    y = np.array([student.class_names.index(c) for c in labels])
    t, nll_1, nll_t = fit_temperature(-student.logits(arrays).astype(np.float64), y)
    fit = {"temperature": t, "nll_at_T1": nll_1, "nll_at_T": nll_t, "n_images": int(len(y))}
    student.metadata["temperature"] = t
    student.metadata["temperature_fit"] = fit
    return fit


def teacher_record(model_meta: dict[str, Any], model_dir: str, table: pd.DataFrame, table_sha256: str,
                   classifier_config: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a student records about its teacher: the model (folder, name, steps, data), the table it learned from
    (hash, rows, temperature) and the classifier settings that made the table."""
    temperature = float(table["temperature"].iloc[0]) if "temperature" in table and len(table) else None
    here, root = Path(model_dir).resolve(), Path(__file__).resolve().parents[2]
    if here.is_relative_to(root):      # a bundled teacher: the project's path, not this machine's
        model_dir = str(here.relative_to(root))
    return {"model": model_dir, "name": model_meta.get("name"), "train_steps": model_meta.get("train_steps"),
            "data_hash": model_meta.get("data_hash"), "table_sha256": table_sha256, "rows": int(len(table)),
            "temperature": temperature, "classifier_config": classifier_config}
