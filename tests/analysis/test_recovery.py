"""Small recovery tests that fail for a wrong model: each simulates a study with a generator written here, in a
form other than the fitted model's own (different curve shapes, non-normal effect distributions, trial-by-trial
simulation), fits the model the report uses, and checks that the truth lies inside the interval and that the bias
stays within a stated bound.  The coverage study over many studies is benchmarks/analysis_recovery.py."""
import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.special import expit

from analysis import prepare
from analysis.fitting import SamplerConfig, draws, fit_model, set_quiet
from analysis.models import build_difference_model, build_metad_model
from analysis.psychometric import build_morph_sdt_model
from cytocore.rater_model import RaterProfile, simulate_response

set_quiet(True)
CFG = SamplerConfig(draws=500, tune=500, chains=2, cores=1, seed=5, posterior_predictive=False, max_reruns=0)


def _q(x, p):
    return np.quantile(x, [(1 - p) / 2, (1 + p) / 2], axis=0)


@pytest.mark.slow
def test_yes_no_morph_model_recovers_thresholds_and_criteria():
    """Generator: d′_r(s) Weibull-shaped (not the fitted rescaled cumulative normal), evidence ~ N(d′_r(s) + u_i, 1)
    against a criterion, stimulus effects u_i uniform on ±0.4 (not normal), one row per answer.  Checks: the group
    threshold's 95 % interval contains the truth and its median is within 0.12 of it; ≥ 6 of 8 raters' criteria and
    thresholds inside their 90 % intervals."""
    rng = np.random.default_rng(11)
    R, t_group, mu_c = 8, 0.5, 0.3
    strengths = np.r_[np.zeros(80), np.repeat([0.2, 0.35, 0.5, 0.65, 0.8, 1.0], 14)][:160]
    u = rng.uniform(-0.4, 0.4, len(strengths))
    x, k, r_idx, s_idx, truth_t, truth_c = [], [], [], [], [], []
    for r in range(R):
        t = t_group + rng.normal(0, 0.05)
        b = rng.uniform(2.5, 4.5)
        a = brentq(lambda a: (1 - np.exp(-(t / a) ** b)) / (1 - np.exp(-(1 / a) ** b)) - 0.5, 1e-3, 50)
        dmax = rng.uniform(1.0, 2.0)
        c = mu_c + rng.normal(0, 0.2)
        d_s = dmax * (1 - np.exp(-(strengths / a) ** b)) / (1 - np.exp(-(1 / a) ** b))
        said_syn = rng.normal(d_s + u, 1.0) > c + dmax / 2
        x.append(strengths), k.append(said_syn.astype(int)), r_idx.append(np.full(len(strengths), r))
        s_idx.append(np.arange(len(strengths))), truth_t.append(t), truth_c.append(c)
    m, _ = build_morph_sdt_model(np.concatenate(x), np.concatenate(k), np.ones(R * len(strengths), int),
                                 np.concatenate(r_idx), [f"r{i}" for i in range(R)], dispersion="stimulus",
                                 stimulus_idx=np.concatenate(s_idx), stimuli=[f"s{i}" for i in range(len(strengths))])
    f = fit_model("morph_recovery", m, CFG)
    assert f.diagnostics.divergences <= 4, f.diagnostics.line()
    g = draws(f.idata, "group_threshold")
    lo, hi = _q(g, 0.95)
    assert lo <= t_group <= hi and abs(np.median(g) - t_group) <= 0.12, (lo, np.median(g), hi)
    lo, hi = _q(draws(f.idata, "c"), 0.90)
    assert np.sum((lo <= truth_c) & (truth_c <= hi)) >= 6
    lo, hi = _q(draws(f.idata, "threshold"), 0.90)
    assert np.sum((lo <= truth_t) & (truth_t <= hi)) >= 6


@pytest.mark.slow
def test_hierarchical_metad_recovers_m_ratios_and_gives_none_at_chance():
    """Generator: trial-by-trial simulation (truncated-normal type-2 samples, :func:`simulate_response`, not the
    model's bin probabilities), M-ratios uniform on [0.5, 1.1] (not log-normal), fixed criterion steps (not the
    model's pooled log-normal spacings), plus one rater at chance.  Checks, HMeta-d's hierarchical form
    (``group="population"``): ≥ 6 of 7 M-ratios inside their 90 % intervals, the mean posterior median within 0.15 of
    the mean true M; the rater at chance gets no M-ratio.  The default form (``group="raters"``, each rater's M on its
    own): the group M-ratio's 90 % interval holds the raters' true geometric mean and the mean posterior median is
    within 0.15 of the mean true M (its per-rater intervals hold 5 of 7 here: measured, not asserted)."""
    rng = np.random.default_rng(21)
    profiles = [RaterProfile(d_prime=rng.uniform(1.3, 2.0), criterion=rng.normal(0, 0.2), meta_ratio=rng.uniform(0.5, 1.1),
                             lapse=0.0, confidence_step=0.6) for _ in range(7)]
    profiles.append(RaterProfile(d_prime=0.0, criterion=0.1, meta_ratio=1.0, lapse=0.0))
    src, resp, lev, idx = [], [], [], []
    for r, prof in enumerate(profiles):
        for i in range(300):
            s = "real" if i % 2 else "synthetic"
            o = simulate_response(prof, {"source": s, "morph_strength": float(s == "synthetic"), "true_class": "a"},
                                  ("a", "b"), rng)
            src.append(s), resp.append(o["auth_response"]), lev.append(o["auth_confidence_level"]), idx.append(r)
    cS1, cS2 = prepare.metad_counts_auth(np.array(src), np.array(resp), np.array(lev), np.array(idx), 8, 4)
    names = [f"r{i}" for i in range(8)]
    true_M = np.array([p.meta_ratio for p in profiles[:7]])
    for group in ("population", "raters"):
        m, _ = build_metad_model(cS1, cS2, names, 4, group=group)
        assert m.metad_info["no_M_raters"] == ["r7"]
        f = fit_model("metad_recovery", m, CFG)
        assert f.diagnostics.divergences == 0, f.diagnostics.line()
        M = draws(f.idata, "M")
        assert np.isnan(M[:, 7]).all()
        assert abs(np.median(M[:, :7], axis=0).mean() - true_M.mean()) <= 0.15, group
        if group == "population":
            lo, hi = _q(M[:, :7], 0.90)
            assert np.sum((lo <= true_M) & (true_M <= hi)) >= 6, (lo, hi, true_M)
        else:
            lo, hi = _q(draws(f.idata, "group_M"), 0.90)
            assert lo <= np.exp(np.log(true_M).mean()) <= hi, (lo, hi, np.exp(np.log(true_M).mean()))


@pytest.mark.slow
def test_difference_model_recovers_model_minus_experts_accuracy():
    """Generator: logistic (not probit) correctness, stimulus difficulty from a skewed (centred exponential)
    distribution shared by experts and model, rater offsets uniform.  The truth is the population accuracy
    difference of the generator (model − experts, over raters and stimuli), by Monte Carlo.  Checks: inside the
    95 % interval, posterior median within 0.04."""
    rng = np.random.default_rng(31)
    R, N = 8, 200
    alpha, shift = 1.0, 0.8          # experts' logit accuracy; the model's advantage on the logit scale
    b = rng.exponential(0.8, N) - 0.8
    a = rng.uniform(-0.5, 0.5, R)
    p_h = expit(alpha + a[:, None] - b[None, :])
    y_h = (rng.random((R, N)) < p_h).astype(int)
    y_m = (rng.random(N) < expit(alpha + shift - b)).astype(int)
    big_b = rng.exponential(0.8, 200_000) - 0.8
    big_a = rng.uniform(-0.5, 0.5, 200_000)
    truth = float(np.mean(expit(alpha + shift - big_b)) - np.mean(expit(alpha + big_a - big_b)))
    m, _ = build_difference_model(y_h.ravel(), np.repeat(np.arange(R), N), np.tile(np.arange(N), R), y_m,
                                  np.arange(N), [f"r{i}" for i in range(R)], [f"s{i}" for i in range(N)])
    f = fit_model("difference_recovery", m, CFG)
    assert f.diagnostics.divergences <= 2, f.diagnostics.line()
    d = draws(f.idata, "difference")
    lo, hi = _q(d, 0.95)
    assert lo <= truth <= hi and abs(np.median(d) - truth) <= 0.04, (lo, np.median(d), hi, truth)
