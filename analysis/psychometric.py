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


DISPERSIONS = ("none", "stimulus", "betabinomial")


def _hier(name: str, mu_prior: tuple[float, float], sd_prior: float):
    """Group mean, and per-rater values mean + SD·z (non-centred)."""
    mu = pm.Normal(f"mu_{name}", *mu_prior)
    sd = pm.HalfNormal(f"sigma_{name}", sd_prior)
    return mu, mu + sd * pm.Normal(f"z_{name}", 0.0, 1.0, dims="rater")


def _stimulus_effect(meanings: dict[str, str], what: str):
    """(σ, σ·z_i per stimulus) (non-centred); ``stimulus_idx`` must be in the model."""
    sigma = pm.HalfNormal("sigma_stimulus", 1.0)
    meanings["sigma_stimulus"] = f"SD of the stimulus effects ({what})"
    return sigma, sigma * pm.Normal("z_stimulus", 0.0, 1.0, dims="stimulus")


def _binomial(name: str, p, k, n, dispersion: str, meanings: dict[str, str]):
    """The observed counts: Binomial, or beta-binomial with overdispersion η (psignifit 4's: the variance of a cell
    of n trials is n·p(1 − p)·(1 + (n − 1)·η²), η ~ Beta(1, 9))."""
    if dispersion == "betabinomial":
        eta = pm.Beta("eta", 1.0, 9.0)
        meanings["eta"] = "overdispersion η (0 = binomial; psignifit 4's beta-binomial)"
        kappa = 1.0 / eta**2 - 1.0
        p = _clip(p)
        return pm.BetaBinomial(name, n=n, alpha=p * kappa, beta=(1 - p) * kappa, observed=k, dims="obs")
    return pm.Binomial(name, n=n, p=_clip(p), observed=k, dims="obs")


MORPH_MEANINGS = {
    "mu_dmax": "group d′ for fully synthetic images (strength 1)",
    "sigma_dmax": "between-rater SD of d′max",
    "mu_c": "group criterion (> 0: bias to answer 'real')",
    "sigma_c": "between-rater SD of the criterion",
    "mu_logit_location": "group location ℓ of F on the strength axis (logit scale)",
    "sigma_logit_location": "between-rater SD of logit ℓ",
    "mu_log_scale": "group log scale σ of F (strength units)",
    "sigma_log_scale": "between-rater SD of log σ",
}


def _morph_quantiles(loc, scale, mu_l, mu_s, family: str) -> None:
    """Deterministics threshold / width per rater and for the group (typical rater)."""
    def curve_parts(l, s):
        return _F_pt(-l / s, family), _F_pt((1 - l) / s, family)

    for prefix, (l, s), dims in (("", (loc, scale), "rater"),
                                 ("group_", (pm.math.sigmoid(mu_l), pt.exp(mu_s)), None)):
        F0_, F1_ = curve_parts(l, s)
        q = {p: _quantile_strength(l, s, p, family, F0_, F1_) for p in (0.25, 0.5, 0.75)}
        pm.Deterministic(f"{prefix}threshold", q[0.5], dims=dims)
        pm.Deterministic(f"{prefix}width", q[0.75] - q[0.25], dims=dims)


def build_morph_sdt_model(x: np.ndarray, k: np.ndarray, n: np.ndarray, rater_idx: np.ndarray,
                          raters: Sequence[str], family: str = "cumulative_normal", *,
                          dispersion: str = "none", stimulus_idx: np.ndarray | None = None,
                          stimuli: Sequence[str] | None = None, obs_ids: Sequence[str] | None = None
                          ) -> tuple[pm.Model, dict[str, str]]:
    """Yes/no SDT over morph strength: ``k`` 'synthetic' answers of ``n`` at strength ``x`` (0 = real image).

    Rater r's sensitivity to an image of strength s is d′_r(s) = d′max_r · g_r(s) with
    g_r(s) = [F((s − ℓ_r)/σ_r) − F(−ℓ_r/σ_r)] / [F((1 − ℓ_r)/σ_r) − F(−ℓ_r/σ_r)], i.e. F((s − ℓ)/σ) rescaled so
    that d′(0) = 0 (a real image is not distinguishable from a real image) and d′(1) = d′max (d′max is the
    sensitivity to a fully synthetic image, the quantity the SDT model estimates). Evidence for "real" is centred
    on d′max/2 − d′(s), so

        P("synthetic" | s) = Φ(d′max·(g(s) − ½) − c),

    marginal over the images: with stimulus effects the answer to image i is Φ(√(1 + σ_u²)·(d′max·(g(s) − ½) − c)
    + u_i), so d′max and c are those of the SDT model (also marginal) and σ_u does not trade off against their scale
    (the ridge that left the SDT fit unconverged). One criterion c per rater for every strength, real images
    included, and c > 0 = a bias to answer "real" (conservative about "synthetic"; with "synthetic" as the signal
    this is Macmillan & Creelman's c, and it is the SDT model's c). Reported: ``threshold`` = the strength at which d′ reaches half of d′max, ``width`` =
    the strength from 25 % to 75 % of d′max, ``d_max``, ``c`` — per rater and for the group (the typical rater,
    ``group_*``). Hierarchical (non-centred): d′max_r, c_r normal; logit ℓ_r, log σ_r normal. A rater at chance
    (d′max ≈ 0) leaves threshold and width to the group prior — their intervals then say so.

    Stimulus difficulty (``dispersion``): ``"stimulus"`` — one answer per row (n = 1) with ``stimulus_idx``, and a
    stimulus effect u_i ~ N(0, σ_u) on the evidence (images differ in how synthetic they look, the same image for
    every rater); ``"betabinomial"`` — counts per rater and strength with psignifit 4's overdispersion η;
    ``"none"`` — binomial counts.
    """
    if family not in MORPH_FAMILIES:
        raise ValueError(f"unknown morph family {family!r}; use one of {MORPH_FAMILIES}")
    if dispersion not in DISPERSIONS:
        raise ValueError(f"unknown dispersion {dispersion!r}; use one of {DISPERSIONS}")
    if dispersion == "stimulus" and (stimulus_idx is None or stimuli is None):
        raise ValueError("dispersion='stimulus' needs stimulus_idx and stimuli (one row per answer)")
    meanings = dict(MORPH_MEANINGS)
    coords = {"rater": list(raters), "obs": list(obs_ids) if obs_ids is not None else list(range(len(x)))}
    if dispersion == "stimulus":
        coords["stimulus"] = list(stimuli)
    # the curve is evaluated once per rater × strength cell and indexed per answer (the costly F calls scale with the
    # cells, not with the answers)
    x = np.asarray(x, float)
    rater_idx = np.asarray(rater_idx, int)
    cells, cell_idx = np.unique(np.c_[rater_idx, x], axis=0, return_inverse=True)
    coords["cell"] = [f"{raters[int(r)]}@{v:g}" for r, v in cells]
    with pm.Model(coords=coords) as model:
        xs = pm.Data("strength", cells[:, 1], dims="cell")
        r = pm.Data("rater_idx", cells[:, 0].astype(int), dims="cell")
        ci = pm.Data("cell_idx", cell_idx.ravel().astype(int), dims="obs")
        mu_d, d_max = _hier("dmax", (0.0, 1.5), 1.0)
        mu_c, c = _hier("c", (0.0, 1.0), 1.0)
        mu_l, logit_loc = _hier("logit_location", (0.0, 1.5), 1.0)
        mu_s, log_scale = _hier("log_scale", (math.log(0.15), 1.0), 0.5)
        d_max = pm.Deterministic("d_max", d_max, dims="rater")
        c = pm.Deterministic("c", c, dims="rater")
        loc = pm.Deterministic("location", pm.math.sigmoid(logit_loc), dims="rater")
        scale = pm.Deterministic("scale", pt.exp(log_scale), dims="rater")
        F0, F1 = _F_pt(-loc / scale, family), _F_pt((1 - loc) / scale, family)
        g = (_F_pt((xs - loc[r]) / scale[r], family) - F0[r]) / (F1[r] - F0[r])
        eta = (d_max[r] * (g - 0.5) - c[r])[ci]
        if dispersion == "stimulus":   # d′ and c marginal over the images, as in the SDT model
            sigma_u, u = _stimulus_effect(meanings, "on the evidence for 'synthetic': some images look more synthetic")
            eta = pt.sqrt(1.0 + sigma_u**2) * eta + u[pm.Data("stimulus_idx", np.asarray(stimulus_idx, int),
                                                              dims="obs")]
        _morph_quantiles(loc, scale, mu_l, mu_s, family)
        _binomial("k", Phi(eta), np.asarray(k, int), np.asarray(n, int), dispersion, meanings)
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


def _psi_axis(x: np.ndarray, family: str, x_range: tuple[float, float] | None):
    """The standardised axis z of the intercept–slope form: (z, centre, scale, description)."""
    lo, hi = x_range if x_range is not None else (float(np.min(x)), float(np.max(x)))
    span = max(hi - lo, 1e-3)
    mid = lo + span / 2
    if family == "weibull":
        if lo < 0:
            raise ValueError("the Weibull psychometric function needs non-negative stimulus values")
        centre = math.log(max(mid, 1e-3))
        return (np.log(np.maximum(x, 1e-9)) - centre, centre, 1.0, "ln x − ln %.3g" % max(mid, 1e-3))
    return (x - mid) / span, mid, span, "(x − %.3g)/%.3g" % (mid, span)


def _psi_slopes(hierarchical: bool, axis: str, meanings: dict[str, str], r):
    """Intercept and slope per rater (hierarchical, non-centred) or of one observer; returns (a, b, a[r], b[r],
    group (μ_α, μ_β) or None)."""
    if not hierarchical:
        a = pm.Normal("intercept", 0.0, 1.5)
        b = pm.Normal("slope", 2.0, 5.0)
        meanings.update({"intercept": f"F⁻¹(ψ) at the centre of the axis z = {axis}",
                         "slope": "slope per unit of z (0 = at chance)"})
        return a, b, a, b, None
    mu_a = pm.Normal("mu_intercept", 0.0, 1.5)
    mu_b = pm.Normal("mu_slope", 2.0, 5.0)
    sigma_a = pm.HalfNormal("sigma_intercept", 1.0)
    sigma_b = pm.HalfNormal("sigma_slope", 2.5)
    a = pm.Deterministic("intercept", mu_a + sigma_a * pm.Normal("z_intercept", 0, 1, dims="rater"), dims="rater")
    b = pm.Deterministic("slope", mu_b + sigma_b * pm.Normal("z_slope", 0, 1, dims="rater"), dims="rater")
    meanings.update({
        "mu_intercept": f"group F⁻¹(ψ) at the centre of the axis z = {axis}",
        "mu_slope": "group slope per unit of z (0 = an observer at chance)",
        "sigma_intercept": "between-rater SD of the intercept",
        "sigma_slope": "between-rater SD of the slope"})
    return a, b, a[r], b[r], (mu_a, mu_b)


def _psi_asymptotes(spec: PsychometricSpec, meanings: dict[str, str]):
    """γ and λ: Beta(1, 20) when free, constants otherwise."""
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
    return gamma, lapse


def _psi_F(eta, family: str, positive):
    if family == "logistic":
        return pm.math.sigmoid(eta)
    if family == "cumulative_normal":
        return Phi(eta)
    return pt.switch(positive, -pt.expm1(-pt.exp(eta)), 0.0)  # Weibull: x = 0 gives F = 0


def build_psychometric_model(x: np.ndarray, k: np.ndarray, n: np.ndarray, rater_idx: np.ndarray | None,
                             raters: Sequence[str], spec: PsychometricSpec, *, hierarchical: bool = True,
                             x_range: tuple[float, float] | None = None, dispersion: str = "none",
                             stimulus_idx: np.ndarray | None = None, stimuli: Sequence[str] | None = None,
                             obs_ids: Sequence[str] | None = None) -> tuple[pm.Model, dict[str, str]]:
    """ψ-form psychometric function fitted to ``k`` successes out of ``n`` at stimulus values ``x``.

    Sampled in intercept–slope form, F(α + β·z) with z = (x − centre)/span of the x range (for the Weibull
    z = ln x − ln centre), and reported as threshold = x where α + β·z = 0 and width = span/β (Weibull: 1/β on
    the log axis), i.e. exactly ψ(x) = γ + (1 − γ − λ)·F((x − threshold)/width).  Why this form: an observer at
    chance has a flat curve, β ≈ 0, where threshold and width run off to infinity together — a ridge that NUTS
    cannot sample (divergences, R-hat > 1.01) — while α and β stay well behaved; threshold and width then
    honestly come out with very wide intervals.

    Hierarchical: α_r ~ N(μ_α, σ_α), β_r ~ N(μ_β, σ_β) (non-centred), ``group_threshold``/``group_width`` from
    (μ_α, μ_β); γ and λ shared.  Non-hierarchical (one observer, e.g. the model): one α and β.
    Stimulus difficulty (``dispersion``): ``"stimulus"`` adds u_i ~ N(0, σ_u) per stimulus to α + β·z (one row
    per answer, ``stimulus_idx``), ``"betabinomial"`` makes the counts beta-binomial (η), ``"none"`` binomial.
    """
    if spec.family not in ("logistic", "cumulative_normal", "weibull"):
        raise ValueError(f"unknown psychometric family {spec.family!r}")
    if dispersion not in DISPERSIONS:
        raise ValueError(f"unknown dispersion {dispersion!r}; use one of {DISPERSIONS}")
    x = np.asarray(x, float)
    z, centre, scale, axis = _psi_axis(x, spec.family, x_range)
    weib = spec.family == "weibull"
    coords = {"obs": list(obs_ids) if obs_ids is not None else list(range(len(x)))}
    if hierarchical:
        coords["rater"] = list(raters)
    if dispersion == "stimulus":
        coords["stimulus"] = list(stimuli)
    meanings: dict[str, str] = {}

    def to_threshold(a, b):
        t = centre - a * scale / b
        return pt.exp(t) if weib else t

    with pm.Model(coords=coords) as model:
        zd = pm.Data("z", z, dims="obs")
        r = pm.Data("rater_idx", np.asarray(rater_idx, int), dims="obs") if hierarchical else None
        a, b, a_obs, b_obs, group = _psi_slopes(hierarchical, axis, meanings, r)
        if group is not None:
            pm.Deterministic("group_threshold", to_threshold(*group))
            pm.Deterministic("group_width", scale / group[1])
        pm.Deterministic("threshold", to_threshold(a, b), dims="rater" if hierarchical else None)
        pm.Deterministic("width", scale / b, dims="rater" if hierarchical else None)
        eta = a_obs + b_obs * zd
        if dispersion == "stimulus":
            _, u = _stimulus_effect(meanings, "added to α + β·z: some images are harder than their evidence says")
            eta = eta + u[pm.Data("stimulus_idx", np.asarray(stimulus_idx, int), dims="obs")]
        gamma, lapse = _psi_asymptotes(spec, meanings)
        psi = gamma + (1 - gamma - lapse) * _psi_F(eta, spec.family, pt.as_tensor_variable(x > 0))
        _binomial("k", psi, np.asarray(k, int), np.asarray(n, int), dispersion, meanings)
    return model, meanings


def psychometric_curve(x, threshold, width, gamma, lapse, family: str) -> np.ndarray:
    """NumPy ψ(x) for plotting; parameters may be arrays of draws (broadcast against x[None])."""
    x = np.asarray(x, float)[None, :]
    t = np.asarray(threshold, float)[:, None]
    w = np.asarray(width, float)[:, None]
    g = np.broadcast_to(np.asarray(gamma, float), t.shape[:1])[:, None]
    l = np.broadcast_to(np.asarray(lapse, float), t.shape[:1])[:, None]
    if family == "weibull":
        with np.errstate(divide="ignore", invalid="ignore"):
            F = np.where(x > 0, -np.expm1(-np.exp((np.log(np.maximum(x, 1e-12)) - np.log(t)) / w)), 0.0)
    elif family == "logistic":
        F = expit((x - t) / w)
    elif family == "cumulative_normal":
        F = ndtr((x - t) / w)
    else:
        raise ValueError(f"unknown psychometric family {family!r}")
    return g + (1 - g - l) * F
