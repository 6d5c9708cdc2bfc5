"""The simulated rater, one trial at a time: what the study's simulated raters (:mod:`study_app.bots`) answer and
what the analysis's simulated studies (:mod:`analysis.simulate_study`) are made of. Pure Python and NumPy (the
normal distribution from :class:`statistics.NormalDist`), so simulated raters need neither SciPy nor the analysis.

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
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from statistics import NormalDist

import numpy as np

from .confidence import confidence_to_raw
from .schema import CANNOT_TELL, MODEL_PROB_PREFIX

__all__ = [
    "DEFAULT_CLASSES",
    "FAMILIES",
    "RaterProfile",
    "class_psychometric",
    "morph_psychometric_truth",
    "simulate_response",
]

DEFAULT_CLASSES: tuple[str, ...] = (
    "basophil", "eosinophil", "erythroblast", "ig", "lymphocyte", "monocyte", "neutrophil", "platelet",
)
FAMILIES = ("logistic", "cumulative_normal", "weibull")
_NORMAL = NormalDist()
_ndtr, _ndtri = _NORMAL.cdf, _NORMAL.inv_cdf   # Φ and Φ⁻¹


def _expit(z: float) -> float:
    try:
        return 1.0 / (1.0 + math.exp(-z))
    except OverflowError:   # e^(−z) beyond the float range: the sigmoid is 0
        return 0.0


def class_psychometric(x: float, family: str, threshold: float, width: float) -> float:
    """Sigmoid F of the class psychometric function ψ = γ + (1 − γ)·F at evidence ``x``.

    logistic / cumulative_normal: F((x − threshold)/width).  weibull: 1 − exp(−exp((ln x − ln threshold)/width))
    for x > 0 (0 for x ≤ 0), i.e. the Weibull with scale ``threshold`` and shape 1/``width``.
    """
    x = float(x)
    if family == "logistic":
        return _expit((x - threshold) / width)
    if family == "cumulative_normal":
        return _ndtr((x - threshold) / width)
    if family == "weibull":
        with np.errstate(divide="ignore"):
            lx = np.log(np.maximum(x, 1e-12))
        return float(np.where(x > 0, -np.expm1(-np.exp((lx - math.log(threshold)) / width)), 0.0))
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
    lo = 0.0 if lower is None else _ndtr(lower - mu)
    hi = 1.0 if upper is None else _ndtr(upper - mu)
    if hi - lo < 1e-12:  # numerically all mass at the bound
        return float(lower if lower is not None else upper)
    u = lo + (hi - lo) * rng.random()
    u = min(max(u, 1e-15), 1 - 1e-15)
    return float(mu + _ndtri(u))


def _level(dist_beyond: float, step: float, K: int) -> int:
    """Confidence level 1..K from how far the type-2 sample lies beyond the (meta) type-1 criterion."""
    return int(1 + min(K - 1, max(0, math.floor(dist_beyond / step)))) if dist_beyond > 0 else 1


def _auth_answer(profile: RaterProfile, m: float, u: float, K: int, rng: np.random.Generator) -> tuple[str, int]:
    """Answer and confidence level of one authenticity trial (a lapse: both uniformly random)."""
    if rng.random() < profile.lapse:
        return ("real" if rng.random() < 0.5 else "synthetic"), int(rng.integers(1, K + 1))
    d, c, M, step = profile.d_prime, profile.criterion, profile.meta_ratio, profile.confidence_step
    mu = d * (0.5 - m) + u
    says_real = mu + rng.standard_normal() > -c
    meta_c = -c  # HMeta-d: meta-c1 = c1 (M&L's meta-c′ = c′ would be −M·c)
    if says_real:
        x2 = _trunc_normal(M * mu, meta_c, None, rng)
        return "real", _level(x2 - meta_c, step, K)
    x2 = _trunc_normal(M * mu, None, meta_c, rng)
    return "synthetic", _level(meta_c - x2, step, K)


def _class_answer(profile: RaterProfile, stimulus: Mapping[str, Any], classes: Sequence[str], true_class: str, K: int,
                  rng: np.random.Generator) -> tuple[str, int]:
    """Class answer and confidence level of one trial: folded meta-SDT with d′_t = 2Φ⁻¹(q), q the psychometric
    P(correct) over the class evidence; a wrong answer picks a wrong class ∝ (model probability + 0.05)."""
    C = len(classes)
    if rng.random() < profile.lapse:
        return str(classes[int(rng.integers(C))]), int(rng.integers(1, K + 1))
    gamma, M, step = 1.0 / C, profile.meta_ratio, profile.confidence_step
    ev = stimulus.get(profile.class_evidence)
    if profile.class_threshold is None or ev is None or (isinstance(ev, float) and math.isnan(ev)):
        q = profile.class_accuracy
    else:
        q = gamma + (1 - gamma) * float(
            class_psychometric(float(ev), profile.class_family, profile.class_threshold, profile.class_width))
    q = min(max(q, 1e-6), 1 - 1e-6)
    dt = 2.0 * float(_ndtri(q))
    correct = dt / 2 + rng.standard_normal() > 0
    if correct:
        level = _level(_trunc_normal(M * dt / 2, 0.0, None, rng), step, K)
        response = true_class
    else:
        level = _level(-_trunc_normal(M * dt / 2, None, 0.0, rng), step, K)
        wrong = [k for k in classes if k != true_class]
        w = np.array([float(stimulus.get(f"{MODEL_PROB_PREFIX}{k}", 0.0) or 0.0) + 0.05 for k in wrong])
        response = str(wrong[int(rng.choice(len(wrong), p=w / w.sum()))])
    if level == 1 and profile.cannot_tell_rate > 0 and rng.random() < profile.cannot_tell_rate:
        response = CANNOT_TELL
    return response, level


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
    true_class = str(stimulus["true_class"])

    auth_response, auth_level = _auth_answer(profile, m, u, K, rng)
    gamma = 1.0 / C
    class_response, class_level = _class_answer(profile, stimulus, classes, true_class, K, rng)

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

