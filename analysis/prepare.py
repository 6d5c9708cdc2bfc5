"""Turn the validated tidy table into the arrays each model needs (and the model's own answers)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from cytocore.confidence import level_probability
from cytocore.schema import CANNOT_TELL, MODEL_PROB_PREFIX

__all__ = [
    "auth_subset",
    "class_psychometric_arrays",
    "folded_counts",
    "metad_counts_auth",
    "model_answers",
    "morph_arrays",
    "morph_trials",
    "response_ids",
    "quantile_levels",
    "sdt_arrays",
]


def _index(values: pd.Series) -> tuple[np.ndarray, list[str]]:
    cats = sorted(values.unique())
    lut = {c: i for i, c in enumerate(cats)}
    return values.map(lut).to_numpy(int), cats


def response_ids(df: pd.DataFrame) -> list[str]:
    """The id of each answer, ``participant/trial_index`` (the ``obs`` coordinate of every per-answer model)."""
    return (df["participant_id"].astype(str) + "/" + df["trial_index"].astype(str)).tolist()


def auth_subset(df: pd.DataFrame, synthetic: str = "full") -> pd.DataFrame:
    """Trials for the two-choice authenticity models.

    ``"full"``: real images and fully generated ones (morph strength 1), so d′ is the sensitivity for
    real vs fully synthetic; ``"all"``: every synthetic image, morphs included, counts as synthetic.
    """
    if synthetic == "full":
        out = df[(df["source"] == "real") | (df["morph_strength"] >= 1.0)]
    elif synthetic == "all":
        out = df
    else:
        raise ValueError("synthetic must be 'full' or 'all'")
    return out


def sdt_arrays(df: pd.DataFrame, synthetic: str = "full") -> dict:
    d = auth_subset(df, synthetic)
    r_idx, raters = _index(d["participant_id"])
    s_idx, stimuli = _index(d["stimulus_id"])
    return {
        "y": (d["auth_response"] == "real").to_numpy(int),
        "s": np.where(d["source"] == "real", 0.5, -0.5),
        "rater_idx": r_idx, "stim_idx": s_idx, "raters": raters, "stimuli": stimuli, "obs_ids": response_ids(d),
    }


def morph_arrays(df: pd.DataFrame) -> dict:
    """Aggregated counts of 'synthetic' answers per rater and morph strength (all trials; real = strength 0)."""
    d = df.assign(k=(df["auth_response"] == "synthetic").astype(int))
    g = d.groupby(["participant_id", "morph_strength"])["k"].agg(["sum", "count"]).reset_index()
    r_idx, raters = _index(g["participant_id"])
    return {"x": g["morph_strength"].to_numpy(float), "k": g["sum"].to_numpy(int), "n": g["count"].to_numpy(int),
            "rater_idx": r_idx, "raters": raters,
            "obs_ids": [f"{p}@{x:g}" for p, x in zip(g["participant_id"], g["morph_strength"])]}


def morph_trials(df: pd.DataFrame) -> dict:
    """One row per answer (all trials; real = strength 0) with its stimulus: the input of the morph model with
    stimulus effects."""
    r_idx, raters = _index(df["participant_id"])
    s_idx, stimuli = _index(df["stimulus_id"])
    return {"x": df["morph_strength"].to_numpy(float), "k": (df["auth_response"] == "synthetic").to_numpy(int),
            "n": np.ones(len(df), int), "rater_idx": r_idx, "raters": raters, "stimulus_idx": s_idx,
            "stimuli": stimuli, "obs_ids": response_ids(df)}


def class_psychometric_arrays(df: pd.DataFrame, evidence: str = "model_margin") -> dict:
    """Experts' class correctness against the model-evidence axis (one row per trial)."""
    d = df[df[evidence].notna()]
    r_idx, raters = _index(d["participant_id"])
    s_idx, stimuli = _index(d["stimulus_id"])
    return {"x": d[evidence].to_numpy(float), "k": (d["class_response"] == d["true_class"]).to_numpy(int),
            "n": np.ones(len(d), int), "rater_idx": r_idx, "raters": raters, "stimulus_idx": s_idx,
            "stimuli": stimuli, "obs_ids": response_ids(d)}


def quantile_levels(x: np.ndarray, K: int) -> np.ndarray:
    """Ordinal levels 1..K from a continuous confidence by (rank-based) quantile bins."""
    x = np.asarray(x, float)
    ranks = pd.Series(x).rank(method="average").to_numpy()
    return np.clip(np.ceil(ranks / len(x) * K), 1, K).astype(int)


def model_answers(df: pd.DataFrame, classes: Sequence[str], K: int, *, anomaly_threshold: float | None = None,
                  chance_class: float | None = None) -> pd.DataFrame:
    """One row per stimulus with the classifier's answers, correctness and confidence.

    Authenticity: the model answers "synthetic" when its anomaly score ζ exceeds ``anomaly_threshold`` (default:
    the median ζ over the stimuli — label-free, and right for a balanced design); its confidence is |ζ − thr|.
    Classification: ``model_pred_class`` with confidence ``model_confidence`` (its max probability).
    Ordinal levels: ``*_level_q`` are quantile bins (used for meta-d′ and type-2 ROC); ``class_level_fixed``
    bins the probability into K equal-width levels on [1/C, 1] (used for the confident-error rate, so that
    "top level" means probability ≥ 1/C + (1 − 1/C)(K − 1)/K whatever the data).
    """
    cols = ["stimulus_id", "source", "morph_strength", "true_class", "model_pred_class", "model_confidence",
            "model_margin", "model_anomaly"] + [f"{MODEL_PROB_PREFIX}{c}" for c in classes]
    st = df[cols].drop_duplicates("stimulus_id").reset_index(drop=True)
    thr = float(np.nanmedian(st["model_anomaly"])) if anomaly_threshold is None else float(anomaly_threshold)
    st["auth_response"] = np.where(st["model_anomaly"] > thr, "synthetic", "real")
    st["auth_correct"] = st["auth_response"] == st["source"]
    st["auth_conf"] = (st["model_anomaly"] - thr).abs()
    st["auth_level_q"] = quantile_levels(st["auth_conf"].to_numpy(), K)
    st["class_correct"] = st["model_pred_class"] == st["true_class"]
    st["class_level_q"] = quantile_levels(st["model_confidence"].to_numpy(), K)
    C = len(classes) if chance_class is None else 1 / chance_class
    lo = 1.0 / C
    st["class_level_fixed"] = np.clip(np.floor((st["model_confidence"] - lo) / (1 - lo) * K) + 1, 1, K).astype(int)
    st.attrs["anomaly_threshold"] = thr
    return st


def metad_counts_auth(src: np.ndarray, resp: np.ndarray, level: np.ndarray, rater_idx: np.ndarray, R: int,
                      K: int) -> tuple[np.ndarray, np.ndarray]:
    """HMeta-d counts for authenticity, S1 = synthetic, S2 = real.

    Returns (counts_S1, counts_S2), each (R, 2K): answer S1 ('synthetic') at confidence K..1, then answer S2
    ('real') at confidence 1..K.
    """
    cS1 = np.zeros((R, 2 * K), int)
    cS2 = np.zeros((R, 2 * K), int)
    src = np.asarray(src)
    resp = np.asarray(resp)
    level = np.asarray(level, int)
    col = np.where(resp == "real", K - 1 + level, K - level)
    for r, s, c in zip(rater_idx, src, col):
        (cS2 if s == "real" else cS1)[r, c] += 1
    return cS1, cS2


def folded_counts(correct: np.ndarray, level: np.ndarray, rater_idx: np.ndarray, R: int, K: int) -> np.ndarray:
    """(R, 2K) counts: incorrect at confidence K..1, then correct at confidence 1..K."""
    out = np.zeros((R, 2 * K), int)
    level = np.asarray(level, int)
    col = np.where(np.asarray(correct, bool), K - 1 + level, K - level)
    np.add.at(out, (np.asarray(rater_idx, int), col), 1)
    return out


@dataclass
class ConfidenceMap:
    """How raw confidence becomes a probability for calibration."""

    method: str
    description: str


def confidence_probability(raw: pd.Series | None, level: pd.Series, K: int, chance: float, scale: str = "auto"
                           ) -> tuple[np.ndarray, ConfidenceMap]:
    """Map confidence to a subjective probability of being correct.

    scale "percent": raw/100; "probability": raw as is; "levels": level k ↦ chance + (1 − chance)(k − 1)/(K − 1)
    (level 1 = guessing, level K = certain); "auto": percent if raw lies in [0, 100] with values above 1 and is
    not just the level, probability if raw lies in [0, 1], otherwise levels. ``raw`` None (a ``cytostudy export``,
    which records the level alone and states its scale): the levels, nothing guessed; "percent" and "probability"
    then raise, as there is no raw confidence to read.
    """
    if raw is None:
        if scale in ("percent", "probability"):
            raise ValueError(f"confidence_scale {scale!r} reads the raw confidence columns auth_confidence / "
                             "class_confidence, which this table does not have (a cytostudy export records the "
                             "level and states its scale): use confidence_scale = 'levels' or 'auto'")
        if scale not in ("auto", "levels"):
            raise ValueError(f"unknown confidence scale {scale!r}")
        p = level_probability(level.to_numpy(float), K, chance)
        return np.clip(p, 0, 1), ConfidenceMap("levels", f"the recorded level k of K = {K} (the export states its "
                                                         f"scale) ↦ {_level_words(chance)}")
    raw = pd.to_numeric(raw, errors="coerce")
    if scale == "auto":
        if raw.notna().all() and not np.allclose(raw.to_numpy(float), level.to_numpy(float)):
            if raw.min() >= 0 and raw.max() <= 1:
                scale = "probability"
            elif raw.min() >= 0 and raw.max() <= 100:
                scale = "percent"
            else:
                scale = "levels"
        else:
            scale = "levels"
    if scale == "percent":
        p = raw.to_numpy(float) / 100
        desc = "raw confidence in percent, divided by 100"
    elif scale == "probability":
        p = raw.to_numpy(float)
        desc = "raw confidence used as a probability"
    elif scale == "levels":
        p = level_probability(level.to_numpy(float), K, chance)
        desc = f"level k ↦ {_level_words(chance)}"
    else:
        raise ValueError(f"unknown confidence scale {scale!r}")
    return np.clip(p, 0, 1), ConfidenceMap(scale, desc)


def _level_words(chance: float) -> str:
    return f"{chance:.3g} + (1 − {chance:.3g})·(k − 1)/(K − 1): level 1 = guessing, K = certain"


def is_correct_class(df: pd.DataFrame) -> np.ndarray:
    return (df["class_response"] == df["true_class"]).to_numpy(bool)


def said_cannot_tell(df: pd.DataFrame) -> np.ndarray:
    return (df["class_response"] == CANNOT_TELL).to_numpy(bool)
