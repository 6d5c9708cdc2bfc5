"""The simulator follows its documented generative model (checked against closed-form probabilities)."""
import numpy as np
import pytest
from scipy.stats import norm

from cytocore.validation import validate_responses
from analysis.simulate import RaterProfile, simulate_response, simulate_study

CLASSES = ("a", "b", "c", "d")


def _run(profile, stim, n, seed=0):
    rng = np.random.default_rng(seed)
    return [simulate_response(profile, stim, CLASSES, rng) for _ in range(n)]


def _binom_ok(k, n, p, z=4.0):
    return abs(k / n - p) <= z * np.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("source,m", [("real", 0.0), ("synthetic", 1.0), ("synthetic", 0.5)])
def test_type1_rates_match_sdt(source, m):
    prof = RaterProfile(d_prime=1.6, criterion=0.3, lapse=0.0, meta_ratio=0.7)
    out = _run(prof, {"source": source, "morph_strength": m, "true_class": "a"}, 4000)
    k = sum(o["auth_response"] == "real" for o in out)
    assert _binom_ok(k, 4000, norm.cdf(0.3 + 1.6 * (0.5 - m)))


def _meta_conf_probs(d, c, M, step, K, s):
    """Independent closed form: P(confidence k | answer 'real', stimulus s) under the meta-d′ model."""
    mu, mc = M * d * s, -c  # meta-criterion = type-1 criterion (HMeta-d)
    edges = mc + step * np.arange(K)
    upper = np.r_[norm.sf(edges - mu), 0.0]
    p = upper[:-1] - upper[1:]
    return p / p.sum()


def test_confidence_follows_meta_d_model():
    d, c, M, step, K = 1.5, -0.2, 0.6, 0.5, 4
    prof = RaterProfile(d_prime=d, criterion=c, meta_ratio=M, confidence_step=step, lapse=0.0)
    out = _run(prof, {"source": "real", "morph_strength": 0.0, "true_class": "a"}, 6000, seed=1)
    lv = np.array([o["auth_confidence_level"] for o in out if o["auth_response"] == "real"])
    expect = _meta_conf_probs(d, c, M, step, K, 0.5)
    for k in range(1, K + 1):
        assert _binom_ok((lv == k).sum(), len(lv), expect[k - 1]), (k, (lv == k).mean(), expect[k - 1])


def test_metacognitive_efficiency_changes_type2_sensitivity():
    from analysis.metrics import type2_auroc
    aurocs = []
    for M in (0.0, 1.0):
        prof = RaterProfile(d_prime=1.5, meta_ratio=M, lapse=0.0)
        rng = np.random.default_rng(2)
        corr, lev = [], []
        for i in range(3000):
            src = "real" if i % 2 else "synthetic"
            o = simulate_response(prof, {"source": src, "morph_strength": float(src == "synthetic"),
                                         "true_class": "a"}, CLASSES, rng)
            corr.append(o["auth_response"] == src)
            lev.append(o["auth_confidence_level"])
        aurocs.append(type2_auroc(np.array(corr), np.array(lev)))
    assert abs(aurocs[0] - 0.5) < 0.04 and aurocs[1] > 0.65


def test_class_accuracy_constant_mode_and_lapse():
    prof = RaterProfile(class_threshold=None, class_accuracy=0.7, lapse=0.0)
    out = _run(prof, {"source": "real", "morph_strength": 0.0, "true_class": "b"}, 4000, seed=3)
    assert _binom_ok(sum(o["class_response"] == "b" for o in out), 4000, 0.7)
    prof = RaterProfile(class_threshold=None, class_accuracy=0.9, lapse=0.5)
    out = _run(prof, {"source": "real", "morph_strength": 0.0, "true_class": "b"}, 4000, seed=4)
    assert _binom_ok(sum(o["class_response"] == "b" for o in out), 4000, 0.5 * 0.9 + 0.5 / 4)


def test_study_table_is_valid_seeded_and_carries_truth():
    a = simulate_study(n_raters=3, n_trials=40, seed=5)
    b = simulate_study(n_raters=3, n_trials=40, seed=5)
    c = simulate_study(n_raters=3, n_trials=40, seed=6)
    assert a.equals(b) and not a.equals(c)
    rep = validate_responses(a)
    assert len(rep.data) == 120
    t = a.attrs["truth"]
    assert set(t["raters"]) == {"r00", "r01", "r02"} and "accuracy" in t["group"]
    assert np.allclose(a.filter(like="model_prob_").sum(axis=1), 1)
