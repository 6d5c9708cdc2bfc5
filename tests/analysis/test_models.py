"""Small, honest recovery checks of the PyMC models (the full coverage study is benchmarks/analysis_recovery.py)."""
import numpy as np
import pymc as pm
import pytensor
import pytest
from scipy.stats import norm

from analysis import prepare
from analysis.fitting import SamplerConfig, draws, fit_model, set_quiet
from analysis.mle import fit_metad_mle
from analysis.models import build_metad_model, build_sdt_model, metad_counts_layout, metad_log_probabilities
from analysis.psychometric import PsychometricSpec, build_psychometric_model
from cytocore.validation import validate_responses
from analysis.simulate import RaterProfile, simulate_single_rater_auth_counts, simulate_study

set_quiet(True)
CFG = SamplerConfig(draws=400, tune=400, chains=2, cores=1, seed=3, posterior_predictive=False)


def _interval(x, p=0.99):
    return np.quantile(x, [(1 - p) / 2, (1 + p) / 2])


@pytest.mark.slow
def test_sdt_recovers_sensitivity_and_separates_from_chance():
    """d′ = 1.5 is recovered (99 % interval) and its accuracy is far from chance; d′ = 0 gives chance."""
    out = {}
    for d_true in (1.5, 0.0):
        df = simulate_study(6, 120, ("a", "b"), seed=21, profile=RaterProfile(d_prime=d_true, criterion=0.3, lapse=0),
                            morph_fraction=0.0, stimulus_sd=0.2, rater_sd={"d_prime": 0.2, "criterion": 0.2})
        a = prepare.sdt_arrays(validate_responses(df).data)
        m, priors = build_sdt_model(a["y"], a["s"], a["rater_idx"], a["stim_idx"], a["raters"], a["stimuli"])
        f = fit_model("sdt", m, CFG)
        assert f.diagnostics.divergences <= 5
        out[d_true] = f
        assert set(priors) >= {"mu_d", "mu_c", "sigma_d", "sigma_c", "sigma_stimulus"}
    lo, hi = _interval(draws(out[1.5].idata, "mu_d"))
    assert lo < 1.5 < hi
    lo, hi = _interval(draws(out[1.5].idata, "mu_c"))
    assert lo < 0.3 < hi
    # far from chance by the report's own 95 % interval (a 99 % bound rests on ~4 of these 800 draws)
    assert _interval(draws(out[1.5].idata, "acc_population"), 0.95)[0] > 0.6
    lo, hi = _interval(draws(out[0.0].idata, "acc_population"))
    # 6 raters × 120 trials: the 99 % interval is ~0.2 wide (measured 0.205); the prior alone spans ~0.25–0.75+
    assert lo < 0.5 < hi and hi - lo < 0.3


def test_sdt_rater_effects_are_marginal_over_the_stimuli():
    """P(answer 'real' | rater, source) is Φ(c_r + d_r·s) whatever the stimulus SD (the model's own draws, the
    rate over 4,000 images per cell against the closed form); a model with c and d conditional on the image would
    give Φ((c + d·s)/√2) here (σ_u = 1: 0.21 lower at c + d·s = 1)."""
    R, S = 3, 4000
    rater, stim = np.repeat(np.arange(R), S), np.tile(np.arange(S), R)
    s = np.where(stim % 2 == 0, 0.5, -0.5)
    model, _ = build_sdt_model(np.zeros(R * S, int), s, rater, stim, [f"r{i}" for i in range(R)],
                               [f"s{i}" for i in range(S)])
    z_c, z_d = np.array([-1.0, 0.0, 1.0]), np.array([1.0, 0.0, -1.0])
    fixed = pm.do(model, {"mu_c": 0.2, "mu_d": 1.2, "sigma_c": 0.5, "sigma_d": 0.4, "z_c": z_c, "z_d": z_d,
                          "sigma_stimulus": 1.0})
    y = pm.draw(fixed["said_real"], random_seed=1)
    c, d = 0.2 + 0.5 * z_c, 1.2 + 0.4 * z_d
    for r in range(R):
        for side in (0.5, -0.5):
            k = (rater == r) & (s == side)
            assert abs(y[k].mean() - norm.cdf(c[r] + d[r] * side)) < 0.035, (r, side, y[k].mean())
    forced = build_sdt_model(y, s, rater, stim, [f"r{i}" for i in range(R)], [f"s{i}" for i in range(S)],
                             form={"stimulus": True})[0]
    assert {"z_c", "z_d", "u"} <= {rv.name for rv in forced.free_RVs} and forced.centring["stimulus"]
    with pytest.raises(ValueError, match="form names"):
        build_sdt_model(y, s, rater, stim, ["a"] * R, ["b"] * S, form={"criterion": True})


def test_morph_rater_effects_are_marginal_over_the_stimuli():
    """The morph model's P('synthetic' | strength) is its curve Φ(d′max·(g(s) − ½) − c) whatever the stimulus SD
    (its own draws over 3,000 images per strength against :func:`morph_sdt_curve`), as in the SDT model."""
    from analysis.psychometric import build_morph_sdt_model, morph_sdt_curve
    levels, S = np.array([0.0, 0.3, 0.6, 1.0]), 3000
    x = np.repeat(levels, S)
    m, _ = build_morph_sdt_model(x, np.zeros(len(x), int), np.ones(len(x), int), np.zeros(len(x), int), ["r0"],
                                 dispersion="stimulus", stimulus_idx=np.arange(len(x)),
                                 stimuli=[f"s{i}" for i in range(len(x))])
    fixed = pm.do(m, {"mu_dmax": 1.5, "sigma_dmax": 0.0, "z_dmax": [0.0], "mu_c": 0.3, "sigma_c": 0.0,
                      "z_c": [0.0], "mu_logit_location": 0.0, "sigma_logit_location": 0.0,
                      "z_logit_location": [0.0], "mu_log_scale": np.log(0.15), "sigma_log_scale": 0.0,
                      "z_log_scale": [0.0], "sigma_stimulus": 1.0})
    k = pm.draw(fixed["k"], random_seed=2)
    want = morph_sdt_curve(levels, [1.5], [0.3], [0.5], [0.15])[0]
    got = np.array([k[x == v].mean() for v in levels])
    np.testing.assert_allclose(got, want, atol=0.035)


def test_metad_probabilities_match_independent_numpy_formula():
    """The PyTensor meta-d′ likelihood (log-diff-exp of log Φ) equals the SciPy MLE's formula (different code) at
    random parameters, sums to 1, and stays finite where a clamp used to flatten it (meta-d′ = 12)."""
    from analysis.mle import _neg_loglik
    rng = np.random.default_rng(0)
    K = 4
    d, c1 = np.array([1.3]), np.array([-0.4])
    inc = rng.uniform(0.2, 0.9, (1, 2, K - 1))
    for md in (0.9, 12.0):
        lp = pytensor.function([], metad_log_probabilities(d, c1, np.array([md]), inc))()
        assert np.allclose(np.exp(lp).sum(axis=(2, 3)), 1) and np.isfinite(lp).all()
    lp = pytensor.function([], metad_log_probabilities(d, c1, np.array([0.9]), inc))()
    counts1, counts2 = rng.integers(1, 40, 2 * K), rng.integers(1, 40, 2 * K)
    c = metad_counts_layout(counts1[None], counts2[None])           # (stimulus, observer, answer, confidence)
    # type-2 part: divide out the type-1 answer probabilities (the MLE conditions on the answers)
    t1 = np.array([[norm.cdf(c1 + d / 2)[0], norm.cdf(-d / 2 - c1)[0]], [norm.cdf(c1 - d / 2)[0], norm.cdf(d / 2 - c1)[0]]])
    ll_pt = float(np.sum(c[:, 0] * (lp[:, 0] - np.log(t1)[:, :, None])))
    theta = np.r_[0.9, np.log(inc[0, 0]), np.log(inc[0, 1])]
    ll_np = -_neg_loglik(theta, counts1, counts2, d[0], c1[0], K, meta_c1="fixed")
    assert ll_pt == pytest.approx(ll_np, rel=1e-6)


def _one_rater_counts(n, seed, d=1.4, c=0.2, M=0.7):
    return simulate_single_rater_auth_counts(RaterProfile(d_prime=d, criterion=c, meta_ratio=M, lapse=0.0), n, seed)


def test_mle_agrees_with_metadpy_if_installed():
    metadpy = pytest.importorskip("metadpy.mle")
    cS1, cS2 = _one_rater_counts(1200, seed=5)
    mine = fit_metad_mle(cS1[0], cS2[0])
    theirs = metadpy.metad(nR_S1=cS1[0], nR_S2=cS2[0], nRatings=4, padding=False)
    assert mine["d"] == pytest.approx(float(theirs["dprime"].iloc[0]), abs=1e-6)
    assert mine["meta_d"] == pytest.approx(float(theirs["meta_d"].iloc[0]), abs=2e-3)


@pytest.mark.slow
def test_bayesian_single_rater_metad_agrees_with_mle():
    cS1, cS2 = _one_rater_counts(800, seed=7)
    mle = fit_metad_mle(cS1[0], cS2[0], meta_c1="fixed")
    m, _ = build_metad_model(cS1, cS2, ["r"], 4, pooled=[False])
    f = fit_model("metad1", m, CFG)
    md = draws(f.idata, "meta_d")[:, 0]
    assert abs(np.median(md) - mle["meta_d"]) < max(0.15, 1.0 * md.std())
    assert abs(float(np.median(draws(f.idata, "d")[:, 0])) - mle["d"]) < 0.1
    lo, hi = _interval(md)
    assert lo < 0.7 * 1.4 < hi  # and the truth


@pytest.mark.slow
def test_psychometric_single_observer_recovers_threshold_and_width():
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, 1500)
    t, w, lam, gam = 0.4, 0.1, 0.03, 0.25
    p = gam + (1 - gam - lam) / (1 + np.exp(-(x - t) / w))
    k = (rng.random(len(x)) < p).astype(int)
    m, _ = build_psychometric_model(x, k, np.ones_like(k), None, ["obs"], PsychometricSpec("logistic", gam, "free"),
                                    hierarchical=False, x_range=(0, 1))
    f = fit_model("psy", m, CFG)
    lo, hi = _interval(draws(f.idata, "threshold"))
    assert lo < t < hi and hi - lo < 0.15
    lo, hi = _interval(draws(f.idata, "width"))
    assert lo < w < hi


def test_weibull_needs_nonnegative_x():
    with pytest.raises(ValueError, match="non-negative"):
        build_psychometric_model(np.array([-0.1, 0.5]), np.array([0, 1]), np.array([1, 1]), None, ["o"],
                                 PsychometricSpec("weibull", 0.5, "free"), hierarchical=False)


@pytest.mark.slow
def test_psychometric_of_observers_at_chance_samples_cleanly():
    """Raters who cannot tell real from synthetic give flat morph curves; the intercept–slope form must sample them
    cleanly (threshold and width run off to infinity together there: the threshold–width form diverged) and put
    the group slope's interval around 0.  Asymptotes are fixed: with a flat curve a free γ or λ trades off with
    the intercept, a separate (prior-bounded) ridge that needs the full default draws."""
    df = simulate_study(8, 150, ("a", "b"), seed=5, profile=RaterProfile(d_prime=0.0, criterion=0.2, lapse=0.02),
                        morph_fraction=0.6, stimulus_sd=0.0, rater_sd={"d_prime": 0.0, "criterion": 0.3})
    a = prepare.morph_arrays(validate_responses(df).data)
    m, priors = build_psychometric_model(a["x"], a["k"], a["n"], a["rater_idx"], a["raters"],
                                         PsychometricSpec("cumulative_normal", 0.0, 0.02), x_range=(0, 1))
    f = fit_model("morph_chance", m, CFG)
    assert f.diagnostics.divergences <= 2, f.diagnostics.line()
    assert f.diagnostics.rhat_max < 1.02, f.diagnostics.line()
    lo, hi = _interval(draws(f.idata, "mu_slope"), 0.95)
    assert lo < 0 < hi
    assert {"mu_intercept", "mu_slope", "sigma_intercept", "sigma_slope"} <= set(priors)


def test_sampling_cores_defaults_to_one_process_per_chain(monkeypatch):
    from analysis.fitting import sampling_cores
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert sampling_cores(SamplerConfig(chains=2)) == 2
    assert sampling_cores(SamplerConfig(chains=8)) == 4
    assert sampling_cores(SamplerConfig(chains=2, cores=1)) == 1
    with pytest.raises(ValueError, match="cores"):
        sampling_cores(SamplerConfig(cores=0))


def test_posterior_predictive_replicates_a_thinned_posterior():
    """With ppc_draws = 100 the fit keeps all 2 × 400 posterior draws but replicates the data from ≤ 100 of them,
    spread over both chains and the whole run."""
    from analysis.fitting import thinned
    rng = np.random.default_rng(0)
    k = rng.binomial(20, 0.7, size=8)
    m, _ = build_psychometric_model(np.linspace(0, 1, 8), k, np.full(8, 20), None, ["one"],
                                    PsychometricSpec("logistic", 0.0, 0.0), hierarchical=False)
    f = fit_model("ppc_thinned", m, SamplerConfig(**{**CFG.to_dict(), "posterior_predictive": True, "ppc_draws": 100}))
    post, pp = f.idata.posterior, f.idata.posterior_predictive
    assert (post.sizes["chain"], post.sizes["draw"]) == (2, 400)
    assert pp.sizes["chain"] == 2 and pp.sizes["chain"] * pp.sizes["draw"] <= 100
    assert pp.sizes["chain"] * pp.sizes["draw"] >= 90
    assert int(pp["draw"].min()) == 0 and int(pp["draw"].max()) > 390
    assert thinned(f.idata, 0).posterior.sizes["draw"] == 400


def test_metad_point_estimates_are_padded_and_folded_is_unbiased():
    """d′/c1 come from the type-1 counts padded by 1/(2K) (finite for a perfect rater); folded: d′ = 2Φ⁻¹(acc), c1 = 0."""
    from analysis.models import type1_point_estimates
    K = 4
    perfect_S1 = np.array([[10, 5, 3, 2, 0, 0, 0, 0]])   # synthetic images: never answered "real"
    perfect_S2 = np.array([[0, 0, 0, 0, 1, 4, 6, 9]])    # real images: always answered "real"
    d, c = type1_point_estimates(perfect_S1, perfect_S2, K)
    d_perfect = d
    hr = (20 + K / (2 * K)) / (20 + 2 * K / (2 * K))
    assert np.isfinite(d).all() and d[0] == pytest.approx(2 * norm.ppf(hr)) and c[0] == pytest.approx(0.0, abs=1e-12)
    folded = np.array([[1, 2, 3, 4, 5, 6, 7, 12]])       # 10 incorrect, 30 correct
    d, c = type1_point_estimates(None, folded, K)
    assert d[0] == pytest.approx(2 * norm.ppf((30 + 0.5) / (40 + 1))) and c[0] == 0.0
    m, priors = build_metad_model(perfect_S1, perfect_S2, ["r"], K)
    # the point estimates are kept (data, and the initial point); d′ and c1 themselves are estimated from the
    # type-1 counts, unpooled (no between-rater SD to funnel)
    assert {"d_hat", "c1_hat"} <= {v.name for v in m.data_vars} and "mu_d" not in m.named_vars
    assert {"d", "c1", "c2"} <= {v.name for v in m.free_RVs} and "d, c1" in priors
    assert float(m.initial_point()["d"][0]) == pytest.approx(d_perfect[0])


def test_d_prime_credible_with_a_floor_agrees_with_monte_carlo():
    """P(d′ > floor) by the one integral against sampling the Beta posteriors of the hit and false-alarm rates."""
    from scipy import stats as st
    from analysis.models import d_prime_credible
    K = 2
    # HMeta-d order: answer S1 at confidence 2, 1, then answer S2 at 1, 2
    cS1 = np.array([[60, 40, 30, 20], [50, 30, 40, 30], [80, 50, 15, 5]])   # synthetic (S1) stimuli
    cS2 = np.array([[20, 30, 40, 60], [35, 35, 35, 45], [10, 20, 50, 70]])  # real (S2) stimuli
    rng = np.random.default_rng(0)
    for floor in (0.0, 0.5):
        p, ok = d_prime_credible(cS1, cS2, 0.975, floor)
        for r in range(3):
            h = rng.beta(1 + cS2[r, K:].sum(), 1 + cS2[r, :K].sum(), 200_000)
            f = rng.beta(1 + cS1[r, K:].sum(), 1 + cS1[r, :K].sum(), 200_000)
            mc = np.mean(st.norm.ppf(h) - st.norm.ppf(f) > floor)
            assert abs(p[r] - mc) < 0.005, (floor, r, p[r], mc)
        assert np.array_equal(ok, p >= 0.975)
    p0, _ = d_prime_credible(cS1, cS2, 0.975, 0.0)
    p5, _ = d_prime_credible(cS1, cS2, 0.975, 0.5)
    assert np.all(p5 <= p0) and p5[1] < p0[1] - 0.1   # rater 1 is weak: the floor matters
    # folded (correct/incorrect): d′ = 2Φ⁻¹(accuracy) > floor
    pf, _ = d_prime_credible(None, cS2, 0.975, 0.5)
    acc = rng.beta(1 + cS2[:, K:].sum(1)[:, None], 1 + cS2[:, :K].sum(1)[:, None], (3, 200_000))
    assert np.allclose(pf, np.mean(2 * st.norm.ppf(acc) > 0.5, axis=1), atol=0.005)


def test_metad_group_M_is_the_raters_geometric_mean_or_the_population_mean():
    """group_M by its form: "raters" (default) — the geometric mean of the M of the pooled raters that have one (the
    unpooled model and a rater without an M-ratio left out); "population" — exp(μ) of the hierarchical log M."""
    K = 2
    good_S1 = np.array([[60, 40, 20, 10]] * 4 + [[40, 35, 35, 40]] + [[70, 40, 15, 5]])
    good_S2 = np.array([[10, 20, 40, 60]] * 4 + [[38, 37, 37, 38]] + [[5, 15, 40, 70]])   # rater 4 at chance
    names = ["r0", "r1", "r2", "r3", "r4", "model"]
    pooled = [True] * 5 + [False]
    for form in ("raters", "population"):
        m, _ = build_metad_model(good_S1, good_S2, names, K, pooled=pooled, group=form)
        assert m.metad_info["no_M_raters"] == ["r4"] and m.metad_info["group_M_form"] == form
        with m:
            prior = pm.sample_prior_predictive(draws=50, random_seed=1, var_names=["group_M", "M", "mu_log_M"])
        g = prior.prior["group_M"].values.ravel()
        M = prior.prior["M"].values.reshape(-1, len(names))
        expected = (np.exp(np.log(M[:, :4]).mean(axis=1)) if form == "raters"
                    else np.exp(prior.prior["mu_log_M"].values.ravel()))
        np.testing.assert_allclose(g, expected, rtol=1e-6)
    with pytest.raises(ValueError, match="group"):
        build_metad_model(good_S1, good_S2, names, K, group="everyone")
