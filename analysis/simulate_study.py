"""Simulated studies: a stimulus set with the simulated classifier's outputs, raters drawn around a group profile,
and the tidy response table with the true parameters in ``df.attrs`` (the per-trial rater model, which the study's
simulated raters share, is :mod:`cytocore.rater_model`).

The simulated classifier (:class:`ModelProfile`): each stimulus has a quality β_i (log-normal); class logits
z_k = β_i·[k = true] + N(0, 1); the model's probabilities are softmax(β_i·z / T).  With temperature T = 1 this is
the exact Bayes posterior, i.e. the model is perfectly calibrated; T < 1 makes it over-confident.  Its anomaly score
is ζ = gain·m + N(0, 1).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.special import ndtr

from cytocore.rater_model import DEFAULT_CLASSES, RaterProfile, morph_psychometric_truth, simulate_response
from cytocore.schema import MODEL_PROB_PREFIX

__all__ = ["ModelProfile", "draw_raters", "simulate_single_rater_auth_counts", "simulate_stimuli", "simulate_study"]


@dataclass
class ModelProfile:
    """The simulated diffusion classifier (see the module docstring)."""

    quality_median: float = 3.0   # median β_i (separation of the true-class logit)
    quality_log_sd: float = 0.5
    temperature: float = 1.0      # 1 = calibrated
    anomaly_gain: float = 1.5     # ζ = gain·m + N(0, 1)


def simulate_stimuli(
    n_stimuli: int,
    classes: Sequence[str] = DEFAULT_CLASSES,
    *,
    rng: np.random.Generator,
    synthetic_fraction: float = 0.5,
    morph_levels: Sequence[float] = (0.25, 0.5, 0.75),
    morph_fraction: float = 0.5,
    stimulus_sd: float = 0.3,
    model: ModelProfile | None = None,
) -> pd.DataFrame:
    """A stimulus manifest with the simulated classifier's outputs.

    ``synthetic_fraction`` of the stimuli are synthetic; of those, ``morph_fraction`` are partial morphs with a
    strength drawn from ``morph_levels`` and the rest are fully generated (strength 1).  Classes are balanced.
    """
    model = model or ModelProfile()
    C = len(classes)
    n_syn = int(round(n_stimuli * synthetic_fraction))
    source = np.array(["real"] * (n_stimuli - n_syn) + ["synthetic"] * n_syn)
    morph = np.zeros(n_stimuli)
    n_morph = int(round(n_syn * morph_fraction)) if len(morph_levels) else 0
    syn_idx = np.arange(n_stimuli - n_syn, n_stimuli)
    morph[syn_idx] = 1.0
    if n_morph:
        morph[syn_idx[:n_morph]] = rng.choice(np.asarray(morph_levels, float), size=n_morph)
    true_idx = np.tile(np.arange(C), n_stimuli // C + 1)[:n_stimuli]
    rng.shuffle(true_idx)
    beta = model.quality_median * np.exp(model.quality_log_sd * rng.standard_normal(n_stimuli))
    z = rng.standard_normal((n_stimuli, C))
    z[np.arange(n_stimuli), true_idx] += beta
    logits = beta[:, None] * z / model.temperature
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    srt = np.sort(p, axis=1)
    df = pd.DataFrame({
        "stimulus_id": [f"s{i:04d}" for i in range(n_stimuli)],
        "source": source,
        "morph_strength": morph,
        "true_class": [classes[k] for k in true_idx],
        "stimulus_effect": stimulus_sd * rng.standard_normal(n_stimuli),
        "model_pred_class": [classes[k] for k in p.argmax(axis=1)],
        "model_confidence": srt[:, -1],
        "model_margin": srt[:, -1] - srt[:, -2],
        "model_anomaly": model.anomaly_gain * morph + rng.standard_normal(n_stimuli),
    })
    for k, name in enumerate(classes):
        df[f"{MODEL_PROB_PREFIX}{name}"] = p[:, k]
    return df


_RATER_SD_DEFAULT = {"d_prime": 0.3, "criterion": 0.2, "log_meta_ratio": 0.2, "class_threshold": 0.04,
                     "log_class_width": 0.2}


def draw_raters(n_raters: int, profile: RaterProfile, rater_sd: Mapping[str, float] | None,
                rng: np.random.Generator) -> list[RaterProfile]:
    """Per-rater profiles drawn around the group ``profile`` (normal on d′, c, threshold; log-normal on M, width and,
    where ``rater_sd`` names ``log_confidence_step``, on the spacing of the type-2 criteria — off by default, so
    that every rater then has the same confidence criteria)."""
    sd = dict(_RATER_SD_DEFAULT)
    sd.update(rater_sd or {})
    out = []
    for _ in range(n_raters):
        kw = profile.to_dict()
        kw["d_prime"] = profile.d_prime + sd["d_prime"] * rng.standard_normal()
        kw["criterion"] = profile.criterion + sd["criterion"] * rng.standard_normal()
        kw["meta_ratio"] = profile.meta_ratio * math.exp(sd["log_meta_ratio"] * rng.standard_normal())
        if sd.get("log_confidence_step", 0.0) > 0:   # raters who differ in their confidence criteria (off by default)
            kw["confidence_step"] = profile.confidence_step * math.exp(sd["log_confidence_step"] * rng.standard_normal())
        if profile.class_threshold is not None:
            kw["class_threshold"] = profile.class_threshold + sd["class_threshold"] * rng.standard_normal()
            kw["class_width"] = profile.class_width * math.exp(sd["log_class_width"] * rng.standard_normal())
        out.append(RaterProfile(**kw))
    return out


def simulate_study(
    n_raters: int = 10,
    n_trials: int = 300,
    classes: Sequence[str] = DEFAULT_CLASSES,
    seed: int = 0,
    *,
    profile: RaterProfile | None = None,
    raters: Sequence[RaterProfile] | None = None,
    rater_sd: Mapping[str, float] | None = None,
    n_stimuli: int | None = None,
    synthetic_fraction: float = 0.5,
    morph_levels: Sequence[float] = (0.25, 0.5, 0.75),
    morph_fraction: float = 0.5,
    stimulus_sd: float = 0.3,
    model: ModelProfile | None = None,
    practice_trials: int = 0,
    attention_checks: int = 0,
    study_id: str = "sim",
) -> pd.DataFrame:
    """Simulate a full study as the tidy response table (``docs/tidy-responses.md``).

    Every rater sees ``n_trials`` main trials drawn without replacement from ``n_stimuli`` stimuli (default
    ``n_trials``, i.e. everyone sees every stimulus, in their own random order), after ``practice_trials``
    practice trials; ``attention_checks`` extra trials show an unmorphed real or fully synthetic image and are
    flagged.  Rater parameters are drawn around ``profile`` with between-rater SDs ``rater_sd`` unless
    ``raters`` is given.  The true parameters are in ``df.attrs["truth"]``, the call in ``df.attrs["simulation"]``.
    """
    rng = np.random.default_rng(seed)
    classes = tuple(classes)
    profile = profile or RaterProfile()
    n_stimuli = n_stimuli or n_trials
    if n_trials > n_stimuli:
        raise ValueError("n_trials cannot exceed n_stimuli (each rater sees a stimulus at most once)")
    stimuli = simulate_stimuli(n_stimuli, classes, rng=rng, synthetic_fraction=synthetic_fraction,
                               morph_levels=morph_levels, morph_fraction=morph_fraction, stimulus_sd=stimulus_sd,
                               model=model)
    if raters is None:
        raters = draw_raters(n_raters, profile, rater_sd, rng)
    raters = list(raters)
    K = raters[0].confidence_levels
    if any(r.confidence_levels != K for r in raters):
        raise ValueError("all raters must use the same confidence scale")
    rows = []
    recs = stimuli.to_dict("records")
    for r_i, prof in enumerate(raters):
        rows += _rater_rows(r_i, prof, recs, classes, rng, n_trials=n_trials, practice_trials=practice_trials,
                            attention_checks=attention_checks, study_id=study_id)
    df = pd.DataFrame(rows)
    from cytocore.schema import COLUMN_TYPES
    # one joined table, as a tool other than cytostudy writes it: the raw confidence percent beside the levels
    cols = list(COLUMN_TYPES) + [f"{MODEL_PROB_PREFIX}{k}" for k in classes]
    df = df[cols]
    df.attrs["truth"] = _truth(profile, raters, rater_sd, stimulus_sd, stimuli)
    df.attrs["simulation"] = {
        "n_raters": len(raters), "n_trials": n_trials, "classes": list(classes), "seed": seed,
        "n_stimuli": n_stimuli, "synthetic_fraction": synthetic_fraction, "morph_levels": list(morph_levels),
        "morph_fraction": morph_fraction, "stimulus_sd": stimulus_sd,
        "model": dataclasses.asdict(model or ModelProfile()), "group_profile": profile.to_dict(),
        "practice_trials": practice_trials, "attention_checks": attention_checks,
    }
    return df


def _trial_sequence(recs: list[dict], rng: np.random.Generator, n_trials: int, practice_trials: int,
                    attention_checks: int) -> list[tuple[str, bool, dict]]:
    """One rater's (phase, is_attention_check, stimulus) sequence: practice, then the main trials in a random order
    with the attention checks (unmorphed real or fully synthetic images) inserted at random places."""
    n_stimuli = len(recs)
    order = rng.permutation(n_stimuli)[:n_trials]
    seq: list[tuple[str, bool, dict]] = []
    for _ in range(practice_trials):
        seq.append(("practice", False, recs[int(rng.integers(n_stimuli))]))
    main = [("main", False, recs[int(k)]) for k in order]
    if attention_checks:
        full = [s for s in recs if s["morph_strength"] in (0.0, 1.0)]
        for j in range(attention_checks):
            st = dict(full[int(rng.integers(len(full)))])
            st["stimulus_effect"] = 0.0
            st["stimulus_id"] = f"att{j:02d}_" + st["stimulus_id"]
            main.insert(int(rng.integers(len(main) + 1)), ("main", True, st))
    return seq + main


def _rater_rows(r_i: int, prof: RaterProfile, recs: list[dict], classes: tuple[str, ...], rng: np.random.Generator,
                *, n_trials: int, practice_trials: int, attention_checks: int, study_id: str) -> list[dict]:
    """The tidy rows of rater ``r_i`` (answers simulated trial by trial with :func:`simulate_response`)."""
    pid = f"r{r_i:02d}"
    years = float(rng.integers(1, 30))
    seq = _trial_sequence(recs, rng, n_trials, practice_trials, attention_checks)
    t = pd.Timestamp("2025-01-01T09:00:00Z") + pd.Timedelta(hours=r_i)
    counters = {"practice": 0, "main": 0}
    rows = []
    for phase, is_att, st in seq:
        resp = simulate_response(prof if not is_att else dataclasses.replace(prof, d_prime=4.0), st, classes, rng)
        t = t + pd.Timedelta(milliseconds=resp["class_rt_ms"] + 800)
        idx = counters[phase]
        counters[phase] += 1
        row = {
            "study_id": study_id, "participant_id": pid, "participant_role": "bot", "years_experience": years,
            "trial_index": idx, "block": idx // 100 if phase == "main" else 0, "phase": phase,
            "is_attention_check": is_att, "stimulus_id": st["stimulus_id"], "source": st["source"],
            "morph_strength": st["morph_strength"], "true_class": st["true_class"],
            **resp, "confidence_levels": prof.confidence_levels, "responded_at": t,
            "model_pred_class": st["model_pred_class"], "model_confidence": st["model_confidence"],
            "model_margin": st["model_margin"], "model_anomaly": st["model_anomaly"],
        }
        for k in classes:
            row[f"{MODEL_PROB_PREFIX}{k}"] = st[f"{MODEL_PROB_PREFIX}{k}"]
        rows.append(row)
    return rows


def _truth(profile: RaterProfile, raters: Sequence[RaterProfile], rater_sd, stimulus_sd: float,
           stimuli: pd.DataFrame) -> dict[str, Any]:
    sd = dict(_RATER_SD_DEFAULT)
    sd.update(rater_sd or {})
    s = math.sqrt(1 + stimulus_sd**2)
    mu_d, mu_c = profile.d_prime, profile.criterion
    acc = 0.5 * (float(ndtr((mu_c + mu_d / 2) / s)) + float(ndtr((mu_d / 2 - mu_c) / s)))
    per = {}
    for i, r in enumerate(raters):
        mp = morph_psychometric_truth(r, stimulus_sd)
        per[f"r{i:02d}"] = {
            "d_prime": r.d_prime, "criterion": r.criterion, "meta_ratio": r.meta_ratio,
            "meta_d": r.meta_ratio * r.d_prime, "lapse": r.lapse,
            "class_threshold": r.class_threshold, "class_width": r.class_width,
            "morph_threshold": mp["threshold"], "morph_width": mp["width"],
            "accuracy": 0.5 * (float(ndtr((r.criterion + r.d_prime / 2) / s))
                               + float(ndtr((r.d_prime / 2 - r.criterion) / s))),
        }
    return {
        "group": {
            "mu_d": mu_d, "mu_c": mu_c, "sigma_d": sd["d_prime"], "sigma_c": sd["criterion"],
            "sigma_stimulus": stimulus_sd, "accuracy": acc, "mu_log_meta_ratio": math.log(profile.meta_ratio),
            "meta_ratio": profile.meta_ratio, "lapse": profile.lapse,
            "class_threshold": profile.class_threshold, "class_width": profile.class_width,
            "class_family": profile.class_family,
        },
        "raters": per,
        "stimulus_effect": dict(zip(stimuli["stimulus_id"], map(float, stimuli["stimulus_effect"]))),
    }


def simulate_single_rater_auth_counts(profile: RaterProfile, n_trials: int, seed: int = 0):
    """Type-1 × confidence counts (nR_S1, nR_S2) of one simulated rater on alternating real/synthetic trials:
    the input of single-rater meta-d′ fits (MLE cross-checks, recovery tests)."""
    from .prepare import metad_counts_auth

    rng = np.random.default_rng(seed)
    src, resp, lev = [], [], []
    for i in range(n_trials):
        s = "real" if i % 2 else "synthetic"
        o = simulate_response(profile, {"source": s, "morph_strength": float(s == "synthetic"), "true_class": "a"},
                              ("a", "b"), rng)
        src.append(s)
        resp.append(o["auth_response"])
        lev.append(o["auth_confidence_level"])
    return metad_counts_auth(np.array(src), np.array(resp), np.array(lev), np.zeros(n_trials, int), 1,
                             profile.confidence_levels)
