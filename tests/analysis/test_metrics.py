import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score, roc_auc_score

from analysis import metrics
from analysis.power import decide, equivalence_power


def test_type2_auroc_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    corr = rng.random(500) < 0.7
    conf = np.clip(np.round(corr * 0.8 + rng.normal(2, 1, 500)), 1, 4)
    assert metrics.type2_auroc(corr, conf) == pytest.approx(roc_auc_score(corr, conf))
    assert np.isnan(metrics.type2_auroc(np.ones(5, bool), np.arange(5)))


def test_kappa_matches_sklearn():
    rng = np.random.default_rng(1)
    a = rng.choice(list("abc"), 300)
    b = np.where(rng.random(300) < 0.6, a, rng.choice(list("abc"), 300))
    assert metrics.cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))


def test_calibration_perfect_and_overconfident():
    rng = np.random.default_rng(2)
    p = rng.uniform(0.5, 1, 20000)
    y = rng.random(20000) < p
    assert metrics.calibration(p, y, 10)["ece"] < 0.02
    assert metrics.calibration(np.minimum(p + 0.2, 1), y, 10)["ece"] > 0.12


def test_confident_errors_counts():
    corr = np.array([1, 0, 0, 1, 0], bool)
    lev = np.array([4, 4, 2, 4, 4])
    ce = metrics.confident_errors(corr, lev, 4)
    assert ce["confident_errors"] == 2 and ce["rate_all"] == pytest.approx(0.4) and ce["rate_top"] == pytest.approx(0.5)
    assert ce["rate_all_lo"] < 0.4 < ce["rate_all_hi"]


def test_type2_roc_endpoints():
    f, h = metrics.type2_roc(np.array([1, 1, 0, 0], bool), np.array([4, 3, 2, 1]), 4)
    assert f[0] == h[0] == 0 and f[-1] == h[-1] == 1 and np.all(np.diff(h) >= 0)


def test_power_decisions_behave():
    assert decide(0.47, 0.53, 0.05) == "equivalent"
    assert decide(0.56, 0.7, 0.05) == "different"
    assert decide(0.48, 0.58, 0.05) == "undecided"
    t = equivalence_power(mu_d=0.0, sigma_d=0.2, sigma_c=0.1, sigma_u=0.2, n_raters=(5, 40), n_trials=(300,),
                          n_sims=200, seed=0)
    small, big = t["p_equivalent"].to_numpy()
    assert big > small and big > 0.8  # more raters → more equivalence decisions at true chance
    t = equivalence_power(mu_d=1.0, n_raters=(20,), n_trials=(300,), n_sims=100, seed=0)
    assert t["p_different"].iloc[0] > 0.9
