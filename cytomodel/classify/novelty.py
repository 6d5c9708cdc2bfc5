"""Anomaly scores that ask how *unlike its own class* a cell is, not only how undecided the classes are (−ζ).

Why: −ζ is a margin between classes. A cell of a class the model never saw (a blast among normal leucocytes) is
often explained by one class a little better than by the others — ζ is then large and −ζ calls it normal. These
scores compare the cell with validation cells of the class it is assigned to:

* ``best-error``: the mean over the cell's draws of log E_pred(x, t, ε) — the log denoising error under the predicted
  class (a per-draw bound on −log p(x | class), as in DDPM-OOD, Graham et al. 2023). No extra UNet calls.
* ``class-gain``: the mean over draws of log(E_pred / E_null) — how much the class explains beyond no class (the
  unconditional model, trained by label dropout). A normal cell is explained better with its class than without;
  a cell of an unseen class is not. One null-class call per draw (+24 at the defaults).
* ``texture``: the same question asked of the cell's fine detail by a cascade's 128-px stage (:mod:`.texture`): the
  texture gain (``texture_raw`` in a table) and the texture *profile* — the Mahalanobis distance of the cell's gains
  and log null-class errors across noise levels (``texture_t<t>``, ``texture_null_t<t>`` columns) from those of
  validation cells of its class, which sees a cell whose detail is explained at one scale and not at another
  (erythroblasts held out), or is unlike its class's at some scale, where the mean gain does not.
  ``class-gain+texture``: the mean of the three standardised scores (``class-gain+texture-gain``: without the
  profile, which ranks promyelocytes best); ``class-gain+texture+baseline`` adds how far a baseline CNN's features
  lie from its training cells' (``baseline_neighbours``, the cosine distance to the k-th nearest, :mod:`.baseline_part`;
  a reference fitted before it existed reads the part it was fitted on: the relative Mahalanobis distance
  ``baseline_distance``, or the 1 − max softmax ``baseline_raw``) as a fourth (the best score on validation cells with
  ig and with erythroblast held out, docs/classifier.md).

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
from .config import LEVEL_PREFIX, NULL_LEVEL_PREFIX, PROFILE_PART, SCORE_PARTS, ClassifierConfig, scale_key_of

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


def pooled_classes(reference: dict[str, Any]) -> list[str]:
    """The classes whose reference (any part of it) fell back to the pooled values: too few cells predicted as them."""
    parts = reference.get("parts") or {"novelty_raw": reference}
    return sorted({c for ref in parts.values() for c, v in (ref.get("per_class") or {}).items()
                   if isinstance(v, dict) and v.get("pooled")})


def level_columns(columns: Sequence[str], prefix: str = LEVEL_PREFIX) -> list[str]:
    """The per-noise-level texture columns (``texture_t<t>``, or another ``prefix``) among ``columns``, by level."""
    cols = [c for c in columns if c.startswith(prefix) and c[len(prefix):].isdigit()]
    return sorted(cols, key=lambda c: int(c[len(prefix):]))


def profile_columns(columns: Sequence[str]) -> list[str]:
    """The texture profile's columns among ``columns``: the gains per level, then the log null-class errors per level
    (a table written before those existed has the gains only)."""
    return level_columns(columns) + level_columns(columns, NULL_LEVEL_PREFIX)


def part_values(table: pd.DataFrame, part: str, columns: Sequence[str] | None = None) -> np.ndarray:
    """A score part's raw values in a results table: its column, or for the texture profile the (N, T) matrix of its
    per-level columns (``columns``: those a reference was fitted on, in its order)."""
    if part == PROFILE_PART:
        cols = list(columns) if columns is not None else profile_columns(table.columns)
        missing = [c for c in cols if c not in table] if cols else [f"{LEVEL_PREFIX}<t>"]
        if missing:
            raise ValueError(f"the table has no {', '.join(missing)} column(s): classify with a texture --anomaly "
                             "(a table written before the texture profile, or its null-error columns, existed "
                             "lacks them)")
        return table[cols].to_numpy(np.float64)
    if part not in table:
        raise ValueError(f"the table has no {part} column")
    return table[part].to_numpy(np.float64)


def inverse_covariance(x: np.ndarray, ridge: float) -> np.ndarray:
    """The inverse of the covariance of the rows of ``x``, ridged by ``ridge`` × its trace so that a constant column
    (a level or feature that never varies) does not break the inverse."""
    cov = np.atleast_2d(np.cov(x, rowvar=False))
    cov += np.eye(len(cov)) * ridge * max(float(np.trace(cov)), 1e-12)
    return np.linalg.inv(cov)


def squared_mahalanobis(x: np.ndarray, loc: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """Per row of ``x``, (x − loc)ᵀ · precision · (x − loc)."""
    d = np.asarray(x, dtype=np.float64) - np.asarray(loc)
    return np.einsum("ij,jk,ik->i", d, np.asarray(precision), d)


def _mean_precision(x: np.ndarray) -> dict[str, Any]:
    return {"loc": x.mean(axis=0).tolist(), "precision": inverse_covariance(x, 1e-9).tolist(), "n": int(len(x))}


def fit_profile_reference(levels: np.ndarray, predicted: Sequence[str], class_names: Sequence[str],
                          columns: Sequence[str]) -> dict[str, Any]:
    """Per predicted class, the mean and inverse covariance of the texture profile (N, T) among labelled validation
    cells, then the median/MAD of the resulting distances (:func:`fit_reference`), so that the profile part is in
    robust SDs like the others. A class with fewer than max(``MIN_CLASS_CELLS``, 4·T) cells uses the within-class
    covariance pooled over classes (and its own mean where it has ``MIN_CLASS_CELLS``)."""
    x = np.asarray(levels, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=object)
    if x.ndim != 2 or x.shape[1] != len(columns):
        raise ValueError(f"expected ({len(predicted)}, {len(columns)}) texture levels, got shape {x.shape}")
    ok = np.isfinite(x).all(axis=1)
    need = max(MIN_CLASS_CELLS, 4 * x.shape[1])
    if ok.sum() < need:
        raise ValueError(f"a texture profile reference needs at least {need} classified validation cells "
                         f"(got {int(ok.sum())})")
    by_class = {c: x[ok & (predicted == c)] for c in class_names}
    centred = [v - v.mean(axis=0) for v in by_class.values() if len(v) >= MIN_CLASS_CELLS]
    pooled = {"loc": x[ok].mean(axis=0).tolist(),
              "precision": _mean_precision(np.concatenate(centred) if centred else x[ok])["precision"],
              "n": int(ok.sum())}
    per_class = {}
    for c, v in by_class.items():
        if len(v) >= need:
            per_class[c] = _mean_precision(v)
        else:
            per_class[c] = {**pooled, "pooled": True, **({"loc": v.mean(axis=0).tolist(), "n": int(len(v))}
                                                         if len(v) >= MIN_CLASS_CELLS else {})}
    ref = {"columns": list(columns), "pooled": pooled, "per_class": per_class}
    ref["distance"] = fit_reference(profile_distance(x, predicted, ref)[ok], predicted[ok], class_names)
    return ref


def profile_distance(levels: np.ndarray, predicted: Sequence[str], reference: dict[str, Any]) -> np.ndarray:
    """Per cell, the Mahalanobis distance of its texture profile from its predicted class's (NaN where a level is
    missing)."""
    x = np.asarray(levels, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=object)
    out = np.full(len(x), np.nan)
    for c in set(predicted):
        rows = np.flatnonzero(predicted == c)
        fit = reference["per_class"].get(c, reference["pooled"])
        out[rows] = np.sqrt(squared_mahalanobis(x[rows], fit["loc"], fit["precision"]))
    return out


def standardise(raw: np.ndarray, predicted: Sequence[str], reference: dict[str, Any]) -> np.ndarray:
    """(raw − loc) / scale of each cell's predicted class."""
    pooled = reference["pooled"]
    loc = np.array([reference["per_class"].get(c, pooled)["loc"] for c in predicted], dtype=np.float64)
    scale = np.array([reference["per_class"].get(c, pooled)["scale"] for c in predicted], dtype=np.float64)
    return (np.asarray(raw, dtype=np.float64) - loc) / scale


def anomaly_of(parts: dict[str, np.ndarray], predicted: Sequence[str], reference: dict[str, Any] | None
               ) -> np.ndarray:
    """The anomaly score from its raw statistics (``parts``: part name -> values, the texture profile's an (N, T)
    matrix): each standardised by its own reference and averaged. A reference of one statistic
    (``pooled``/``per_class``) standardises ``novelty_raw``; without a reference the raw scalar values are averaged
    (not comparable between classes, and without the profile, which needs one; warned where it is read)."""
    names = list(parts)
    if reference is None:
        return np.mean([np.asarray(parts[c], dtype=np.float64) for c in names if c != PROFILE_PART], axis=0)
    refs = reference.get("parts") or {"novelty_raw": reference}
    missing = [c for c in names if c not in refs]
    if missing:
        raise ValueError(f"the anomaly reference has no part {missing}; re-fit it with `cytomodel calibrate`")

    def z(c: str) -> np.ndarray:
        if c == PROFILE_PART:
            return standardise(profile_distance(parts[c], predicted, refs[c]), predicted, refs[c]["distance"])
        return standardise(parts[c], predicted, refs[c])
    return np.mean([z(c) for c in names], axis=0)


def score_parts(table: pd.DataFrame, anomaly_or_reference: str | dict[str, Any]) -> dict[str, np.ndarray]:
    """The raw parts of an anomaly score (its name, or a fitted reference's parts) from a results table."""
    if isinstance(anomaly_or_reference, str):
        return {c: part_values(table, c) for c in SCORE_PARTS[anomaly_or_reference]}
    refs = anomaly_or_reference.get("parts") or {"novelty_raw": anomaly_or_reference}
    return {c: part_values(table, c, refs[c].get("columns")) for c in refs}


def fit_score_reference(table: pd.DataFrame, class_names: Sequence[str], anomaly: str) -> dict[str, Any]:
    """The reference of ``anomaly`` on a labelled table: one per raw statistic it averages (``{"parts": …}``), or the
    single-statistic form for ``best-error`` / ``class-gain`` (as models calibrated before texture hold it)."""
    cols = SCORE_PARTS.get(anomaly)
    if not cols:
        raise ValueError(f"anomaly={anomaly!r} has no reference; use one of {', '.join(SCORE_PARTS)}")
    missing = [c for c in cols if c != PROFILE_PART and c not in table]
    if missing:
        raise ValueError(f"the table has no {', '.join(missing)} column: classify with --anomaly {anomaly}")
    pred = table["pred_class"].to_numpy()
    fits = {c: _fit_profile(table, pred, class_names) if c == PROFILE_PART
            else fit_reference(table[c].to_numpy(), pred, class_names) for c in cols}
    return fits["novelty_raw"] if cols == ("novelty_raw",) else {"parts": fits}


def _fit_profile(table: pd.DataFrame, predicted: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """The texture profile's reference on every profile column of ``table``; on the gains alone (said) where the
    table has too few cells for a covariance of gains and null errors (4 cells per column)."""
    cols = profile_columns(table.columns)
    gains = level_columns(table.columns)
    finite = int(np.isfinite(table[cols].to_numpy(np.float64)).all(axis=1).sum()) if cols else 0
    if len(cols) > len(gains) and finite < max(MIN_CLASS_CELLS, 4 * len(cols)):
        warnings.warn(f"{finite} classified cells are too few for a texture profile of gains and null errors "
                      f"({4 * len(cols)} needed): the profile reference is fitted on the gains alone. Calibrate on "
                      "more validation cells for the full profile.", stacklevel=3)
        cols = gains
    return fit_profile_reference(part_values(table, PROFILE_PART, cols), predicted, class_names, cols)


def _key(config: dict[str, Any]) -> dict[str, Any]:
    return {**scale_key_of(config), "anomaly": config.get("anomaly", "zeta")}


def _fitted_for(fit: dict[str, Any]) -> tuple[str | None, str | None]:
    """The weights hashes of the 128-px stage and of the baseline a recorded fit was made with (None: not recorded)."""
    return ((fit.get("texture_stage") or {}).get("superres_weights_sha256"),
            (fit.get("baseline") or {}).get("baseline_weights_sha256"))


def model_reference(meta: dict[str, Any], cfg: ClassifierConfig, warn: bool = True,
                    texture_stage: str | None = None, baseline: str | None = None) -> dict[str, Any] | None:
    """The model's novelty reference fitted with the same error settings and anomaly score, or None (warned).
    ``texture_stage`` / ``baseline``: the weights hash of the 128-px stage a texture score reads and of the baseline
    CNN whose uncertainty it adds; a fit recorded for another stage or baseline does not fit them (a base stage may
    sit under more than one cascade)."""
    want = _key(cfg.to_dict())
    for fit in meta.get("novelty_fits") or []:
        fitted_on, fitted_with = _fitted_for(fit)
        if cfg.needs_texture and texture_stage and fitted_on and fitted_on != texture_stage:
            continue
        if cfg.needs_baseline and baseline and fitted_with and fitted_with != baseline:
            continue
        if _key(fit.get("config", {})) == want:
            ref = fit["reference"]
            lacking = [c for c in SCORE_PARTS.get(cfg.anomaly, ()) if c not in (ref.get("parts") or {"novelty_raw"})]
            if lacking and warn:
                warnings.warn(f"this model's {cfg.anomaly!r} reference was fitted before the score had the part(s) "
                              f"{lacking}, so anomaly_score is computed without them. Re-fit it with `cytomodel "
                              f"calibrate --model DIR --data ... --split val --anomaly {cfg.anomaly}`.", stacklevel=3)
            return ref
    if warn:
        warnings.warn(f"this model has no validation reference for anomaly={cfg.anomaly!r} with these classifier "
                      "settings, so anomaly_score is the raw statistic (not comparable between classes). Fit one "
                      "with `cytomodel calibrate --model DIR --data ... --split val --anomaly "
                      f"{cfg.anomaly}` and the same classifier options"
                      + (" (and this cascade)" if cfg.needs_texture else "")
                      + (" (and this --baseline)" if cfg.needs_baseline else "") + ".", stacklevel=3)
    return None


def record_reference(model_dir: str | Path, table: pd.DataFrame, class_names: Sequence[str], cfg: ClassifierConfig,
                     source: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fit the reference on a classification table (the score's raw columns, ``pred_class``; cells whose ``label`` is
    not a trained class left out) and write it into the model's cytomodel.json (one fit per error settings and anomaly
    score; everything else kept). A table without labels — a lab's cells known to be normal — is used whole."""
    labelled = "label" in table and table["label"].notna().any()
    known = table[table["label"].isin(class_names)] if labelled else table
    ref = fit_score_reference(known, class_names, cfg.anomaly)
    path = Path(model_dir) / METADATA_FILE
    meta = json.loads(path.read_text())
    fit = {"reference": ref, "n_images": int(len(known)), "config": cfg.to_dict(), **(source or {}),
           **provenance_record()}
    same = (_key(fit["config"]), _fitted_for(fit))
    meta["novelty_fits"] = [f for f in meta.get("novelty_fits") or []
                            if (_key(f.get("config", {})), _fitted_for(f)) != same] + [fit]
    write_json(path, meta)
    return fit
