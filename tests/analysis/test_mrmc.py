"""MRMC (Obuchowski–Rockette, Hillis df) against a published worked example and against known truth.

The Van Dyke et al. (1993) data (tests/analysis/data/vandyke.csv) are the example of MRMCaov's documentation
(Smith & Hillis, docs/jss/MRMCaov.tex), of RJafroc (dataset02) and of iMRMC; the expected numbers below are
MRMCaov's printed output for the empirical AUC with DeLong and jackknife covariances."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.mrmc import or_hillis, reader_aucs, simulate_roe_metz, single_test, sizing

DATA = Path(__file__).parent / "data" / "vandyke.csv"


@pytest.fixture(scope="module")
def vandyke():
    vd = pd.read_csv(DATA, comment="#")
    truth = vd[(vd.reader == 1) & (vd.treatment == 1)].sort_values("case").truth.to_numpy()
    R = np.stack([vd[(vd.treatment == i) & (vd.reader == j)].sort_values("case").rating.to_numpy()
                  for i in (1, 2) for j in range(1, 6)])
    return reader_aucs(R, truth)


def test_reader_aucs_match_the_published_van_dyke_values(vandyke):
    published = [0.9196457, 0.8587762, 0.9038647, 0.9731079, 0.8297907,
                 0.9478261, 0.9053140, 0.9217391, 0.9993559, 0.9299517]
    np.testing.assert_allclose(vandyke.auc, published, atol=5e-8)


def test_or_hillis_with_delong_covariance_matches_mrmcaov(vandyke):
    o = or_hillis(vandyke.auc.reshape(2, 5), vandyke.cov("delong"))
    assert o["MS_T"] == pytest.approx(0.004796171, rel=1e-6)
    assert o["MS_TR"] == pytest.approx(0.0005510306, rel=1e-6)
    assert (o["Var"], o["Cov1"], o["Cov2"], o["Cov3"]) == pytest.approx(
        (0.0007921325, 0.0003420090, 0.0003395265, 0.0002358497), rel=1e-6)
    assert (o["F"], o["df2"], o["p"]) == pytest.approx((4.484854, 15.06611, 0.05123303), rel=1e-6)
    pair = o["pairs"][0]
    assert (pair["estimate"], pair["se"], pair["lo"], pair["hi"]) == pytest.approx(
        (-0.04380032, 0.0206825, -0.0878671960, 0.0002665519), rel=1e-5)
    t1, t2 = o["tests"]
    assert (t1["se"], t1["df"], t1["lo"], t1["hi"]) == pytest.approx((0.03307642, 12.59597, 0.8253461, 0.9687280),
                                                                     rel=1e-6)
    assert (t2["se"], t2["df"], t2["lo"], t2["hi"]) == pytest.approx((0.02150464, 12.56530, 0.8942155, 0.9874592),
                                                                     rel=1e-6)


def test_jackknife_covariances_match_mrmcaov(vandyke):
    o = or_hillis(vandyke.auc.reshape(2, 5), vandyke.cov("jackknife"))
    assert (o["Var"], o["Cov1"], o["Cov2"], o["Cov3"]) == pytest.approx(
        (0.0008022883, 0.0003466137, 0.0003440748, 0.0002390284), rel=1e-6)
    # the single-test analysis is the per-treatment part of the OR analysis
    t = single_test(reader_aucs_subset(vandyke, slice(0, 5)), cov="delong")
    assert (t["se"], t["df"]) == pytest.approx((0.03307642, 12.59597), rel=1e-6)


def reader_aucs_subset(r, rows):
    from analysis.mrmc import ReaderAUCs
    return ReaderAUCs(r.auc[rows], r.jack[rows], r.v10[rows], r.v01[rows])


def test_human_minus_model_test_holds_its_level_and_covers_under_roe_metz():
    """Known truth: 300 simulated reader studies (Roe & Metz model, 6 readers × 60 + 60 cases, ratings on 8
    levels) with the model's AUC equal to the readers' population mean AUC.  The 5 % test of human − model must
    reject near 5 % of the time (binomial 99 % band around 0.05 for 300 studies: 0.017–0.093) and the 95 %
    intervals of the readers' mean AUC must cover its true value near 95 % of the time (band 0.91–0.98)."""
    rng = np.random.default_rng(12)
    reject, cover = 0, 0
    n = 300
    for _ in range(n):
        sim = simulate_roe_metz(6, 60, 60, rng, levels=8)
        hum = reader_aucs(sim["ratings"], sim["truth"])
        mod = reader_aucs(sim["model"], sim["truth"])
        reject += single_test(hum - mod)["p"] < 0.05
        h = single_test(hum)
        cover += h["lo"] <= sim["auc_readers"] <= h["hi"]
    assert 0.017 <= reject / n <= 0.093, reject / n
    assert 0.91 <= cover / n <= 0.98, cover / n


def test_the_test_detects_a_real_difference_and_sizing_grows_with_readers_and_cases():
    rng = np.random.default_rng(3)
    p = []
    for _ in range(60):
        sim = simulate_roe_metz(8, 100, 100, rng, model_shift=0.08)
        p.append(single_test(reader_aucs(sim["ratings"], sim["truth"]) - reader_aucs(sim["model"], sim["truth"]))["p"])
    assert np.mean(np.array(p) < 0.05) > 0.5           # a model better by 0.08 AUC is usually detected
    sim = simulate_roe_metz(8, 100, 100, np.random.default_rng(4))
    pilot = single_test(reader_aucs(sim["ratings"], sim["truth"]) - reader_aucs(sim["model"], sim["truth"]))
    z = sizing(pilot, 0.05, [4, 16], [100, 800]).set_index(["readers", "cases"])["power"]
    assert z[(16, 800)] > z[(4, 800)] and z[(16, 800)] > z[(16, 100)] and z[(4, 100)] > 0.025


def test_type2_auc_with_each_readers_own_truth_uses_the_jackknife():
    rng = np.random.default_rng(0)
    truth = rng.random((3, 50)) < 0.7
    r = reader_aucs(rng.random((3, 50)) + truth, truth)
    assert r.v10 is None and r.cov("jackknife").shape == (3, 3)
    with pytest.raises(ValueError, match="DeLong"):
        r.cov("delong")


def test_raters_who_saw_different_images_skip_the_step_and_say_why():
    """Not a fully crossed design (each rater read other images): the report says why there is no MRMC analysis
    instead of counting a failed step."""
    from analysis.config import AnalysisConfig
    from analysis.simulate_study import simulate_study
    from analysis.steps import MRMC_STEP, Skipped
    from analysis.steps.base import Context, timed_run
    from cytocore.validation import validate_responses

    df = simulate_study(2, 40, ["a", "b", "c"], seed=3)
    first = df["participant_id"] == sorted(df["participant_id"].unique())[0]
    df.loc[first, "stimulus_id"] = df.loc[first, "stimulus_id"].astype(str) + "-seen-by-one"
    res = timed_run(MRMC_STEP, Context(validate_responses(df, min_attention_accuracy=None), AnalysisConfig()))
    assert isinstance(res, Skipped) and "fully crossed" in res.reason and "read by every reader" in res.reason
    crossed = simulate_study(2, 40, ["a", "b", "c"], seed=3)
    assert not isinstance(timed_run(MRMC_STEP, Context(validate_responses(crossed, min_attention_accuracy=None),
                                                       AnalysisConfig())), Skipped)
