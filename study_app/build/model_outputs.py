"""The diffusion classifier's judgement of every stimulus (the ``model_*`` manifest columns), from its
classification table (:mod:`cytocore.classification`).

It runs on the stage the classifier is defined on: ``model.classifier_model`` with the stimuli brought to that
stage's size by ``model.to_classifier_input`` (a cascade's 32-px base; a single base stage is itself)."""
from __future__ import annotations

import logging
import time
import warnings
from typing import Sequence

import numpy as np
import pandas as pd

from cytocore import classification as ct
from cytocore.schema import MANIFEST_MODEL_COLUMNS, MODEL_PROB_PREFIX

log = logging.getLogger(__name__)


def _classifier():
    try:
        from cytomodel.classify.batch import classify_arrays
        return classify_arrays
    except ModuleNotFoundError as exc:
        if exc.name == "cytomodel.classify.batch":
            return None
        raise


def empty_outputs(n: int, classes: Sequence[str]) -> pd.DataFrame:
    cols = list(MANIFEST_MODEL_COLUMNS) + [f"{MODEL_PROB_PREFIX}{c}" for c in classes]
    out = pd.DataFrame({c: [np.nan] * n for c in cols})
    for c in ("model_pred_class", "model_runner_up"):
        out[c] = out[c].astype(object)
    return out


def model_outputs(model, arrays: np.ndarray, classes: Sequence[str], enabled: bool = True, seed: int = 0,
                  progress: bool = False, overrides: dict | None = None) -> tuple[pd.DataFrame, str]:
    """The model_* columns for ``arrays`` (N, H, W, 3) at ``model.resolution``, and a status line."""
    if not enabled:
        return empty_outputs(len(arrays), classes), ("classifier disabled in the study config "
                                                     "(stimuli.classify = false): model columns are NaN")
    fn = _classifier()
    if fn is None:
        msg = "cytomodel.classify is not available: model columns are NaN"
        log.warning(msg)
        return empty_outputs(len(arrays), classes), msg
    t0 = time.perf_counter()
    config = None
    if overrides:
        from cytomodel.classify.config import ClassifierConfig
        config = ClassifierConfig.from_dict(dict(overrides))
    stage = model.classifier_model
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = fn(stage, model.to_classifier_input(arrays), config=config, seed=seed,
                 progress=progress).reset_index(drop=True)
    notes = "; ".join(sorted({str(w.message).split(";")[0] for w in caught}))
    out = _columns(res, stage.class_names, classes)
    status = (f"diffusion classifier ran on {len(arrays)} stimuli at {stage.resolution} px in "
              f"{time.perf_counter() - t0:.1f} s")
    return out, status + (f" ({notes})" if notes else "")


def _columns(res: pd.DataFrame, model_classes: Sequence[str], classes: Sequence[str]) -> pd.DataFrame:
    out = pd.DataFrame({
        "model_pred_class": res[ct.PRED_CLASS].astype(str), "model_runner_up": res.get(ct.RUNNER_UP),
        "model_confidence": res[ct.CONFIDENCE].astype(float), "model_entropy": res.get("entropy"),
        "model_margin": res["margin"].astype(float), "model_anomaly": res["anomaly_score"].astype(float),
        "model_unet_calls": res.get("unet_calls"),
    })
    pc = [f"{MODEL_PROB_PREFIX}{c}" for c in classes]
    for c in classes:
        out[f"{MODEL_PROB_PREFIX}{c}"] = res[ct.prob_column(c)].astype(float)
    if len(classes) < len(model_classes):  # the study uses a subset of the model's classes: renormalise over it
        tot = out[pc].sum(axis=1)
        out[pc] = out[pc].div(tot.where(tot > 0, 1.0), axis=0)
    return out[list(MANIFEST_MODEL_COLUMNS) + pc]
