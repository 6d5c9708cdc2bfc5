"""From errors to scores: softmax(−E/T) probabilities, CytoDiffusion's ζ and the anomaly score, the temperature
fit and its record in the model folder, and the per-image results table."""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from cytocore.provenance import provenance_record, write_json

from ..models.base import METADATA_FILE, CytoModel
from .config import LEVEL_PREFIX, NULL_LEVEL_PREFIX, ClassifierConfig, scale_key_of
from .errors import ErrorEstimate
from .novelty import anomaly_of, model_reference, novelty_statistic, score_parts


def softmax_neg(errors: np.ndarray, temperature: float) -> np.ndarray:
    z = -np.asarray(errors, dtype=np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True)


def zeta_scores(errors: np.ndarray, k_max: int = 10) -> np.ndarray:
    """CytoDiffusion's ζ per row of (N, C) errors (see :mod:`cytomodel.classify`); higher = more clearly one class."""
    e = np.sort(np.asarray(errors, dtype=np.float64), axis=1)
    g = e - e[:, :1]
    if g.shape[1] < 3:  # with two classes the normalised gap is constant: use the raw gap
        return g[:, 1] if g.shape[1] == 2 else np.zeros(len(g))
    mean = g.mean(axis=1, keepdims=True)
    g = np.divide(g, mean, out=np.zeros_like(g), where=mean > 0)
    c = g.shape[1]
    k = min(c - 1, k_max)
    nxt = g[:, 1:k]                                   # g_(1) … g_(k-1)
    gap = nxt.sum(axis=1) / k
    spread = np.abs(nxt[:, :, None] - nxt[:, None, :]).sum(axis=(1, 2)) / (k * (k - 1))
    return gap - spread


def anomaly_scores(errors: np.ndarray, k_max: int = 10) -> np.ndarray:
    """−ζ: high when no class explains the image clearly better than the others."""
    return -zeta_scores(errors, k_max)


def fit_temperature(errors: np.ndarray, labels: np.ndarray) -> tuple[float, float, float]:
    """The T minimising the NLL of softmax(−errors/T) on labelled (validation) data: (T, NLL at T=1, NLL at T)."""
    from scipy.optimize import minimize_scalar  # scipy: only a temperature fit needs it

    errors = np.asarray(errors, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if len(errors) != len(labels) or len(errors) == 0:
        raise ValueError("fit_temperature needs one label per row of errors (and at least one row)")
    if not np.isfinite(errors).all():
        raise ValueError("errors contain NaN/inf")

    def nll(log_t: float) -> float:
        return nll_of(errors, labels, math.exp(log_t))

    scale = float(np.median(np.abs(errors - errors.mean(axis=1, keepdims=True)))) or 1.0
    lo, hi = math.log(scale * 1e-4), math.log(scale * 1e4)
    grid = np.linspace(lo, hi, 81)
    vals = [nll(x) for x in grid]
    b = int(np.argmin(vals))
    res = minimize_scalar(nll, bounds=(grid[max(b - 1, 0)], grid[min(b + 1, len(grid) - 1)]), method="bounded",
                          options={"xatol": 1e-6})
    t = float(math.exp(res.x)) if res.fun <= vals[b] else float(math.exp(grid[b]))
    return t, nll(0.0), nll(math.log(t))


def nll_of(errors: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    z = -np.asarray(errors, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(labels)), labels].mean())


def fitted_temperature(meta: dict[str, Any], cfg: ClassifierConfig) -> float | None:
    """The temperature fitted for errors on ``cfg``'s scale (``temperature_fits`` of cytomodel.json), or None."""
    want = scale_key_of(cfg.to_dict())
    fits = list(meta.get("temperature_fits") or [])
    if meta.get("temperature_fit"):
        fits.append(meta["temperature_fit"])
    for fit in fits:
        if scale_key_of(fit.get("config", {})) == want:
            return float(fit["temperature"])
    return None


def model_temperature(model: CytoModel, cfg: ClassifierConfig, warn: bool = True) -> float:
    """``cfg.temperature``, else the model's temperature fitted with the same error settings, else its latest one
    (with a warning that it was fitted on another scale), else 1 (with a warning)."""
    if cfg.temperature is not None:
        return float(cfg.temperature)
    matched = fitted_temperature(model.metadata, cfg)
    if matched is not None:
        return matched
    t = model.temperature
    if t is None:
        if warn:
            warnings.warn("this model has no fitted temperature; using T=1 (probabilities are uncalibrated). "
                          "Fit one with `cytomodel calibrate --model DIR --data ... --split val`.", stacklevel=3)
        return 1.0
    fitted = model.metadata.get("temperature_fit", {}).get("config")
    if warn and fitted:
        have = scale_key_of(fitted)
        mismatch = {k: (have.get(k), v) for k, v in scale_key_of(cfg.to_dict()).items() if have.get(k) != v}
        if mismatch:
            warnings.warn(f"the model's temperature was fitted with other error settings {mismatch} "
                          "(fitted, now); its probabilities may be miscalibrated. Fit one for these settings with "
                          "`cytomodel calibrate` and the same classifier options.", stacklevel=3)
    return float(t)


def results_frame(model: CytoModel, est: ErrorEstimate, cfg: ClassifierConfig,
                  classes: Sequence[int] | None = None, warn: bool = True) -> pd.DataFrame:
    names = [model.class_names[c] for c in (classes if classes is not None else range(len(model.class_names)))]
    raw = anomaly = None
    if cfg.novelty_kind and len(est.errors):
        best = np.argmin(est.errors, axis=1)
        raw = novelty_statistic(est.draw_errors, est.draws_run, best, cfg.novelty_kind, est.null_errors)
        anomaly = anomaly_of({"novelty_raw": raw}, [names[b] for b in best],
                             model_reference(model.metadata, cfg, warn=warn))
    if cfg.needs_texture:   # filled in by with_texture once the 128-px stage has scored the cells
        anomaly = np.full(len(est.errors), np.nan)
    df = scores_frame(est.errors, names, model_temperature(model, cfg, warn=warn), cfg.anomaly_k, anomaly)
    if raw is not None:
        df.insert(df.columns.get_loc("zeta") + 1, "novelty_raw", raw)
    df.insert(df.columns.get_loc("temperature"), "unet_calls", est.unet_calls)
    df.insert(df.columns.get_loc("temperature"), "trials", est.draws_run)
    for j, name in enumerate(names):
        df[f"err_{name}"] = est.errors[:, j]
    return df


def with_texture(df: pd.DataFrame, levels: np.ndarray, timesteps: Sequence[int], model: CytoModel,
                 cfg: ClassifierConfig, warn: bool = True, texture_stage: str | None = None,
                 baseline: str | None = None, null_levels: np.ndarray | None = None) -> pd.DataFrame:
    """A results table of a texture anomaly score: the texture gain per noise level (``levels`` (N, T) at
    ``timesteps``; columns ``texture_t<t>``), their mean (``texture_raw``), the log null-class error per level
    (``null_levels``; columns ``texture_null_t<t>``) and the anomaly score
    (``texture_stage`` / ``baseline``: the 128-px stage's and the baseline's weights hashes, to pick the reference
    fitted for them; a score with the baseline's part reads the table's baseline columns)."""
    df = df.copy()
    levels = np.asarray(levels, dtype=np.float64).reshape(len(df), len(timesteps))
    at = df.columns.get_loc("novelty_raw" if "novelty_raw" in df else "zeta") + 1
    df.insert(at, "texture_raw", levels.mean(axis=1))
    for j, t in enumerate(timesteps):
        df.insert(at + 1 + j, f"{LEVEL_PREFIX}{int(t)}", levels[:, j])
    if null_levels is not None:
        nulls = np.asarray(null_levels, dtype=np.float64).reshape(len(df), len(timesteps))
        for j, t in enumerate(timesteps):
            df.insert(at + 1 + len(timesteps) + j, f"{NULL_LEVEL_PREFIX}{int(t)}", nulls[:, j])
    ref = model_reference(model.metadata, cfg, warn=warn, texture_stage=texture_stage, baseline=baseline)
    df["anomaly_score"] = anomaly_of(score_parts(df, ref if ref is not None else cfg.anomaly),
                                     df["pred_class"].tolist(), ref)
    return df


def scores_frame(errors: np.ndarray, names: Sequence[str], temperature: float, anomaly_k: int = 10,
                 anomaly: np.ndarray | None = None) -> pd.DataFrame:
    """The score columns of a results table from (N, C) errors: prediction, runner-up, confidence, entropy, margin,
    anomaly score (``anomaly``, else −ζ) and ζ, the temperature and one ``prob_<class>`` column per class."""
    probs = softmax_neg(errors, temperature)
    order = np.argsort(-probs, axis=1, kind="stable")
    top = probs[np.arange(len(probs)), order[:, 0]]
    second = probs[np.arange(len(probs)), order[:, 1]] if probs.shape[1] > 1 else np.zeros(len(probs))
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.where(probs > 0, probs * np.log(probs), 0.0).sum(axis=1)
    zeta = zeta_scores(errors, anomaly_k)
    df = pd.DataFrame({
        "pred_class": [names[i] for i in order[:, 0]],
        "runner_up": [names[i] for i in order[:, 1]] if probs.shape[1] > 1 else [None] * len(probs),
        "confidence": top, "entropy": ent, "margin": top - second,
        "anomaly_score": -zeta if anomaly is None else anomaly, "zeta": zeta, "temperature": temperature,
    })
    for j, name in enumerate(names):
        df[f"prob_{name}"] = probs[:, j]
    return df


def rescored(table: pd.DataFrame, temperature: float, anomaly_k: int = 10,
             novelty_reference: dict[str, Any] | None = None) -> pd.DataFrame:
    """A results table (``cytomodel classify`` output) with its scores recomputed at ``temperature`` from its
    ``err_<class>`` columns; every other column kept. A table with ``novelty_raw`` / ``texture_raw`` columns keeps
    that anomaly score (standardised again by ``novelty_reference`` when one is given).

    Why: a temperature fitted after classifying (``cytomodel calibrate --from-results``) needs no new UNet calls."""
    names = [c[len("err_"):] for c in table.columns if c.startswith("err_")]
    if not names:
        raise ValueError("the table has no err_<class> columns; give the output of `cytomodel classify`")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    errors = table[[f"err_{n}" for n in names]].to_numpy(np.float64)
    anomaly = None
    parts = [c for c in ("novelty_raw", "texture_raw") if c in table]
    if parts:
        anomaly = table["anomaly_score"].to_numpy(np.float64)
        if novelty_reference is not None:
            best = [names[b] for b in np.argmin(errors, axis=1)]
            anomaly = anomaly_of(score_parts(table, novelty_reference), best, novelty_reference)
    scores = scores_frame(errors, names, temperature, anomaly_k, anomaly)
    out = table.copy()
    for c in scores.columns:
        out[c] = scores[c].to_numpy()
    return out


def calibrate_model(model_dir: str | Path, errors: np.ndarray, labels: np.ndarray, cfg: ClassifierConfig,
                    source: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fit T on (errors, labels) and write it into the model's cytomodel.json, keeping everything else."""
    t, nll1, nllt = fit_temperature(errors, labels)
    path = Path(model_dir) / METADATA_FILE
    meta = json.loads(path.read_text())
    earlier = list(meta.get("temperature_fits") or [])
    if meta.get("temperature_fit") and meta["temperature_fit"] not in earlier:
        earlier.append(meta["temperature_fit"])
    fit = {"temperature": t, "nll_at_T1": nll1, "nll_at_T": nllt, "n_images": int(len(labels)),
           "config": cfg.to_dict(), **(source or {}), **provenance_record()}
    meta["temperature"] = t
    meta["temperature_fit"] = fit
    # one fit per error scale: a fit for other settings (disc region, lab condition, ...) is kept beside it
    key = scale_key_of(fit["config"])
    others = [f for f in earlier if scale_key_of(f.get("config", {})) != key]
    meta["temperature_fits"] = others + [fit]
    write_json(path, meta)
    return fit
