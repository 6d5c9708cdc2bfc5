"""Anomaly scores that ask how *unlike its own class* a cell is, not only how undecided the classes are (−ζ).

Why: −ζ is a margin between classes. A cell of a class the model never saw (a blast among normal leucocytes) is
often explained by one class a little better than by the others — ζ is then large and −ζ calls it normal. These
scores compare the cell with validation cells of the class it is assigned to:

* ``best-error``: the mean over the cell's draws of log E_pred(x, t, ε) — the log denoising error under the predicted
  class (a per-draw bound on −log p(x | class), as in DDPM-OOD, Graham et al. 2023). No extra UNet calls.
* ``class-gain``: the mean over draws of log(E_pred / E_null) — how much the class explains beyond no class (the
  unconditional model, trained by label dropout). A normal cell is explained better with its class than without;
  a cell of an unseen class is not. One null-class call per draw (+24 at the defaults).
* ``texture``: the same question asked of the cell's fine detail by a cascade's 128-px stage (:mod:`.texture`;
  ``texture_raw`` in a table), and ``class-gain+texture``: the mean of the two standardised scores (the best score
  without the baseline CNN on validation cells with ig held out, docs/classifier.md).

The raw statistic (``novelty_raw`` in a results table) is standardised per predicted class by a *reference* fitted on
labelled validation cells (median and MAD among cells predicted as that class; ``cytomodel calibrate`` writes it into
the model's ``cytomodel.json`` beside the temperature), so that ``anomaly_score`` means "robust standard deviations
above the typical cell of its class" for every class alike. Every draw plan spreads an image's timesteps over the
same range (``timestep_selection="vdc"``), so image-level means are comparable without per-timestep bins.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from cytocore.provenance import provenance_record, write_json

from ..models.base import METADATA_FILE
from .config import SCORE_PARTS, ClassifierConfig, scale_key_of

MIN_CLASS_CELLS = 10   # fewer validation cells predicted as a class: that class uses the pooled reference


def novelty_statistic(draw_errors: np.ndarray, draws_run: np.ndarray, predicted: np.ndarray, kind: str,
                      null_errors: np.ndarray | None = None) -> np.ndarray:
    """Per image, the mean over its draws of log E_pred (``best-error``) or log(E_pred / E_null) (``class-gain``).

    ``draw_errors`` (N, K, C) per-draw errors (NaN where a class was not evaluated), ``predicted`` (N,) candidate
    indices; the predicted class is evaluated on every draw of its image by every strategy."""
    n = len(draw_errors)
    out = np.full(n, np.nan)
    for i in range(n):
        k = int(draws_run[i])
        e = np.log(draw_errors[i, :k, int(predicted[i])])
        if kind == "class-gain":
            if null_errors is None:
                raise ValueError("the class-gain score needs the null class's errors (anomaly='class-gain')")
            e = e - np.log(null_errors[i, :k])
        elif kind != "best-error":
            raise ValueError(f"no novelty statistic {kind!r}; use 'best-error' or 'class-gain'")
        out[i] = float(np.nanmean(e))
    return out


def _location_scale(v: np.ndarray) -> dict[str, float]:
    med = float(np.median(v))
    mad = float(1.4826 * np.median(np.abs(v - med)))
    return {"loc": med, "scale": mad if mad > 0 else float(np.std(v)) or 1.0, "n": int(len(v))}


def fit_reference(raw: np.ndarray, predicted: Sequence[str], class_names: Sequence[str]) -> dict[str, Any]:
    """Per predicted class, the median and MAD (scaled to a normal SD) of the raw statistic among labelled
    validation cells of the trained classes; a class with fewer than ``MIN_CLASS_CELLS`` cells uses the pooled
    values."""
    raw = np.asarray(raw, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=object)
    ok = np.isfinite(raw)
    if ok.sum() < MIN_CLASS_CELLS:
        raise ValueError(f"a novelty reference needs at least {MIN_CLASS_CELLS} classified validation cells "
                         f"(got {int(ok.sum())})")
    pooled = _location_scale(raw[ok])
    per_class = {}
    for c in class_names:
        v = raw[ok & (predicted == c)]
        per_class[c] = _location_scale(v) if len(v) >= MIN_CLASS_CELLS else {**pooled, "pooled": True}
    return {"pooled": pooled, "per_class": per_class}


def standardise(raw: np.ndarray, predicted: Sequence[str], reference: dict[str, Any]) -> np.ndarray:
    """(raw − loc) / scale of each cell's predicted class."""
    pooled = reference["pooled"]
    loc = np.array([reference["per_class"].get(c, pooled)["loc"] for c in predicted], dtype=np.float64)
    scale = np.array([reference["per_class"].get(c, pooled)["scale"] for c in predicted], dtype=np.float64)
    return (np.asarray(raw, dtype=np.float64) - loc) / scale


def anomaly_of(parts: dict[str, np.ndarray], predicted: Sequence[str], reference: dict[str, Any] | None
               ) -> np.ndarray:
    """The anomaly score from its raw statistics (``parts``: column name -> values): each standardised by its own
    reference and averaged. A reference of one statistic (``pooled``/``per_class``) standardises ``novelty_raw``;
    without a reference the raw values are averaged (not comparable between classes; warned where it is read)."""
    names = list(parts)
    if reference is None:
        return np.mean([np.asarray(parts[c], dtype=np.float64) for c in names], axis=0)
    refs = reference.get("parts") or {"novelty_raw": reference}
    missing = [c for c in names if c not in refs]
    if missing:
        raise ValueError(f"the anomaly reference has no part {missing}; re-fit it with `cytomodel calibrate`")
    return np.mean([standardise(parts[c], predicted, refs[c]) for c in names], axis=0)


def fit_score_reference(table: pd.DataFrame, class_names: Sequence[str], anomaly: str) -> dict[str, Any]:
    """The reference of ``anomaly`` on a labelled table: one per raw statistic it averages (``{"parts": …}``), or the
    single-statistic form for ``best-error`` / ``class-gain`` (as models calibrated before texture hold it)."""
    cols = SCORE_PARTS.get(anomaly)
    if not cols:
        raise ValueError(f"anomaly={anomaly!r} has no reference; use one of {', '.join(SCORE_PARTS)}")
    missing = [c for c in cols if c not in table]
    if missing:
        raise ValueError(f"the table has no {', '.join(missing)} column: classify with --anomaly {anomaly}")
    fits = {c: fit_reference(table[c].to_numpy(), table["pred_class"].to_numpy(), class_names) for c in cols}
    return fits["novelty_raw"] if cols == ("novelty_raw",) else {"parts": fits}


def _key(config: dict[str, Any]) -> dict[str, Any]:
    return {**scale_key_of(config), "anomaly": config.get("anomaly", "zeta")}


def model_reference(meta: dict[str, Any], cfg: ClassifierConfig, warn: bool = True,
                    texture_stage: str | None = None) -> dict[str, Any] | None:
    """The model's novelty reference fitted with the same error settings and anomaly score, or None (warned).
    ``texture_stage``: the weights hash of the 128-px stage a texture score reads; a fit recorded for another stage
    does not fit it (a base stage may sit under more than one cascade)."""
    want = _key(cfg.to_dict())
    for fit in meta.get("novelty_fits") or []:
        fitted_on = (fit.get("texture_stage") or {}).get("superres_weights_sha256")
        if cfg.needs_texture and texture_stage and fitted_on and fitted_on != texture_stage:
            continue
        if _key(fit.get("config", {})) == want:
            return fit["reference"]
    if warn:
        warnings.warn(f"this model has no validation reference for anomaly={cfg.anomaly!r} with these classifier "
                      "settings, so anomaly_score is the raw statistic (not comparable between classes). Fit one "
                      "with `cytomodel calibrate --model DIR --data ... --split val --anomaly "
                      f"{cfg.anomaly}` and the same classifier options"
                      + (" (and this cascade)" if cfg.needs_texture else "") + ".", stacklevel=3)
    return None


def record_reference(model_dir: str | Path, table: pd.DataFrame, class_names: Sequence[str], cfg: ClassifierConfig,
                     source: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fit the reference on a labelled classification table (the score's raw columns, ``pred_class``, ``label``) and
    write it into the model's cytomodel.json (one fit per error settings and anomaly score; everything else kept)."""
    known = table[table["label"].isin(class_names)]
    ref = fit_score_reference(known, class_names, cfg.anomaly)
    path = Path(model_dir) / METADATA_FILE
    meta = json.loads(path.read_text())
    fit = {"reference": ref, "n_images": int(len(known)), "config": cfg.to_dict(), **(source or {}),
           **provenance_record()}
    key, stage = _key(fit["config"]), (fit.get("texture_stage") or {}).get("superres_weights_sha256")
    meta["novelty_fits"] = [f for f in meta.get("novelty_fits") or []
                            if _key(f.get("config", {})) != key
                            or (f.get("texture_stage") or {}).get("superres_weights_sha256") != stage] + [fit]
    write_json(path, meta)
    return fit
