"""PyMC model builders: authenticity SDT, meta-d′, experts vs model.  Each takes prepared arrays (see
:mod:`analysis.prepare`) and returns ``(pm.Model, meanings)`` where ``meanings`` says what each parameter is; the
priors table of the report is generated from the model itself (:func:`analysis.fitting.prior_rows`), so it cannot
drift from the code.  Index arrays and covariates enter as ``pm.Data`` along an ``obs`` coordinate whose labels are
the response ids (``participant/trial``; stimulus ids for the model's answers), so every saved fit says which answer
each observation is.  Non-centred parameterisations.  Psychometric functions: :mod:`analysis.psychometric`.

Φ is the standard normal CDF.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from scipy import integrate, stats

__all__ = [
    "build_difference_model",
    "build_metad_model",
    "build_sdt_model",
    "d_prime_credible",
    "log_Phi",
    "log_normal_interval",
    "metad_counts_layout",
    "metad_log_probabilities",
    "type1_point_estimates",
]


def Phi(x):
    return 0.5 * pt.erfc(-x / math.sqrt(2.0))


LOG_PHI_SWITCH = -10.0


def log_Phi(x):
    """log Φ(x), stable in the lower tail: log(erfc(−x/√2)/2) above −10, below it the asymptotic series
    −x²/2 − log(−x) − ½log 2π + log(1 − x⁻² + 3x⁻⁴ − 15x⁻⁶ + 105x⁻⁸) (relative error < 1e−7 at −10).  Each branch
    sees only its own range (so neither produces an infinity whose zero-weighted gradient would be NaN), and the
    graph has no ``erfcx`` — whose numba implementation PyTensor cannot cache, which made every process compile
    the meta-d′ model again (measured, docs/analysis.md)."""
    xe = pt.maximum(x, LOG_PHI_SWITCH)
    direct = pt.log(0.5 * pt.erfc(-xe / math.sqrt(2.0)))
    xa = pt.minimum(x, LOG_PHI_SWITCH)
    r = 1.0 / (xa * xa)
    tail = (-0.5 * xa * xa - pt.log(-xa) - 0.5 * math.log(2 * math.pi)
            + pt.log1p(r * (-1.0 + r * (3.0 + r * (-15.0 + r * 105.0)))))
    return pt.switch(pt.lt(x, LOG_PHI_SWITCH), tail, direct)


def log_normal_interval(lo, hi):
    """log(Φ(hi) − Φ(lo)) for lo < hi by a log-diff-exp of log Φ, stable in both tails: above 0 the same mass is
    computed as Φ(−lo) − Φ(−hi), so two numbers near 1 are never subtracted."""
    upper = pt.gt(lo + hi, 0.0)
    a = pt.switch(upper, -lo, hi)
    b = pt.switch(upper, -hi, lo)
    return pm.math.logdiffexp(log_Phi(a), log_Phi(b))


def _clip(p):
    return pt.clip(p, 1e-9, 1 - 1e-9)


def _obs_coord(ids, n: int) -> list:
    return list(ids) if ids is not None else list(range(n))


# ---------------------------------------------------------------------------------------------------------------
# 1. authenticity as signal detection
# ---------------------------------------------------------------------------------------------------------------
def build_sdt_model(y: np.ndarray, s: np.ndarray, rater_idx: np.ndarray, stim_idx: np.ndarray,
                    raters: Sequence[str], stimuli: Sequence[str], *, stimulus_effects: bool = True,
                    obs_ids: Sequence[str] | None = None,
                    form: Mapping[str, bool] | None = None) -> tuple[pm.Model, dict[str, str]]:
    """Hierarchical probit SDT model: P(answer "real") = Φ(√(1 + σ_u²)·(c_r + d_r·s) + u_i), s = +½ real, −½ synthetic.

    d_r ~ N(μ_d, σ_d), c_r ~ N(μ_c, σ_c) (independent), u_i ~ N(0, σ_u) stimulus effects ("looks real"). c_r and d_r
    are **marginal over the stimuli** — P(answer "real" | rater, source) = Φ(c_r + d_r·s), the d′ and c of hit and
    false-alarm rates pooled over images; the stimulus effects only correlate the answers to one image. The same
    family as Φ(c + d·s + u) (c and d scaled by √(1 + σ_u²)), parameterised so that σ_u does not trade off against
    the scale of c and d: that ridge left σ_u unconverged in gate studies (ESS 11; docs/analysis.md).
    ``form``: which of ``c``, ``d``, ``stimulus`` to sample centred (default none: standardised offsets ``z_*``; a
    form chosen from the answers was tried and diverged more often, docs/analysis.md); as ``model.centring``.
    Deterministics: per-rater accuracy (over the stimulus distribution), ``acc_typical`` (the group-mean rater)
    and ``acc_population`` (a random rater on a random image) — the latter is the study's headline accuracy:
        P(correct) = ½[Φ((μ_c + μ_d/2)/τ) + Φ((μ_d/2 − μ_c)/τ)],  τ² = 1 + σ_c² + σ_d²/4.
    """
    unknown = set(form or {}) - {"c", "d", "stimulus"}
    if unknown:
        raise ValueError(f"form names effects c, d and stimulus, not {sorted(unknown)}")
    form = {"c": False, "d": False, "stimulus": False, **(form or {})}
    coords = {"rater": list(raters), "obs": _obs_coord(obs_ids, len(y))}
    if stimulus_effects:
        coords["stimulus"] = list(stimuli)
    priors = {
        "mu_d": "group d′ (real vs synthetic)",
        "mu_c": "group criterion (> 0: bias to answer 'real', i.e. conservative about 'synthetic')",
        "sigma_d": "between-rater SD of d′",
        "sigma_c": "between-rater SD of criterion",
    }

    for k, what in (("c", "a rater's criterion"), ("d", "a rater's d′"), ("u", "a stimulus effect")):
        if form[k if k != "u" else "stimulus"] and (k != "u" or stimulus_effects):
            priors[k] = f"{what}, centred"
    with pm.Model(coords=coords) as model:
        mu_d = pm.Normal("mu_d", 0.0, 1.5)
        mu_c = pm.Normal("mu_c", 0.0, 1.0)
        sigma_d = pm.HalfNormal("sigma_d", 1.0)
        sigma_c = pm.HalfNormal("sigma_c", 1.0)
        # free variables first, in one order for every form
        raw = {k: pm.Normal(k, mu, sd, dims="rater") if form[k] else pm.Normal(f"z_{k}", 0.0, 1.0, dims="rater")
               for k, mu, sd in (("d", mu_d, sigma_d), ("c", mu_c, sigma_c))}
        d = raw["d"] if form["d"] else pm.Deterministic("d", mu_d + sigma_d * raw["d"], dims="rater")
        c = raw["c"] if form["c"] else pm.Deterministic("c", mu_c + sigma_c * raw["c"], dims="rater")
        r = pm.Data("rater_idx", np.asarray(rater_idx, int), dims="obs")
        s_ = pm.Data("s", np.asarray(s, float), dims="obs")
        eta = c[r] + d[r] * s_
        if stimulus_effects:
            # c and d marginal over the stimuli (see the docstring): σ_u off the ridge with their scale
            priors["sigma_stimulus"] = "SD of stimulus effects u_i (how real an image looks)"
            sigma_u = pm.HalfNormal("sigma_stimulus", 1.0)
            st = pm.Data("stimulus_idx", np.asarray(stim_idx, int), dims="obs")
            u = pm.Normal("u", 0.0, sigma_u, dims="stimulus") if form["stimulus"] else \
                sigma_u * pm.Normal("z_u", 0.0, 1.0, dims="stimulus")
            eta = pt.sqrt(1.0 + sigma_u**2) * eta + u[st]
        pm.Deterministic("accuracy", 0.5 * (Phi(c + d / 2) + Phi(d / 2 - c)), dims="rater")
        pm.Deterministic("acc_typical", 0.5 * (Phi(mu_c + mu_d / 2) + Phi(mu_d / 2 - mu_c)))
        tau = pt.sqrt(1.0 + sigma_c**2 + sigma_d**2 / 4)
        pm.Deterministic("acc_population", 0.5 * (Phi((mu_c + mu_d / 2) / tau) + Phi((mu_d / 2 - mu_c) / tau)))
        pm.Bernoulli("said_real", p=_clip(Phi(eta)), observed=y.astype(int), dims="obs")
    model.centring = {k: v for k, v in form.items() if stimulus_effects or k != "stimulus"}
    return model, priors


# ---------------------------------------------------------------------------------------------------------------
# 3. meta-d′ (HMeta-d's group model)
# ---------------------------------------------------------------------------------------------------------------
SIGMA = np.array([-1.0, 1.0])   # answer S1 / S2: the side of c1 the evidence falls on
STIM = np.array([-1.0, 1.0])    # stimulus S1 / S2: the sign of its mean


def metad_log_probabilities(d, c1, meta_d, inc):
    """Log response probabilities of the meta-d′ model (Maniscalco & Lau 2012) with HMeta-d's meta-c1 = c1.

    d, c1, meta_d: (R,); inc: (R, 2, K−1) positive spacings of the type-2 criteria beyond c1, answer side S1 then S2.
    Returns (2, R, 2, K): [stimulus S1/S2, observer, answer S1/S2, confidence 1..K].  Type 1: P(answer | stimulus)
    = Φ(−σ·(c1 − s·d/2)), σ = ∓1 for answer S1/S2, s = ∓1 for stimulus S1/S2.  Type 2: x ~ N(s·meta-d′/2, 1), read
    on the axis where the answer means x beyond c1: bin edges z_j = σ·(c1 − s·meta-d′/2) + e_j, e_0 = 0, e_j = inc_1
    + … + inc_j, bin j = [z_{j−1}, z_j), z_K = ∞, conditioned on the answer (÷ Φ(−z_0)).

    Every bin is a log-diff-exp of log Φ, in the tail-stable form of :func:`log_normal_interval`, and the
    conditioning a subtraction of log Φ — no clamp, no renormalisation: the bins sum to the normaliser exactly.  The
    layout is pure broadcasting (no reordering inside the graph), which keeps the compiled graph small.
    """
    sig = pt.as_tensor_variable(SIGMA)[None, None, :, None]
    st = pt.as_tensor_variable(STIM)[:, None, None, None]
    e = pt.concatenate([pt.zeros_like(inc[..., 0])[..., None], pt.cumsum(inc, axis=-1)], axis=-1)[None]  # (1,R,2,K)
    z = sig * (c1[None, :, None, None] - st * meta_d[None, :, None, None] / 2) + e                  # (2, R, 2, K)
    lo, hi = z[..., :-1], z[..., 1:]
    upper = pt.gt(lo + hi, 0.0)
    inner = pm.math.logdiffexp(log_Phi(pt.switch(upper, -lo, hi)), log_Phi(pt.switch(upper, -hi, lo)))
    cond = pt.concatenate([inner, log_Phi(-z[..., -1])[..., None]], axis=-1) - log_Phi(-z[..., 0])[..., None]
    type1 = log_Phi(-sig * (c1[None, :, None, None] - st * d[None, :, None, None] / 2))
    return type1 + cond


def metad_counts_layout(counts_S1: np.ndarray | None, counts_S2: np.ndarray) -> np.ndarray:
    """HMeta-d counts (R, 2K each: answer S1 at confidence K..1, then answer S2 at 1..K) → (2, R, 2, K) in the
    layout of :func:`metad_log_probabilities` (stimulus, observer, answer, confidence 1..K).  ``counts_S1`` None:
    folded counts, all on S2 stimuli."""
    c2 = np.asarray(counts_S2, int)
    c1 = np.zeros_like(c2) if counts_S1 is None else np.asarray(counts_S1, int)
    K = c2.shape[1] // 2

    def one(c):
        return np.stack([c[:, :K][:, ::-1], c[:, K:]], axis=1)
    return np.stack([one(c1), one(c2)])


def _multinomial_logp(value, n, log_p):
    """Multinomial log-probability from log-probabilities (no exp/log round trip, no parameter checks: the bins
    come from :func:`metad_log_probabilities` and sum to 1 by construction)."""
    return (value * log_p).sum(axis=-1) + pt.gammaln(n + 1) - pt.gammaln(value + 1).sum(axis=-1)


def _multinomial_random(n, log_p, rng=None, size=None):
    p = np.exp(log_p - np.max(log_p, axis=-1, keepdims=True))
    return rng.multinomial(n, p / p.sum(axis=-1, keepdims=True), size=size)


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


# an M-ratio needs d′ credibly above this floor, not just above 0: with d′ 0.3–0.5 (raters near chance, the demo
# and issue studies of benchmarks/analysis_gate.py) M = meta-d′/d′ is a ratio over a denominator whose posterior
# reaches near 0, the group log M and those d′ made a funnel, and the fits diverged (docs/analysis.md)
D_PRIME_FLOOR = 0.5
D_PRIME_CREDIBLE = 0.975   # the posterior probability of d′ > floor that "credibly" means


def d_prime_credible(counts_S1: np.ndarray | None, counts_S2: np.ndarray, prob: float = D_PRIME_CREDIBLE,
                     floor: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """P(d′ > ``floor``) per rater and whether it reaches ``prob`` (d′ credibly above the floor).

    With uniform priors on the hit and false-alarm rates their posteriors are Beta(1 + hits, 1 + misses) and
    Beta(1 + false alarms, 1 + correct rejections); d′ = Φ⁻¹(H) − Φ⁻¹(F) > floor exactly when
    H > Φ(Φ⁻¹(F) + floor), so P is one integral over F (for floor 0: P(H > F)).  Folded counts (``counts_S1``
    None): d′ = 2Φ⁻¹(accuracy) > floor exactly when accuracy > Φ(floor/2), P from Beta(1 + correct, 1 + incorrect)."""
    c2 = np.asarray(counts_S2, float)
    K = c2.shape[1] // 2
    out = []
    for r in range(c2.shape[0]):
        if counts_S1 is None:
            out.append(float(stats.beta.sf(stats.norm.cdf(floor / 2), 1 + c2[r, K:].sum(), 1 + c2[r, :K].sum())))
            continue
        c1 = np.asarray(counts_S1, float)[r]
        h = stats.beta(1 + c2[r, K:].sum(), 1 + c2[r, :K].sum())
        f = stats.beta(1 + c1[K:].sum(), 1 + c1[:K].sum())
        out.append(float(integrate.quad(lambda x: f.pdf(x) * h.sf(stats.norm.cdf(stats.norm.ppf(x) + floor)),
                                        0.0, 1.0, limit=200)[0]))
    p = np.clip(np.asarray(out), 0.0, 1.0)
    return p, p >= prob


MIN_GROUP_M = 3   # pooled raters with an M-ratio needed for a group M-ratio
# the group M-ratio: "raters" — these raters' geometric mean, each rater's log M ~ N(0, 1) on its own; "population"
# — HMeta-d's hierarchical log M ~ N(μ, σ), whose (μ, σ) diverged where raters' confidence criteria differ
METAD_GROUP_FORMS = ("raters", "population")


def build_metad_model(counts_S1: np.ndarray | None, counts_S2: np.ndarray, observers: Sequence[str], K: int, *,
                      pooled: Sequence[bool] | None = None, folded: bool = False, credible: float = D_PRIME_CREDIBLE,
                      d_floor: float = D_PRIME_FLOOR, group: str = "raters") -> tuple[pm.Model, dict[str, str]]:
    """Meta-d′ model over observers, as HMeta-d's default group model (Fleming 2017), with an M-ratio only where it
    means something, and the model as one more (unpooled) observer in the same fit.

    Unfolded (a two-choice task such as authenticity, S1 = synthetic, S2 = real): ``counts_S1``/``counts_S2`` are
    (R, 2K) counts in the HMeta-d order for S1 and S2 stimuli.  Folded (correct/incorrect of a many-choice task such
    as classification, ``counts_S1`` None): ``counts_S2`` is (R, 2K) with "incorrect, confidence K..1" then
    "correct, confidence 1..K".  The observed variable ``counts`` has dims (stimulus, observer, bin), bin = answer
    S1 at confidence 1..K then answer S2 at 1..K (:func:`metad_counts_layout`).  Folded, the observer is treated as unbiased (c1 = 0) with symmetric type-2 criteria, so
    d′ = 2Φ⁻¹(accuracy) is the two-choice-equivalent sensitivity and meta-d′ the sensitivity that explains the
    type-2 ROC.

    d′ and c1 are parameters, estimated from the type-1 part of the counts as in HMeta-d's group model (its R
    version), but unpooled (N(0, 2) and N(0, 1) per observer; 300 answers pin them down, and a between-rater SD would
    be one more funnel where raters are alike); meta-c1 = c1; the type-1 point estimates
    (:func:`type1_point_estimates`) are the initial point and are kept as data (``d_hat``, ``c1_hat``).  Estimating
    d′ carries its uncertainty into M = meta-d′/d′ (with d′ held at a point estimate, an M-ratio inherits the
    estimate's error: a rater whose d′ came out low by chance got an M too high).  ``pooled`` (default: every
    observer when there are several) marks the raters of the group.  **The group M-ratio** (``group_M``, when at
    least ``MIN_GROUP_M`` pooled raters have an M-ratio; else ``metad_info["group_M"]`` is False): with ``group=
    "raters"`` (default) each rater's log M is N(0, 1) on its own and ``group_M`` is the geometric mean of these
    raters' M — the study's experts, its interval their estimation uncertainty, not the spread of a population of
    experts; with ``group="population"`` HMeta-d's hierarchical log M ~ N(μ, σ) (non-centred) and ``group_M`` =
    exp(μ), the population's.  The hierarchical form diverged in the gate's criteria scenario (a few divergent
    draws in the tail of σ, whatever the parameterisation; without the hierarchy none: docs/analysis.md).
    **Type-2 criteria as in HMeta-d**: each observer's K−1 criteria on each answer side, as distances beyond c1, are
    iid draws from one normal truncated at 0 — for a pooled rater N(μ_side, σ), μ per answer side and σ shared, both
    group parameters — and put in order (PyMC's ``ordered`` transform: the density of the sorted draws, no label
    switching). σ is the spread of the criteria *within* a
    rater as much as between raters, so it stays away from 0 even when every rater uses the same criteria (a
    between-rater SD of each criterion made a funnel there).  An unpooled observer (the model) draws its criteria
    from N(1, 1) truncated at 0.  Observers whose d′ is credibly above ``d_floor`` (:func:`d_prime_credible`,
    P(d′ > d_floor) ≥ ``credible``; :data:`D_PRIME_FLOOR`) get an M-ratio, meta-d′ = M·d′; for the others M =
    meta-d′/d′ would be a ratio over a d′ whose posterior reaches near 0, so their meta-d′ is a parameter of its
    own (N(0, 1.5)) and M is NaN (``model.metad_info`` says who and why).  Bin probabilities are differences of log Φ
    (:func:`metad_log_probabilities`); counts are multinomial.

    One graph for every data set (which observers have an M-ratio, pooling, folding and the counts are all
    ``pm.Data``), so a compiled model is reused from the cache across studies, tasks and observers; the parameters
    an observer does not use (log M where there is no M-ratio, the free meta-d′ where there is, the S1 side's
    criteria when folded, which are then drawn around the S2 side's group mean) are left to their priors and never
    reported.
    """
    counts_S2 = np.asarray(counts_S2, int)
    R = counts_S2.shape[0]
    counts_S1 = np.zeros_like(counts_S2) if folded or counts_S1 is None else np.asarray(counts_S1, int)
    folded = folded or counts_S1.sum() == 0
    d_hat, c_hat = type1_point_estimates(None if folded else counts_S1, counts_S2, K)
    p_pos, ok = d_prime_credible(None if folded else counts_S1, counts_S2, credible, d_floor)
    if folded:
        c_hat = np.zeros(R)
    if group not in METAD_GROUP_FORMS:
        raise ValueError(f"group: {group!r}; use one of {', '.join(METAD_GROUP_FORMS)}")
    pooled_ = np.asarray(pooled if pooled is not None else [R > 1] * R, bool)
    group_on = int(np.sum(pooled_ & ok)) >= MIN_GROUP_M
    observers = [str(r) for r in observers]
    coords = {"observer": observers, "criterion": np.arange(1, K), "side": ["S1", "S2"], "stimulus": ["S1", "S2"],
              "bin": [f"{a}{k}" for a in ("S1", "S2") for k in range(1, K + 1)]}
    priors = {"d, c1": "type-1 d′ ~ N(0, 2) and criterion c1 ~ N(0, 1) per observer, unpooled, estimated from the "
                       "type-1 counts (initial point: the padded point estimates)"
                       + ("; c1 = 0 (folded)" if folded else ""),
              "mu_log_M": f"population log M-ratio (HMeta-d; group='population' only), pooled raters with d′ "
                          f"credibly > {d_floor:g}",
              "sigma_log_M": "between-rater SD of log M-ratio (group='population' only)",
              "z_log_M": "log M-ratio: z (N(0, 1)) on its own; μ + σ·z for a pooled rater with group='population' "
                         "(when ≥ 3 pooled raters have an M-ratio)",
              "group_M": f"the experts' M-ratio: the geometric mean of the pooled raters' M (d′ credibly > "
                         f"{d_floor:g})" if group == "raters" else "the experts' M-ratio: exp(μ), the population's",
              "meta_d_free": f"meta-d′ of an observer whose d′ is not credibly above {d_floor:g} (no M-ratio)",
              "mu_c2": "group mean distance of a type-2 criterion beyond c1, per answer side (HMeta-d's mu_c2)",
              "sigma_c2": "spread of the type-2 criteria around it, within and between raters (HMeta-d's sigma_c2)",
              "c2": "an observer's type-2 criteria (distances beyond c1), iid N(μ_side, σ) truncated at 0 and "
                    "ordered for a pooled rater, N(1, 1) truncated at 0 and ordered unpooled"}
    with pm.Model(coords=coords) as model:
        pm.Data("d_hat", d_hat, dims="observer")
        pm.Data("c1_hat", c_hat, dims="observer")
        # a 1-vector: a 0-d pm.Data does not round-trip through constant_data, and PyMC would then take every
        # variable below it as changed and draw it again from its prior in the posterior predictive
        tied = pm.Data("folded", np.array([float(folded)]))[0]
        d = pm.Normal("d", 0.0, 2.0, dims="observer", initval=d_hat)
        c1 = (1 - tied) * pm.Normal("c1", 0.0, 1.0, dims="observer", initval=c_hat)
        has_M = pm.Data("has_M", ok.astype(float), dims="observer")
        pool = pm.Data("pooled", pooled_.astype(float), dims="observer")
        mu_lm = pm.Normal("mu_log_M", 0.0, 1.0)
        sigma_lm = pm.HalfNormal("sigma_log_M", 1.0)
        z_lm = pm.Normal("z_log_M", 0.0, 1.0, dims="observer")
        # the group log M needs raters to pool: with fewer than MIN_GROUP_M pooled raters that have an M-ratio, every
        # observer's log M is N(0, 1) on its own and μ, σ are left to their priors (one rater cannot inform a
        # between-rater SD; the chance study of the gate diverged there)
        grp = pm.Data("group_M_on", np.array([float(group_on and group == "population")]))[0]
        pm_ = pool * grp
        log_M = pm_ * (mu_lm + sigma_lm * z_lm) + (1 - pm_) * z_lm
        in_group = pool * has_M
        raters_mean = (in_group * log_M).sum() / pt.maximum(in_group.sum(), 1.0)
        md_free = pm.Normal("meta_d_free", 0.0, 1.5, dims="observer")
        meta_d = pm.Deterministic("meta_d", pt.switch(has_M > 0, pt.exp(log_M) * d, md_free), dims="observer")
        pm.Deterministic("M", pt.switch(has_M > 0, pt.exp(log_M), np.nan), dims="observer")
        pm.Deterministic("group_M", pt.exp(pt.switch(grp > 0, mu_lm, raters_mean)))
        mu_c2 = pm.Normal("mu_c2", 1.0, 1.0, dims="side")
        sigma_c2 = pm.HalfNormal("sigma_c2", 1.0)
        # folded: the S1 side is unused; its criteria are left to a fixed prior, N(1, 1) truncated at 0, apart from
        # the group parameters (prior-only draws tied to μ and σ cost their ESS and made divergences)
        pl = pool[:, None, None]
        one = pt.ones(())
        mu_side = pt.stack([pt.switch(tied > 0, one, mu_c2[0]), mu_c2[1]])[None, :, None]
        sd_side = pt.stack([pt.switch(tied > 0, one, sigma_c2), sigma_c2])[None, :, None]
        mu_obs = pl * mu_side + (1 - pl) * 1.0
        sd_obs = pl * sd_side + (1 - pl) * 1.0
        # ordered and positive: log of the first distance and of each spacing (PyMC's Ordered(positive=True); a
        # log transform chained under an ordered one has worse geometry)
        c2 = pm.TruncatedNormal("c2", mu=mu_obs, sigma=sd_obs, lower=0.0, default_transform=None,
                                transform=pm.distributions.transforms.Ordered(positive=True),
                                initval=np.broadcast_to(0.5 * np.arange(1, K), (R, 2, K - 1)).copy(),
                                dims=("observer", "side", "criterion"))
        # folded: both answer sides use the S2 side's criteria
        c2 = pt.stack([pt.switch(tied > 0, c2[:, 1, :], c2[:, 0, :]), c2[:, 1, :]], axis=1)
        inc = pt.concatenate([c2[..., :1], c2[..., 1:] - c2[..., :-1]], axis=-1)
        lp = metad_log_probabilities(d, c1, meta_d, inc)
        counts = metad_counts_layout(None if folded else counts_S1, counts_S2).reshape(2, R, 2 * K)
        pm.CustomDist("counts", pm.Data("n_counts", counts.sum(axis=-1), dims=("stimulus", "observer")),
                      lp.reshape((2, lp.shape[1], -1)), logp=_multinomial_logp, random=_multinomial_random,
                      signature="(),(k)->(k)", observed=pm.Data("counts_obs", counts, dims=("stimulus", "observer",
                                                                                           "bin")),
                      dims=("stimulus", "observer", "bin"))
    # PyTensor's C backend: numba compiles this graph (~150 nodes) again in every process, 20–60 s even with a warm
    # cache, while C loads its cached per-op modules in seconds; the data are small, so C's slower calls cost little
    model.backend_hint = "c"
    model.metad_info = {"P(d′ > floor)": dict(zip(observers, p_pos.round(4))), "d_floor": float(d_floor),
                        "no_M_raters": [o for o, k in zip(observers, ok) if not k], "credible": credible,
                        "pooled": [o for o, k in zip(observers, pooled_) if k], "folded": bool(folded),
                        "group_M": bool(group_on), "group_M_form": group}
    return model, priors


# ---------------------------------------------------------------------------------------------------------------
# 4. human vs model on the same stimuli
# ---------------------------------------------------------------------------------------------------------------
def build_difference_model(y_h: np.ndarray, rater_idx: np.ndarray, stim_idx_h: np.ndarray, y_m: np.ndarray,
                           stim_idx_m: np.ndarray, raters: Sequence[str], stimuli: Sequence[str], *,
                           obs_ids: Sequence[str] | None = None, model_obs_ids: Sequence[str] | None = None
                           ) -> tuple[pm.Model, dict[str, str]]:
    """Probit model of correctness with shared stimulus difficulty.

    human:  P(correct) = Φ(α + a_r + b_i);   model:  P(correct) = Φ(α + δ + b_i)
    a_r ~ N(0, σ_r), b_i ~ N(0, σ_b).  Population accuracies: experts Φ(α/√(1 + σ_r² + σ_b²)), model
    Φ((α + δ)/√(1 + σ_b²)); ``difference`` = model − experts on the probability scale.
    """
    coords = {"rater": list(raters), "stimulus": list(stimuli), "obs": _obs_coord(obs_ids, len(y_h)),
              "obs_model": _obs_coord(model_obs_ids, len(y_m))}
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
        r = pm.Data("rater_idx", np.asarray(rater_idx, int), dims="obs")
        i_h = pm.Data("stimulus_idx", np.asarray(stim_idx_h, int), dims="obs")
        i_m = pm.Data("stimulus_idx_model", np.asarray(stim_idx_m, int), dims="obs_model")
        pm.Bernoulli("correct_experts", p=_clip(Phi(alpha + a[r] + b[i_h])), observed=np.asarray(y_h, int),
                     dims="obs")
        pm.Bernoulli("correct_model", p=_clip(Phi(alpha + delta + b[i_m])), observed=np.asarray(y_m, int),
                     dims="obs_model")
    return model, priors
