"""Power (precision) by simulation for the equivalence-to-chance question.

Question: with R raters × T trials, how often would the study *decide* about chance-level authenticity
accuracy, using the HDI + ROPE rule (Kruschke 2018)?  "Equivalent" when the 95 % interval of the population
accuracy lies inside [0.5 − h, 0.5 + h]; "different" when it lies entirely outside; otherwise undecided.

Two estimators of that interval are available:
* ``"bayes"`` — the full hierarchical probit model of :func:`analysis.models.build_sdt_model` (slow: one MCMC
  fit per simulated study; use for checks with few simulations);
* ``"approx"`` — a fast stand-in: the t interval (R − 1 df) of the mean per-rater accuracy, which under flat
  priors approximates the posterior of the population accuracy (between-rater and binomial variance both enter
  through the spread of per-rater accuracies).  ``benchmarks/analysis_power.py`` compares the two.
"""

from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import ndtr

__all__ = ["decide", "equivalence_power", "simulate_auth_correct"]


def decide(lo: float, hi: float, rope_halfwidth: float, chance: float = 0.5) -> str:
    if lo >= chance - rope_halfwidth and hi <= chance + rope_halfwidth:
        return "equivalent"
    if hi < chance - rope_halfwidth or lo > chance + rope_halfwidth:
        return "different"
    return "undecided"


def simulate_auth_correct(n_raters: int, n_trials: int, mu_d: float, mu_c: float, sigma_d: float,
                          sigma_c: float, sigma_u: float, rng: np.random.Generator) -> dict:
    """Authenticity answers of ``n_raters`` raters on the same ``n_trials`` stimuli (half real); d and c on the SDT
    model's scale, marginal over the stimuli (:func:`analysis.models.build_sdt_model`)."""
    s = np.where(np.arange(n_trials) < n_trials // 2, 0.5, -0.5)
    u = sigma_u * rng.standard_normal(n_trials)
    d = mu_d + sigma_d * rng.standard_normal(n_raters)
    c = mu_c + sigma_c * rng.standard_normal(n_raters)
    p_real = ndtr(np.sqrt(1 + sigma_u**2) * (c[:, None] + d[:, None] * s[None, :]) + u[None, :])
    said_real = rng.random((n_raters, n_trials)) < p_real
    correct = said_real == (s[None, :] > 0)
    return {"said_real": said_real, "correct": correct, "s": s}


def _approx_interval(correct: np.ndarray, prob: float) -> tuple[float, float]:
    acc = correct.mean(axis=1)
    R = len(acc)
    m = acc.mean()
    se = acc.std(ddof=1) / np.sqrt(R)
    q = stats.t.ppf((1 + prob) / 2, R - 1)
    return float(m - q * se), float(m + q * se)


def equivalence_power(*, mu_d: float, mu_c: float = 0.0, sigma_d: float = 0.3, sigma_c: float = 0.2,
                      sigma_u: float = 0.3, rope_halfwidth: float = 0.05,
                      n_raters: Sequence[int] = (5, 10, 20, 40), n_trials: Sequence[int] = (100, 300, 600),
                      n_sims: int = 500, prob: float = 0.95, seed: int = 0, method: str = "approx",
                      sampler=None) -> pd.DataFrame:
    """P(decision) per design under the given true (group) parameters.  Returns one row per design."""
    rng = np.random.default_rng(seed)
    rows = []
    for R, T in itertools.product(n_raters, n_trials):
        dec = {"equivalent": 0, "different": 0, "undecided": 0}
        widths = []
        for i in range(n_sims):
            sim = simulate_auth_correct(R, T, mu_d, mu_c, sigma_d, sigma_c, sigma_u, rng)
            if method == "approx":
                lo, hi = _approx_interval(sim["correct"], prob)
            elif method == "bayes":
                lo, hi = _bayes_interval(sim, prob, sampler, seed=seed * 100000 + i)
            else:
                raise ValueError("method must be 'approx' or 'bayes'")
            widths.append(hi - lo)
            dec[decide(lo, hi, rope_halfwidth)] += 1
        rows.append({"n_raters": R, "n_trials": T, "p_equivalent": dec["equivalent"] / n_sims,
                     "p_different": dec["different"] / n_sims, "p_undecided": dec["undecided"] / n_sims,
                     "median_interval_width": float(np.median(widths)), "n_sims": n_sims, "method": method})
    return pd.DataFrame(rows)


def _bayes_interval(sim: dict, prob: float, sampler, seed: int) -> tuple[float, float]:
    from .fitting import SamplerConfig, draws, fit_model, set_quiet
    from .models import build_sdt_model
    R, T = sim["said_real"].shape
    y = sim["said_real"].ravel().astype(int)
    s = np.tile(sim["s"], R)
    r_idx = np.repeat(np.arange(R), T)
    st_idx = np.tile(np.arange(T), R)
    model, _ = build_sdt_model(y, s, r_idx, st_idx, [f"r{i}" for i in range(R)], [f"s{j}" for j in range(T)])
    cfg = sampler or SamplerConfig(draws=500, tune=500, posterior_predictive=False)
    cfg = SamplerConfig(**{**cfg.to_dict(), "seed": seed, "posterior_predictive": False})
    fit = fit_model("power_sdt", model, cfg)
    a = draws(fit.idata, "acc_population")
    return float(np.quantile(a, (1 - prob) / 2)), float(np.quantile(a, (1 + prob) / 2))
