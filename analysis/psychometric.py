"""Psychometric functions: the yes/no SDT model of the morph curve, and the ψ form for forced-choice designs.

Which form is for which design:

* **yes/no** (the real-or-synthetic judgement: one image, answer "real" or "synthetic") —
  :func:`build_morph_sdt_model`. Sensitivity grows with morph strength, the criterion does not: the curve starts
  at the rater's false-alarm rate (a real image, strength 0) and tops out at the hit rate for fully synthetic
  images, which for a rater who cannot fully tell stays well below 1 (Macmillan & Creelman, *Detection Theory*,
  psychometric functions in yes/no designs; Kingdom & Prins, *Psychophysics*).
* **forced choice / correctness** (P(correct) from a guess rate to 1 − lapse: m-AFC, or the class answer
  against the model's evidence) — :func:`build_psychometric_model`, ψ = γ + (1 − γ − λ)·F((x − t)/w).

Both return ``(pm.Model, meanings)``; the priors table is generated from the model (``fitting.prior_rows``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from scipy.special import expit, logit, ndtr, ndtri

__all__ = ["MORPH_FAMILIES", "PsychometricSpec", "build_morph_sdt_model", "build_psychometric_model",
           "morph_sdt_curve", "psychometric_curve"]

MORPH_FAMILIES = ("cumulative_normal", "logistic")


def Phi(x):
    return 0.5 * pt.erfc(-x / math.sqrt(2.0))


def _clip(p):
    return pt.clip(p, 1e-9, 1 - 1e-9)


# ---------------------------------------------------------------------------------------------------------------
# yes/no: d′(s) grows with strength, one criterion per rater
# ---------------------------------------------------------------------------------------------------------------
def _F_pt(z, family):
    return Phi(z) if family == "cumulative_normal" else pm.math.sigmoid(z)


def _Finv_pt(p, family):
    return math.sqrt(2.0) * pt.erfinv(2 * p - 1) if family == "cumulative_normal" else pt.log(p) - pt.log1p(-p)


def _quantile_strength(loc, scale, q, family, F0, F1):
    """Strength at which d′ reaches the share q of d′_max."""
    return loc + scale * _Finv_pt(F0 + q * (F1 - F0), family)


def build_morph_sdt_model(x: np.ndarray, k: np.ndarray, n: np.ndarray, rater_idx: np.ndarray,
                          raters: Sequence[str], family: str = "cumulative_normal"
                          ) -> tuple[pm.Model, dict[str, str]]:
    """Yes/no SDT over morph strength: ``k`` 'synthetic' answers of ``n`` at strength ``x`` (0 = real image).

    Rater r's sensitivity to an image of strength s is d′_r(s) = d′max_r · g_r(s) with
    g_r(s) = [F((s − ℓ_r)/σ_r) − F(−ℓ_r/σ_r)] / [F((1 − ℓ_r)/σ_r) − F(−ℓ_r/σ_r)], i.e. F((s − ℓ)/σ) rescaled so
    that d′(0) = 0 (a real image is not distinguishable from a real image) and d′(1) = d′max (d′max is the
    sensitivity to a fully synthetic image, the quantity the SDT model estimates). Evidence for "real" is centred
    on d′max/2 − d′(s), so

        P("synthetic" | s) = Φ(d′max·(g(s) − ½) − c),

    with one criterion c per rater for every strength, real images included, and c > 0 = a bias to answer "real"
    (conservative about "synthetic"; with "synthetic" as the signal this is Macmillan & Creelman's c, and it is
    the SDT model's c). Reported: ``threshold`` = the strength at which d′ reaches half of d′max, ``width`` =
    the strength from 25 % to 75 % of d′max, ``d_max``, ``c`` — per rater and for the group (the typical rater,
    ``group_*``). Hierarchical (non-centred): d′max_r, c_r normal; logit ℓ_r, log σ_r normal. A rater at chance
    (d′max ≈ 0) leaves threshold and width to the group prior — their intervals then say so.
    """
    if family not in MORPH_FAMILIES:
        raise ValueError(f"unknown morph family {family!r}; use one of {MORPH_FAMILIES}")
    x = np.asarray(x, float)
    r = np.asarray(rater_idx, int)
    meanings = {
        "mu_dmax": "group d′ for fully synthetic images (strength 1)",
        "sigma_dmax": "between-rater SD of d′max",
        "mu_c": "group criterion (> 0: bias to answer 'real')",
        "sigma_c": "between-rater SD of the criterion",
        "mu_logit_location": "group location ℓ of F on the strength axis (logit scale)",
        "sigma_logit_location": "between-rater SD of logit ℓ",
        "mu_log_scale": "group log scale σ of F (strength units)",
        "sigma_log_scale": "between-rater SD of log σ",
    }
    with pm.Model(coords={"rater": list(raters)}) as model:
        def hier(name, mu_prior, sd_prior):
            mu = pm.Normal(f"mu_{name}", *mu_prior)
            sd = pm.HalfNormal(f"sigma_{name}", sd_prior)
            return mu, mu + sd * pm.Normal(f"z_{name}", 0.0, 1.0, dims="rater")

        mu_d, d_max = hier("dmax", (0.0, 1.5), 1.0)
        mu_c, c = hier("c", (0.0, 1.0), 1.0)
        mu_l, logit_loc = hier("logit_location", (0.0, 1.5), 1.0)
        mu_s, log_scale = hier("log_scale", (math.log(0.15), 1.0), 0.5)
        d_max = pm.Deterministic("d_max", d_max, dims="rater")
        c = pm.Deterministic("c", c, dims="rater")
        loc = pm.Deterministic("location", pm.math.sigmoid(logit_loc), dims="rater")
        scale = pm.Deterministic("scale", pt.exp(log_scale), dims="rater")

        def curve_parts(l, s):
            return _F_pt(-l / s, family), _F_pt((1 - l) / s, family)

        F0, F1 = curve_parts(loc, scale)
        g = (_F_pt((x - loc[r]) / scale[r], family) - F0[r]) / (F1[r] - F0[r])
        p_syn = Phi(d_max[r] * (g - 0.5) - c[r])
        for prefix, (l, s, F0_, F1_), dims in (
                ("", (loc, scale, F0, F1), "rater"),
                ("group_", (pm.math.sigmoid(mu_l), pt.exp(mu_s)) + curve_parts(pm.math.sigmoid(mu_l),
                                                                               pt.exp(mu_s)), None)):
            q = {p: _quantile_strength(l, s, p, family, F0_, F1_) for p in (0.25, 0.5, 0.75)}
            pm.Deterministic(f"{prefix}threshold", q[0.5], dims=dims)
            pm.Deterministic(f"{prefix}width", q[0.75] - q[0.25], dims=dims)
        pm.Binomial("k", n=np.asarray(n, int), p=_clip(p_syn), observed=np.asarray(k, int))
    return model, meanings


def morph_sdt_curve(s, d_max, c, location, scale, family: str = "cumulative_normal") -> np.ndarray:
    """NumPy P('synthetic' | s) of :func:`build_morph_sdt_model`; parameters are arrays of draws (n,), result
    (n, len(s))."""
    F = ndtr if family == "cumulative_normal" else expit
    s = np.asarray(s, float)[None, :]
    d, c, l, w = (np.asarray(v, float)[:, None] for v in (d_max, c, location, scale))
    F0, F1 = F(-l / w), F((1 - l) / w)
    g = (F((s - l) / w) - F0) / (F1 - F0)
    return ndtr(d * (g - 0.5) - c)


def morph_sdt_threshold(d_share: float, location, scale, family: str = "cumulative_normal") -> np.ndarray:
    """NumPy strength at which d′ reaches ``d_share`` of d′max (0.5: the threshold)."""
    F, Finv = (ndtr, ndtri) if family == "cumulative_normal" else (expit, logit)
    l, w = np.asarray(location, float), np.asarray(scale, float)
    F0, F1 = F(-l / w), F((1 - l) / w)
    return l + w * Finv(F0 + d_share * (F1 - F0))


# ---------------------------------------------------------------------------------------------------------------
# forced choice / correctness: ψ = γ + (1 − γ − λ)·F
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class PsychometricSpec:
    """ψ(x) = γ + (1 − γ − λ)·F((x − threshold)/width) — for P(correct) in forced-choice designs.

    family: "logistic", "cumulative_normal" or "weibull" (F = 1 − exp(−exp((ln x − ln threshold)/width))).
    gamma: a number (fixed guess rate, e.g. 1/n_classes for classification) or "free" (Beta(1, 20) prior).
    lapse: "free" (Beta(1, 20), shared by all raters) or a number.
    """

    family: str = "logistic"
    gamma: float | str = "free"
    lapse: float | str = "free"

    def describe(self) -> str:
        g = f"γ = {self.gamma:.3g} (fixed)" if not isinstance(self.gamma, str) else "γ free"
        l = f"λ = {self.lapse:.3g} (fixed)" if not isinstance(self.lapse, str) else "λ free"
        return f"{self.family}, {g}, {l}"


def build_psychometric_model(x: np.ndarray, k: np.ndarray, n: np.ndarray, rater_idx: np.ndarray | None,
                             raters: Sequence[str], spec: PsychometricSpec, *, hierarchical: bool = True,
                             x_range: tuple[float, float] | None = None) -> tuple[pm.Model, dict[str, str]]:
    """ψ-form psychometric function fitted to ``k`` successes out of ``n`` at stimulus values ``x``.

    Sampled in intercept–slope form, F(α + β·z) with z = (x − centre)/span of the x range (for the Weibull
    z = ln x − ln centre), and reported as threshold = x where α + β·z = 0 and width = span/β (Weibull: 1/β on
    the log axis), i.e. exactly ψ(x) = γ + (1 − γ − λ)·F((x − threshold)/width).  Why this form: an observer at
    chance has a flat curve, β ≈ 0, where threshold and width run off to infinity together — a ridge that NUTS
    cannot sample (divergences, R-hat > 1.01) — while α and β stay well behaved; threshold and width then
    honestly come out with very wide intervals.

    Hierarchical: α_r ~ N(μ_α, σ_α), β_r ~ N(μ_β, σ_β) (non-centred), ``group_threshold``/``group_width`` from
    (μ_α, μ_β); γ and λ shared.  Non-hierarchical (one observer, e.g. the model): one α and β.
    """
    lo, hi = x_range if x_range is not None else (float(np.min(x)), float(np.max(x)))
    span = max(hi - lo, 1e-3)
    mid = lo + span / 2
    weib = spec.family == "weibull"
    if weib and lo < 0:
        raise ValueError("the Weibull psychometric function needs non-negative stimulus values")
    if spec.family not in ("logistic", "cumulative_normal", "weibull"):
        raise ValueError(f"unknown psychometric family {spec.family!r}")
    x = np.asarray(x, float)
    if weib:
        centre, scale = math.log(max(mid, 1e-3)), 1.0
        z = np.log(np.maximum(x, 1e-9)) - centre
    else:
        centre, scale = mid, span
        z = (x - mid) / span
    coords = {"rater": list(raters)} if hierarchical else {}
    axis = "ln x − ln %.3g" % max(mid, 1e-3) if weib else "(x − %.3g)/%.3g" % (mid, span)
    meanings: dict[str, str] = {}

    def to_threshold(a, b):
        t = centre - a * scale / b
        return pt.exp(t) if weib else t

    with pm.Model(coords=coords) as model:
        if hierarchical:
            mu_a = pm.Normal("mu_intercept", 0.0, 1.5)
            mu_b = pm.Normal("mu_slope", 2.0, 5.0)
            sigma_a = pm.HalfNormal("sigma_intercept", 1.0)
            sigma_b = pm.HalfNormal("sigma_slope", 2.5)
            a = pm.Deterministic("intercept", mu_a + sigma_a * pm.Normal("z_intercept", 0, 1, dims="rater"),
                                 dims="rater")
            b = pm.Deterministic("slope", mu_b + sigma_b * pm.Normal("z_slope", 0, 1, dims="rater"), dims="rater")
            pm.Deterministic("group_threshold", to_threshold(mu_a, mu_b))
            pm.Deterministic("group_width", scale / mu_b)
            eta = a[rater_idx] + b[rater_idx] * z
            meanings.update({
                "mu_intercept": f"group F⁻¹(ψ) at the centre of the axis z = {axis}",
                "mu_slope": "group slope per unit of z (0 = an observer at chance)",
                "sigma_intercept": "between-rater SD of the intercept",
                "sigma_slope": "between-rater SD of the slope"})
        else:
            a = pm.Normal("intercept", 0.0, 1.5)
            b = pm.Normal("slope", 2.0, 5.0)
            eta = a + b * z
            meanings.update({"intercept": f"F⁻¹(ψ) at the centre of the axis z = {axis}",
                             "slope": "slope per unit of z (0 = at chance)"})
        pm.Deterministic("threshold", to_threshold(a, b), dims="rater" if hierarchical else None)
        pm.Deterministic("width", scale / b, dims="rater" if hierarchical else None)
        if isinstance(spec.gamma, str):
            gamma = pm.Beta("gamma", 1.0, 20.0)
            meanings["gamma"] = "guess rate (lower asymptote)"
        else:
            gamma = pt.as_tensor_variable(float(spec.gamma))
        if isinstance(spec.lapse, str):
            lapse = pm.Beta("lapse", 1.0, 20.0)
            meanings["lapse"] = "lapse rate (1 − upper asymptote − γ)"
        else:
            lapse = pt.as_tensor_variable(float(spec.lapse))
        if spec.family == "logistic":
            F = pm.math.sigmoid(eta)
        elif spec.family == "cumulative_normal":
            F = Phi(eta)
        else:  # Weibull: 1 − exp(−exp((ln x − ln t)/w)); x = 0 gives F = 0
            F = pt.switch(pt.as_tensor_variable(x > 0), -pt.expm1(-pt.exp(eta)), 0.0)
        psi = gamma + (1 - gamma - lapse) * F
        pm.Binomial("k", n=np.asarray(n, int), p=_clip(psi), observed=np.asarray(k, int))
    return model, meanings


def psychometric_curve(x, threshold, width, gamma, lapse, family: str) -> np.ndarray:
    """NumPy ψ(x) for plotting; parameters may be arrays of draws (broadcast against x[None])."""
    from .simulate import psychometric_F
    x = np.asarray(x, float)[None, :]
    t = np.asarray(threshold, float)[:, None]
    w = np.asarray(width, float)[:, None]
    g = np.broadcast_to(np.asarray(gamma, float), t.shape[:1])[:, None]
    l = np.broadcast_to(np.asarray(lapse, float), t.shape[:1])[:, None]
    if family == "weibull":
        with np.errstate(divide="ignore", invalid="ignore"):
            F = np.where(x > 0, -np.expm1(-np.exp((np.log(np.maximum(x, 1e-12)) - np.log(t)) / w)), 0.0)
    else:
        F = psychometric_F((x - t) / w, family, 0.0, 1.0)
    return g + (1 - g - l) * F
