"""PyMC model builders: authenticity SDT, meta-d′, experts vs model.  Each takes prepared arrays (see
:mod:`analysis.prepare`) and returns ``(pm.Model, meanings)`` where ``meanings`` says what each parameter is; the
priors table of the report is generated from the model itself (:func:`analysis.fitting.prior_rows`), so it cannot
drift from the code.  Non-centred parameterisations throughout.  Psychometric functions: :mod:`analysis.psychometric`.

Φ is the standard normal CDF.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from .psychometric import PsychometricSpec, build_psychometric_model, psychometric_curve  # noqa: F401  (moved)

__all__ = [
    "build_difference_model",
    "build_metad_model",
    "build_sdt_model",
    "type1_point_estimates",
]


def Phi(x):
    return 0.5 * pt.erfc(-x / math.sqrt(2.0))


def _clip(p):
    return pt.clip(p, 1e-9, 1 - 1e-9)


# ---------------------------------------------------------------------------------------------------------------
# 1. authenticity as signal detection
# ---------------------------------------------------------------------------------------------------------------
def build_sdt_model(y: np.ndarray, s: np.ndarray, rater_idx: np.ndarray, stim_idx: np.ndarray,
                    raters: Sequence[str], stimuli: Sequence[str], *, stimulus_effects: bool = True
                    ) -> tuple[pm.Model, dict[str, str]]:
    """Hierarchical probit SDT model: P(answer "real") = Φ(c_r + d_r·s + u_i), s = +½ real, −½ synthetic.

    d_r ~ N(μ_d, σ_d), c_r ~ N(μ_c, σ_c) (independent), u_i ~ N(0, σ_u) stimulus effects ("looks real").
    Deterministics: per-rater accuracy (over the stimulus distribution), ``acc_typical`` (the group-mean rater)
    and ``acc_population`` (a random rater on a random image) — the latter is the study's headline accuracy:
        P(correct) = ½[Φ((μ_c + μ_d/2)/τ) + Φ((μ_d/2 − μ_c)/τ)],  τ² = 1 + σ_c² + σ_d²/4 + σ_u².
    """
    coords = {"rater": list(raters), "obs": np.arange(len(y))}
    if stimulus_effects:
        coords["stimulus"] = list(stimuli)
    priors = {
        "mu_d": "group d′ (real vs synthetic)",
        "mu_c": "group criterion (> 0: bias to answer 'real', i.e. conservative about 'synthetic')",
        "sigma_d": "between-rater SD of d′",
        "sigma_c": "between-rater SD of criterion",
    }
    with pm.Model(coords=coords) as model:
        mu_d = pm.Normal("mu_d", 0.0, 1.5)
        mu_c = pm.Normal("mu_c", 0.0, 1.0)
        sigma_d = pm.HalfNormal("sigma_d", 1.0)
        sigma_c = pm.HalfNormal("sigma_c", 1.0)
        z_d = pm.Normal("z_d", 0.0, 1.0, dims="rater")
        z_c = pm.Normal("z_c", 0.0, 1.0, dims="rater")
        d = pm.Deterministic("d", mu_d + sigma_d * z_d, dims="rater")
        c = pm.Deterministic("c", mu_c + sigma_c * z_c, dims="rater")
        eta = c[rater_idx] + d[rater_idx] * s
        var_u = 0.0
        if stimulus_effects:
            priors["sigma_stimulus"] = "SD of stimulus effects u_i (how real an image looks)"
            sigma_u = pm.HalfNormal("sigma_stimulus", 1.0)
            z_u = pm.Normal("z_u", 0.0, 1.0, dims="stimulus")
            eta = eta + sigma_u * z_u[stim_idx]
            var_u = sigma_u**2
        tau_r = pt.sqrt(1.0 + var_u)
        pm.Deterministic("accuracy", 0.5 * (Phi((c + d / 2) / tau_r) + Phi((d / 2 - c) / tau_r)), dims="rater")
        pm.Deterministic("acc_typical", 0.5 * (Phi((mu_c + mu_d / 2) / tau_r) + Phi((mu_d / 2 - mu_c) / tau_r)))
        tau = pt.sqrt(1.0 + sigma_c**2 + sigma_d**2 / 4 + var_u)
        pm.Deterministic("acc_population", 0.5 * (Phi((mu_c + mu_d / 2) / tau) + Phi((mu_d / 2 - mu_c) / tau)))
        pm.Bernoulli("said_real", p=_clip(Phi(eta)), observed=y.astype(int), dims="obs")
    return model, priors


# ---------------------------------------------------------------------------------------------------------------
# 3. meta-d′ (HMeta-d style, fully Bayesian over type-1 and type-2 parameters)
# ---------------------------------------------------------------------------------------------------------------
def _upper_bins(edges, mu):
    """P(x ∈ [e_j, e_{j+1})) for x ~ N(mu, 1), edges increasing, computed in the upper tail."""
    sf = Phi(-(edges - mu))  # survival function
    return sf[..., :-1] - sf[..., 1:]


def _lower_bins(edges, mu):
    """P(x ∈ (e_{j+1}, e_j]) for x ~ N(mu, 1), edges decreasing."""
    cdf = Phi(edges - mu)
    return cdf[..., :-1] - cdf[..., 1:]


def metad_probabilities(d, c1, M, inc_pos, inc_neg):
    """Response probabilities of the meta-d′ model (Maniscalco & Lau 2012) with HMeta-d's criterion convention.

    d, c1, M: shape (R,); inc_pos/inc_neg: (R, K−1) positive type-2 criterion increments beyond c1 on the
    "S2" and "S1" response sides.  Returns (p_S1, p_S2), each (R, 2K) in the HMeta-d order: answer S1 with
    confidence K..1, then answer S2 with confidence 1..K.

    The type-2 criteria start at meta-c1 = c1, as in HMeta-d (Fleming 2017), not at M&L's meta-c1 = M·c1
    ("meta-c′ = c′"): with d′ near 0 — experts at chance on authenticity, the case this toolkit expects — the
    product M·c1 couples the weakly identified M to the criteria and NUTS diverged (measured in docs/analysis.md).
    """
    big = 40.0
    meta_d = M * d
    mc = c1[:, None]  # meta-c1 = c1
    edges_pos = pt.concatenate([mc, mc + pt.cumsum(inc_pos, axis=1), pt.full_like(mc, big) + mc], axis=1)
    edges_neg = pt.concatenate([mc, mc - pt.cumsum(inc_neg, axis=1), mc - pt.full_like(mc, big)], axis=1)
    out = []
    for sign in (-1.0, 1.0):
        mu = sign * d / 2
        mmu = (sign * meta_d / 2)[:, None]
        p_r1 = Phi(c1 - mu)[:, None]
        p_r2 = Phi(mu - c1)[:, None]
        up = pt.maximum(_upper_bins(edges_pos, mmu), 1e-12)
        dn = pt.maximum(_lower_bins(edges_neg, mmu), 1e-12)
        up = up / up.sum(axis=1, keepdims=True)
        dn = dn / dn.sum(axis=1, keepdims=True)
        p = pt.concatenate([p_r1 * dn[:, ::-1], p_r2 * up], axis=1)
        p = pt.maximum(p, 1e-12)
        out.append(p / p.sum(axis=1, keepdims=True))
    return out[0], out[1]


def type1_point_estimates(counts_S1: np.ndarray | None, counts_S2: np.ndarray, K: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-rater d′ and c1 from the type-1 part of HMeta-d counts, each cell padded by 1/(2K) (HMeta-d's
    ``padAmount``) so that a rater with no false alarms or no misses still gets a finite d′.

    Folded counts (``counts_S1`` None): the observer is taken as unbiased, d′ = 2Φ⁻¹(accuracy), c1 = 0.
    """
    from .mle import type1_sdt
    counts_S2 = np.asarray(counts_S2, float)
    counts_S1 = counts_S2[:, ::-1] if counts_S1 is None else np.asarray(counts_S1, float)
    est = np.array([type1_sdt(a, b, pad=1.0 / (2 * K)) for a, b in zip(counts_S1, counts_S2)])
    return est[:, 0], est[:, 1]


def build_metad_model(counts_S1: np.ndarray | None, counts_S2: np.ndarray, raters: Sequence[str], K: int, *,
                      hierarchical: bool = True, folded: bool = False) -> tuple[pm.Model, dict[str, str]]:
    """Meta-d′ model over raters, as HMeta-d's default group model (Fleming 2017).

    Unfolded (a two-choice task such as authenticity, S1 = synthetic, S2 = real): ``counts_S1``/``counts_S2`` are
    (R, 2K) counts in the HMeta-d order for S1 and S2 stimuli.  Folded (correct/incorrect of a many-choice task such
    as classification): ``counts_S2`` is (R, 2K) with "incorrect, confidence K..1" then "correct, confidence
    1..K"; the observer is treated as unbiased (c1 = 0) with symmetric type-2 criteria, so d′ = 2Φ⁻¹(accuracy)
    is the two-choice-equivalent sensitivity and meta-d′ the sensitivity that explains the type-2 ROC.

    d′ and c1 are held at their type-1 point estimates (:func:`type1_point_estimates`) and meta-c1 = c1, as in
    HMeta-d; log M_r is hierarchical (normal, non-centred) and meta-d′_r = M_r·d′_r; K−1 type-2 criteria per
    response side per rater.  Why: with d′ near 0 (experts at chance) the old form — d′ and c1 estimated jointly,
    meta-c1 = M·c1 — diverged in every run on the report's simulated study, and fixing d′ alone did not cure it
    (docs/analysis.md, *Meta-d′ robustness*); d′ itself is estimated, with its uncertainty, by the SDT model.
    M-ratio is only interpretable where d′ is clearly above 0.
    """
    counts_S2 = np.asarray(counts_S2, int)
    d_hat, c_hat = type1_point_estimates(counts_S1, counts_S2, K)
    coords = {"rater": list(raters), "bin": np.arange(2 * K), "criterion": np.arange(1, K)}
    priors = {"d, c1": "type-1 point estimates per rater (counts padded by 1/(2K)), held fixed as in HMeta-d"
                       + ("; c1 = 0 (folded)" if folded else "")}
    with pm.Model(coords=coords) as model:
        d = pm.Deterministic("d", pt.as_tensor_variable(d_hat), dims="rater")
        c1 = pt.zeros((len(d_hat),)) if folded else pm.Deterministic("c1", pt.as_tensor_variable(c_hat), dims="rater")
        if hierarchical:
            mu_lm = pm.Normal("mu_log_M", 0.0, 1.0)
            sigma_lm = pm.HalfNormal("sigma_log_M", 1.0)
            logM = mu_lm + sigma_lm * pm.Normal("z_log_M", 0, 1, dims="rater")
            pm.Deterministic("group_M", pt.exp(mu_lm))
            priors.update({"mu_log_M": "group log M-ratio (HMeta-d)",
                           "sigma_log_M": "between-rater SD of log M-ratio"})
        else:
            logM = pm.Normal("log_M", 0.0, 1.0, dims="rater")
            priors["log_M"] = "log M-ratio"
        M = pm.Deterministic("M", pt.exp(logM), dims="rater")
        pm.Deterministic("meta_d", M * d, dims="rater")
        lin_pos = pm.Normal("log_inc_pos", math.log(0.5), 1.0, dims=("rater", "criterion"))
        inc_pos = pt.exp(lin_pos)
        if folded:
            inc_neg = inc_pos
        else:
            inc_neg = pt.exp(pm.Normal("log_inc_neg", math.log(0.5), 1.0, dims=("rater", "criterion")))
        priors["log_inc_pos"] = ("log spacing of the type-2 criteria beyond c1 per rater, answer 'S2' side"
                                 + (" (and, symmetric, the other side)" if folded else ""))
        if not folded:
            priors["log_inc_neg"] = "log spacing of the type-2 criteria beyond c1 per rater, answer 'S1' side"
        pS1, pS2 = metad_probabilities(d, c1, M, inc_pos, inc_neg)
        if not folded:
            cS1 = np.asarray(counts_S1, int)
            pm.Multinomial("counts_S1", n=cS1.sum(axis=1), p=pS1, observed=cS1, dims=("rater", "bin"))
        pm.Multinomial("counts_S2", n=counts_S2.sum(axis=1), p=pS2, observed=counts_S2, dims=("rater", "bin"))
    return model, priors


# ---------------------------------------------------------------------------------------------------------------
# 4. human vs model on the same stimuli
# ---------------------------------------------------------------------------------------------------------------
def build_difference_model(y_h: np.ndarray, rater_idx: np.ndarray, stim_idx_h: np.ndarray, y_m: np.ndarray,
                           stim_idx_m: np.ndarray, raters: Sequence[str], stimuli: Sequence[str]
                           ) -> tuple[pm.Model, dict[str, str]]:
    """Probit model of correctness with shared stimulus difficulty.

    human:  P(correct) = Φ(α + a_r + b_i);   model:  P(correct) = Φ(α + δ + b_i)
    a_r ~ N(0, σ_r), b_i ~ N(0, σ_b).  Population accuracies: experts Φ(α/√(1 + σ_r² + σ_b²)), model
    Φ((α + δ)/√(1 + σ_b²)); ``difference`` = model − experts on the probability scale.
    """
    coords = {"rater": list(raters), "stimulus": list(stimuli)}
    priors = {"alpha": "experts' probit accuracy", "delta": "model − experts (probit scale)",
              "sigma_rater": "between-rater SD of probit accuracy",
              "sigma_stimulus": "SD of stimulus difficulty, shared by experts and model"}
    with pm.Model(coords=coords) as model:
        alpha = pm.Normal("alpha", 0.0, 1.5)
        delta = pm.Normal("delta", 0.0, 1.5)
        s_r = pm.HalfNormal("sigma_rater", 1.0)
        s_b = pm.HalfNormal("sigma_stimulus", 1.0)
        a = s_r * pm.Normal("z_rater", 0, 1, dims="rater")
        b = s_b * pm.Normal("z_stimulus", 0, 1, dims="stimulus")
        acc_h = pm.Deterministic("acc_experts", Phi(alpha / pt.sqrt(1 + s_r**2 + s_b**2)))
        acc_m = pm.Deterministic("acc_model", Phi((alpha + delta) / pt.sqrt(1 + s_b**2)))
        pm.Deterministic("difference", acc_m - acc_h)
        pm.Bernoulli("correct_experts", p=_clip(Phi(alpha + a[rater_idx] + b[stim_idx_h])), observed=y_h.astype(int))
        pm.Bernoulli("correct_model", p=_clip(Phi(alpha + delta + b[stim_idx_m])), observed=y_m.astype(int))
    return model, priors
