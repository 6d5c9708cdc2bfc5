"""Simulated raters and a simulated classifier, producing the tidy response table.

The generative model is the one the analysis models assume, so parameter recovery is meaningful.

Authenticity (one trial, rater r, stimulus i with morph strength m ∈ [0, 1], m = 0 for real images)
    evidence for "real":   x = d′·(½ − m) + u_i + ε,   ε ~ N(0, 1),  u_i ~ N(0, σ_stim) (stimulus effect)
    answer "real" iff x > −c, so            P("real") = Φ(c + d′·s + u_i)   with s = ½ − m
    (s = +½ for real images and −½ for fully synthetic ones — exactly the probit SDT model of
    :mod:`analysis.models`). ``criterion`` c > 0 means a liberal bias towards answering "real"; in classical SDT
    notation with "real" as the signal, c = −c_classical.  Over morph strength this is a cumulative-normal
    psychometric function P("synthetic" | m) = Φ((m − (½ + c/d′)) / (√(1 + σ_stim²)/d′)) once u_i is integrated
    out (see :func:`morph_psychometric_truth`).
    Confidence (meta-d′ model of Maniscalco & Lau 2012, with HMeta-d's meta-criterion = the type-1 criterion): a
    second sample x₂ ~ N(M·(d′·s + u_i), 1), constrained to lie on the side of the criterion −c that agrees with
    the answer, is compared with K−1 type-2 criteria spaced ``confidence_step`` apart beyond that criterion.
    Its sensitivity is meta-d′ = M·d′ with M = ``meta_ratio``; marginally the (answer, confidence) counts follow
    the meta-d′ model exactly.

Classification (evidence x = the model's margin on the stimulus, by default)
    P(correct | x) on a non-lapse trial: q = γ + (1 − γ)·F((x − threshold)/width), γ = 1/n_classes, F logistic,
    cumulative normal or Weibull (``class_family``); or q = ``class_accuracy`` when ``class_threshold`` is None.
    Correctness and confidence follow the unbiased ("folded") meta-SDT model with d′_t = 2Φ⁻¹(q): correct iff
    x₁ ~ N(d′_t/2, 1) > 0, and confidence from x₂ ~ N(M·d′_t/2, 1) constrained to the side of 0 that matches.
    A wrong answer picks a wrong class with probability ∝ (model probability + 0.05), so human and model errors
    are related, as they would be for genuinely ambiguous cells.

Lapses: with probability ``lapse`` a trial's answers and confidences are uniformly random (both tasks).  The
psychometric asymptotes are then γ = λ/2, λ_ψ = λ/2 for authenticity and γ = 1/C, λ_ψ = λ·(1 − 1/C) for
classification.

The classifier: each stimulus has a quality β_i (log-normal); class logits z_k = β_i·[k = true] + N(0, 1); the
model's probabilities are softmax(β_i·z / T).  With temperature T = 1 this is the exact Bayes posterior, i.e. the
model is perfectly calibrated; T < 1 makes it over-confident.  Its anomaly score is ζ = gain·m + N(0, 1).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.special import expit, ndtr, ndtri

from cytocore.confidence import confidence_to_raw
from cytocore.schema import MODEL_PROB_PREFIX

__all__ = [
    "DEFAULT_CLASSES",
    "ModelProfile",
    "RaterProfile",
    "confidence_to_raw",
    "morph_psychometric_truth",
    "psychometric_F",
    "simulate_response",
    "simulate_stimuli",
    "simulate_study",
]

DEFAULT_CLASSES: tuple[str, ...] = (
    "basophil", "eosinophil", "erythroblast", "ig", "lymphocyte", "monocyte", "neutrophil", "platelet",
)
FAMILIES = ("logistic", "cumulative_normal", "weibull")


def psychometric_F(z_or_x, family: str, threshold: float | None = None, width: float | None = None):
    """Sigmoid F of a psychometric function ψ = γ + (1 − γ − λ)·F.

    logistic / cumulative_normal: F((x − threshold)/width).  weibull: 1 − exp(−exp((ln x − ln threshold)/width))
    for x > 0 (0 for x ≤ 0), i.e. the Weibull with scale ``threshold`` and shape 1/``width``.
    """
    x = np.asarray(z_or_x, dtype=float)
    if family == "logistic":
        return expit((x - threshold) / width)
    if family == "cumulative_normal":
        return ndtr((x - threshold) / width)
    if family == "weibull":
        with np.errstate(divide="ignore"):
            lx = np.log(np.maximum(x, 1e-12))
        return np.where(x > 0, -np.expm1(-np.exp((lx - math.log(threshold)) / width)), 0.0)
    raise ValueError(f"unknown psychometric family {family!r}; choose from {FAMILIES}")


@dataclass
class RaterProfile:
    """Parameters of one simulated rater (see the module docstring for the generative model)."""

    d_prime: float = 0.2          # authenticity sensitivity, real vs fully synthetic
    criterion: float = 0.0        # P("real") = Φ(c + d′·s + u); c > 0: tends to answer "real" (c = −c_classical)
    class_accuracy: float = 0.85  # P(correct class) on non-lapse trials, used when class_threshold is None
    meta_ratio: float = 0.8       # M = meta-d′/d′, both tasks
    confidence_levels: int = 4
    lapse: float = 0.02
    class_threshold: float | None = 0.15  # psychometric over the class evidence (model margin); None = constant
    class_width: float = 0.08
    class_family: str = "logistic"
    class_evidence: str = "model_margin"  # stimulus field used as the class-evidence axis
    confidence_step: float = 0.5  # spacing of the type-2 criteria (meta-evidence units)
    cannot_tell_rate: float = 0.0  # P('cannot_tell') on a non-lapse trial given at the lowest confidence level
    rt_median_ms: float = 2500.0

    def __post_init__(self) -> None:
        if self.confidence_levels < 2:
            raise ValueError("confidence_levels must be >= 2")
        if not 0 <= self.lapse < 1:
            raise ValueError("lapse must be in [0, 1)")
        if self.meta_ratio < 0:
            raise ValueError("meta_ratio must be >= 0")
        if self.class_family not in FAMILIES:
            raise ValueError(f"class_family must be one of {FAMILIES}")
        if not 0 < self.class_accuracy < 1:
            raise ValueError("class_accuracy must be in (0, 1)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class ModelProfile:
    """The simulated diffusion classifier."""

    quality_median: float = 3.0   # median β_i (separation of the true-class logit)
    quality_log_sd: float = 0.5
    temperature: float = 1.0      # 1 = calibrated
    anomaly_gain: float = 1.5     # ζ = gain·m + N(0, 1)


def morph_psychometric_truth(profile: RaterProfile, stimulus_sd: float) -> dict[str, float]:
    """True cumulative-normal psychometric parameters of P("synthetic" | morph strength) for ``profile``."""
    d, c = profile.d_prime, profile.criterion
    return {
        "threshold": 0.5 + c / d if d != 0 else float("nan"),
        "width": math.sqrt(1 + stimulus_sd**2) / d if d != 0 else float("nan"),
        "gamma": profile.lapse / 2,
        "lapse": profile.lapse / 2,
    }


def _trunc_normal(mu: float, lower: float | None, upper: float | None, rng: np.random.Generator) -> float:
    """One draw of N(mu, 1) restricted to (lower, upper) by inverse-CDF sampling."""
    lo = 0.0 if lower is None else ndtr(lower - mu)
    hi = 1.0 if upper is None else ndtr(upper - mu)
    if hi - lo < 1e-12:  # numerically all mass at the bound
        return float(lower if lower is not None else upper)
    u = lo + (hi - lo) * rng.random()
    u = min(max(u, 1e-15), 1 - 1e-15)
    return float(mu + ndtri(u))


def _level(dist_beyond: float, step: float, K: int) -> int:
    """Confidence level 1..K from how far the type-2 sample lies beyond the (meta) type-1 criterion."""
    return int(1 + min(K - 1, max(0, math.floor(dist_beyond / step)))) if dist_beyond > 0 else 1


def simulate_response(
    profile: RaterProfile,
    stimulus: Mapping[str, Any],
    classes: Sequence[str],
    rng: np.random.Generator,
    *,
    stimulus_effect: float | None = None,
) -> dict[str, Any]:
    """Simulate one rater's answers to one stimulus.

    ``stimulus`` needs ``source``, ``morph_strength``, ``true_class``; optionally ``stimulus_effect`` (u_i),
    the class-evidence field named by ``profile.class_evidence`` (default ``model_margin``) and
    ``model_prob_<class>`` (used to choose which wrong class is picked).
    Returns auth_response, auth_confidence_level, auth_confidence, class_response, class_confidence_level,
    class_confidence, auth_rt_ms, class_rt_ms.
    """
    K = int(profile.confidence_levels)
    C = len(classes)
    m = float(stimulus.get("morph_strength", 0.0 if stimulus["source"] == "real" else 1.0))
    u = float(stimulus_effect if stimulus_effect is not None else stimulus.get("stimulus_effect", 0.0) or 0.0)
    d, c, M, step = profile.d_prime, profile.criterion, profile.meta_ratio, profile.confidence_step
    true_class = str(stimulus["true_class"])

    # --- authenticity
    if rng.random() < profile.lapse:
        auth_response = "real" if rng.random() < 0.5 else "synthetic"
        auth_level = int(rng.integers(1, K + 1))
    else:
        mu = d * (0.5 - m) + u
        says_real = mu + rng.standard_normal() > -c
        auth_response = "real" if says_real else "synthetic"
        meta_c = -c  # HMeta-d: meta-c1 = c1 (M&L's meta-c′ = c′ would be −M·c)
        if says_real:
            x2 = _trunc_normal(M * mu, meta_c, None, rng)
            auth_level = _level(x2 - meta_c, step, K)
        else:
            x2 = _trunc_normal(M * mu, None, meta_c, rng)
            auth_level = _level(meta_c - x2, step, K)

    # --- classification
    gamma = 1.0 / C
    if rng.random() < profile.lapse:
        class_response = str(classes[int(rng.integers(C))])
        class_level = int(rng.integers(1, K + 1))
    else:
        ev = stimulus.get(profile.class_evidence)
        if profile.class_threshold is None or ev is None or (isinstance(ev, float) and math.isnan(ev)):
            q = profile.class_accuracy
        else:
            q = gamma + (1 - gamma) * float(
                psychometric_F(float(ev), profile.class_family, profile.class_threshold, profile.class_width))
        q = min(max(q, 1e-6), 1 - 1e-6)
        dt = 2.0 * float(ndtri(q))
        correct = dt / 2 + rng.standard_normal() > 0
        if correct:
            x2 = _trunc_normal(M * dt / 2, 0.0, None, rng)
            class_level = _level(x2, step, K)
        else:
            x2 = _trunc_normal(M * dt / 2, None, 0.0, rng)
            class_level = _level(-x2, step, K)
        if correct:
            class_response = true_class
        else:
            wrong = [k for k in classes if k != true_class]
            w = np.array([float(stimulus.get(f"{MODEL_PROB_PREFIX}{k}", 0.0) or 0.0) + 0.05 for k in wrong])
            class_response = str(wrong[int(rng.choice(len(wrong), p=w / w.sum()))])
        if class_level == 1 and profile.cannot_tell_rate > 0 and rng.random() < profile.cannot_tell_rate:
            class_response = "cannot_tell"

    auth_rt = float(np.exp(rng.normal(math.log(profile.rt_median_ms) - 0.12 * (auth_level - 1), 0.35)))
    class_rt = auth_rt + float(np.exp(rng.normal(math.log(0.6 * profile.rt_median_ms) - 0.1 * (class_level - 1), 0.35)))
    return {
        "auth_response": auth_response,
        "auth_confidence_level": auth_level,
        "auth_confidence": confidence_to_raw(auth_level, K, 0.5),
        "class_response": class_response,
        "class_confidence_level": class_level,
        "class_confidence": confidence_to_raw(class_level, K, gamma),
        "auth_rt_ms": round(auth_rt, 1),
        "class_rt_ms": round(class_rt, 1),
    }


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
    """Per-rater profiles drawn around the group ``profile`` (normal on d′, c, threshold; log-normal on M, width)."""
    sd = dict(_RATER_SD_DEFAULT)
    sd.update(rater_sd or {})
    out = []
    for _ in range(n_raters):
        kw = profile.to_dict()
        kw["d_prime"] = profile.d_prime + sd["d_prime"] * rng.standard_normal()
        kw["criterion"] = profile.criterion + sd["criterion"] * rng.standard_normal()
        kw["meta_ratio"] = profile.meta_ratio * math.exp(sd["log_meta_ratio"] * rng.standard_normal())
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
    t0 = pd.Timestamp("2025-01-01T09:00:00Z")
    recs = stimuli.to_dict("records")
    for r_i, prof in enumerate(raters):
        pid = f"r{r_i:02d}"
        role = "bot"
        years = float(rng.integers(1, 30))
        order = rng.permutation(n_stimuli)[:n_trials]
        seq: list[tuple[str, bool, dict]] = []
        for j in range(practice_trials):
            seq.append(("practice", False, recs[int(rng.integers(n_stimuli))]))
        main = [("main", False, recs[int(k)]) for k in order]
        if attention_checks:
            full = [s for s in recs if s["morph_strength"] in (0.0, 1.0)]
            for j in range(attention_checks):
                st = dict(full[int(rng.integers(len(full)))])
                st["stimulus_effect"] = 0.0
                st["stimulus_id"] = f"att{j:02d}_" + st["stimulus_id"]
                main.insert(int(rng.integers(len(main) + 1)), ("main", True, st))
        seq += main
        t = t0 + pd.Timedelta(hours=r_i)
        counters = {"practice": 0, "main": 0}
        for phase, is_att, st in seq:
            resp = simulate_response(prof if not is_att else dataclasses.replace(prof, d_prime=4.0), st, classes, rng)
            t = t + pd.Timedelta(milliseconds=resp["class_rt_ms"] + 800)
            idx = counters[phase]
            counters[phase] += 1
            row = {
                "study_id": study_id, "participant_id": pid, "participant_role": role, "years_experience": years,
                "trial_index": idx, "block": idx // 100 if phase == "main" else 0, "phase": phase,
                "is_attention_check": is_att, "stimulus_id": st["stimulus_id"], "source": st["source"],
                "morph_strength": st["morph_strength"], "true_class": st["true_class"],
                **resp, "confidence_levels": K, "responded_at": t,
                "model_pred_class": st["model_pred_class"], "model_confidence": st["model_confidence"],
                "model_margin": st["model_margin"], "model_anomaly": st["model_anomaly"],
            }
            for k in classes:
                row[f"{MODEL_PROB_PREFIX}{k}"] = st[f"{MODEL_PROB_PREFIX}{k}"]
            rows.append(row)
    df = pd.DataFrame(rows)
    from cytocore.schema import REQUIRED_COLUMNS
    cols = list(REQUIRED_COLUMNS) + [f"{MODEL_PROB_PREFIX}{k}" for k in classes]
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
