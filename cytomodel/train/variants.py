"""Training variants for the evidence (``cytomodel train-variant``): each filters the ImageArrays before
:func:`~.loop.train` (unchanged) or the baseline's training
(:func:`cytomodel.evaluate.baseline_training.train_variant_baseline`):

* ``holdout_class``: drop a class and its label.
* ``low_data``: keep ``n`` labelled images per class; with ``unlabelled=True`` (default) every other training image
  stays in with the *null* label (the classifier-free-guidance class), so the model still learns what blood cells
  look like from all images while class information comes only from the n per class. Labelled images are
  repeated so that they make up ``labelled_share`` (default ½) of the samples the trainer draws.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cytocore.provenance import hash_records, write_json

from ..data import ImageArrays
from .loop import train


def _variant(data: ImageArrays, images, labels, class_names, records, spec: dict) -> ImageArrays:
    return ImageArrays(np.ascontiguousarray(images), np.asarray(labels, dtype=np.int64), list(class_names),
                       list(records), hash_records([[data.data_hash, json.dumps(spec, sort_keys=True)]]),
                       list(data.skipped))


def holdout_class(data: ImageArrays, cls: str) -> ImageArrays:
    """``data`` without class ``cls`` (its images dropped, the remaining labels re-indexed)."""
    if cls not in data.class_names:
        raise ValueError(f"holdout class {cls!r} is not a class of the data ({', '.join(data.class_names)})")
    k = data.class_names.index(cls)
    keep = data.labels != k
    names = [c for c in data.class_names if c != cls]
    lut = np.array([names.index(c) if c != cls else -1 for c in data.class_names])
    return _variant(data, data.images[keep], lut[data.labels[keep]], names,
                    [r for r, m in zip(data.records, keep) if m], {"holdout_class": cls})


def low_data(data: ImageArrays, per_class: int, seed: int = 0, unlabelled: bool = True,
             labelled_share: float = 0.5) -> ImageArrays:
    """``per_class`` labelled images per class; the rest null-labelled (or dropped with ``unlabelled=False``).

    The null label is ``len(class_names)``, the index the model uses for classifier-free guidance, so the trainer
    needs no change. Labelled images are repeated to make up about ``labelled_share`` of the training samples.
    """
    rng = np.random.default_rng(seed)
    n_cls = len(data.class_names)
    chosen = []
    for c in range(n_cls):
        idx = np.flatnonzero(data.labels == c)
        if len(idx) < per_class:
            raise ValueError(f"class {data.class_names[c]} has only {len(idx)} images, fewer than {per_class}")
        chosen.append(np.sort(rng.choice(idx, per_class, replace=False)))
    lab = np.concatenate(chosen)
    spec = {"labelled_per_class": per_class, "seed": seed, "unlabelled": unlabelled, "labelled_share": labelled_share,
            "labelled_index": lab.tolist()}
    if not unlabelled:
        return _variant(data, data.images[lab], data.labels[lab], data.class_names,
                        [data.records[i] for i in lab], spec)
    rest = np.setdiff1d(np.arange(len(data.labels)), lab)
    reps = max(1, int(round(labelled_share / (1 - labelled_share) * len(rest) / max(1, len(lab)))))
    idx = np.concatenate([np.tile(lab, reps), rest])
    labels = np.concatenate([np.tile(data.labels[lab], reps), np.full(len(rest), n_cls)])
    records = [data.records[i] for i in idx]
    return _variant(data, data.images[idx], labels, data.class_names, records, spec)


def train_variant(cfg, data: ImageArrays, out: str | Path, holdout: str | None = None,
                  labelled_per_class: int | None = None, unlabelled: bool = True, seed: int = 0, **train_kwargs):
    """Train a diffusion model (:func:`~.loop.train`, unchanged) on a held-out-class or low-data variant of
    ``data``."""
    variant = data
    if holdout:
        variant = holdout_class(variant, holdout)
    if labelled_per_class:
        variant = low_data(variant, labelled_per_class, seed=seed, unlabelled=unlabelled)
    model = train(cfg, variant, out, **train_kwargs)
    meta_path = Path(out) / "model" / "cytomodel.json"
    meta = json.loads(meta_path.read_text())
    meta["variant"] = {"holdout_class": holdout, "labelled_per_class": labelled_per_class,
                       "unlabelled_as_null": bool(unlabelled and labelled_per_class), "seed": seed,
                       "source_data_hash": data.data_hash}
    write_json(meta_path, meta)
    model.metadata = meta
    return model
