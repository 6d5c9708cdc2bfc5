"""Triage: the fitted rule keeps its promises on fresh cells drawn from the same population, and fails safe."""
import numpy as np
import pandas as pd
import pytest

from cytomodel.classify.triage import (apply_triage, fit_triage, read_classification_table, selective_risk_curve,
                                      summarise_triage)

CLASSES = ["a", "b", "c", "d"]


def _cells(n, rng, novel_share=0.0):
    """A classifier's table from a simulator unlike the rule: Dirichlet probabilities whose sharpness sets both the
    confidence and (through a logistic link) the chance of being right; novel cells get flat probabilities and a high
    anomaly score drawn from another distribution."""
    sharp = rng.gamma(2.0, 2.0, n)
    label = rng.integers(0, len(CLASSES), n)
    p_right = 1 / (1 + np.exp(-(sharp - 1.0)))
    right = rng.random(n) < p_right
    pred = np.where(right, label, (label + rng.integers(1, len(CLASSES), n)) % len(CLASSES))
    conf = np.clip(0.25 + 0.75 * (1 - np.exp(-sharp / 3)) + rng.normal(0, 0.03, n), 0.25, 1)
    anomaly = rng.normal(-1.0, 0.5, n) - 0.1 * sharp
    novel = rng.random(n) < novel_share
    anomaly[novel] = rng.normal(1.0, 0.6, novel.sum())
    labels = np.array(CLASSES + ["novel"])[np.where(novel, len(CLASSES), label)]
    df = pd.DataFrame({"image": [f"cell{i}.png" for i in range(n)], "label": labels,
                       "pred_class": np.array(CLASSES)[pred], "confidence": conf, "anomaly_score": anomaly})
    for j, c in enumerate(CLASSES):
        df[f"prob_{c}"] = np.where(pred == j, conf, (1 - conf) / 3)
    return df


def test_error_among_accepted_stays_below_target_over_repeated_calibrations():
    target, delta, over = 0.05, 0.1, 0
    coverages, flag_rates = [], []
    for seed in range(40):
        rng = np.random.default_rng(seed)
        rule = fit_triage(_cells(1500, rng), target_error=target, target_flag_rate=0.05, delta=delta)
        test = summarise_triage(apply_triage(_cells(20000, rng), rule))
        over += test["error_among_accepted"] > target
        coverages.append(test["coverage"])
        flag_rates.append(test["flag_rate"])
    assert over <= 40 * delta + 3                     # the PAC promise: at most δ of calibrations overshoot
    assert 0.2 < np.mean(coverages) < 0.95            # and the rule is not trivially accepting nothing
    # conformal: the flag rate is ≤ α on average over calibrations (sd of the mean of 40 ≈ 0.001), and not far below
    assert 0.045 < np.mean(flag_rates) < 0.05 + 0.003


def test_novel_cells_are_flagged_and_decisions_explain_themselves():
    rng = np.random.default_rng(1)
    rule = fit_triage(_cells(1000, rng), target_error=0.05, target_flag_rate=0.02)
    out = apply_triage(_cells(2000, rng, novel_share=0.2), rule)
    s = summarise_triage(out, classes=["novel"])
    assert s["by_label"]["novel"]["flag"] > 0.8 and s["by_label"]["novel"]["accept"] < 0.1
    assert set(out["decision"]) <= {"accept", "review", "flag"}
    assert (out.loc[out.decision != "accept", "class"] == "").all()
    assert out.loc[out.decision == "flag", "why"].str.contains("unlike the trained classes").all()
    assert "exchangeable" in rule.guarantee


def test_an_unreachable_target_accepts_nothing_rather_than_breaking_its_promise():
    rng = np.random.default_rng(2)
    rule = fit_triage(_cells(200, rng), target_error=0.001, delta=0.05)   # 200 cells cannot certify 0.1 %
    assert rule.accept_threshold == float("inf") and rule.to_dict()["accept_threshold"] is None
    assert (apply_triage(_cells(100, rng), rule)["decision"] != "accept").all()


def test_baseline_tables_work_and_bad_tables_name_what_is_missing():
    rng = np.random.default_rng(3)
    d = _cells(500, rng)
    base = d.rename(columns={"image": "path", "pred_class": "predicted",
                             **{f"prob_{c}": f"p_{c}" for c in CLASSES}}).drop(columns="anomaly_score")
    t = read_classification_table(base)
    assert "entropy" in t.attrs["anomaly_source"] and len(t) == 500
    rule = fit_triage(base, target_error=0.1)
    assert rule.anomaly_source.startswith("predictive entropy")
    curve = selective_risk_curve(base)
    assert curve["coverage"].iloc[-1] == 1 and curve["selective_risk"].iloc[0] <= curve["selective_risk"].iloc[-1]
    with pytest.raises(ValueError, match="no 'label' column"):
        fit_triage(d.drop(columns="label"))
    with pytest.raises(ValueError, match="confidence"):
        read_classification_table(d.drop(columns="confidence"), name="x.csv")
    with pytest.raises(ValueError, match="target_error"):
        fit_triage(d, target_error=1.5)


def test_cells_classify_could_not_frame_go_to_review_and_stay_out_of_calibration():
    rng = np.random.default_rng(4)
    cal, cells = _cells(800, rng), _cells(300, rng)
    cal["framing_status"] = cells["framing_status"] = "ok"
    for d in (cal, cells):                            # classify keeps such a row without a prediction
        d.loc[:9, ["pred_class", "confidence", "anomaly_score"]] = np.nan
        d.loc[:9, "framing_status"] = "two_cells"
    rule = fit_triage(cal, target_error=0.1)
    assert rule.n_calibration == 790 and rule.calibration["n_not_framed_left_out"] == 10
    framed = fit_triage(cal.iloc[10:], target_error=0.1)             # as if those rows were not there
    assert (rule.accept_threshold, rule.flag_threshold) == (framed.accept_threshold, framed.flag_threshold)
    out = apply_triage(cells, rule)
    assert (out["decision"][:10] == "review").all() and (out["class"][:10] == "").all()
    assert out["why"][:10].str.contains("not framed: two_cells").all() and (out["predicted"][:10] == "").all()
    assert out.iloc[10:].equals(apply_triage(cells.iloc[10:], rule).set_index(out.index[10:]))
    curve = selective_risk_curve(cells)
    assert len(curve) == 290 and curve["coverage"].iloc[-1] == pytest.approx(290 / 300)
    lost = cells.copy()
    lost.loc[20, ["pred_class", "confidence"]] = np.nan          # no prediction for no stated reason: an error
    with pytest.raises(ValueError, match="re-run the classifier"):
        apply_triage(lost, rule)


def test_run_triage_writes_decisions_summary_and_the_risk_coverage_figure(tmp_path):
    import json

    from cytomodel.classify.triage import run_triage
    rng = np.random.default_rng(4)
    diff = (_cells(800, rng), _cells(600, rng, novel_share=0.1))
    base = tuple(d.drop(columns="anomaly_score") for d in (_cells(800, rng), _cells(600, rng, novel_share=0.1)))
    rec = run_triage(tmp_path, {"diffusion": diff, "baseline": base}, target_error=0.05, held_out=["novel"],
                     report_targets=(0.05, 0.1))
    saved = json.loads((tmp_path / "triage.json").read_text())
    assert saved["classifiers"].keys() == {"diffusion", "baseline"} and "code_version" in saved
    for name in ("diffusion", "baseline"):
        dec = pd.read_csv(tmp_path / f"decisions_{name}.csv")
        assert len(dec) == 600 and set(dec["decision"]) <= {"accept", "review", "flag"}
        at = rec["classifiers"][name]["at_targets"]
        assert at["0.05"]["coverage"] <= at["0.1"]["coverage"]       # a looser target accepts more
    assert (tmp_path / "risk_coverage.pdf").stat().st_size > 1000 and (tmp_path / "risk_coverage.png").is_file()


def test_triage_cli_on_both_classifiers_tables(tmp_path, capsys):
    from cytomodel.cli import main
    rng = np.random.default_rng(5)
    paths = {}
    for name, frame in (("d_val", _cells(600, rng)), ("d_test", _cells(400, rng, novel_share=0.1)),
                        ("b_val", _cells(600, rng).drop(columns="anomaly_score")),
                        ("b_test", _cells(400, rng).drop(columns="anomaly_score"))):
        paths[name] = tmp_path / f"{name}.csv"
        frame.to_csv(paths[name], index=False)
    out = tmp_path / "triage"
    assert main(["triage", "--calibration", str(paths["d_val"]), "--cells", str(paths["d_test"]), "--compare",
                 f"baseline={paths['b_val']},{paths['b_test']}", "--target-error", "0.05", "--held-out", "novel",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "diffusion: accept" in text and "baseline: accept" in text and "novel: flagged" in text
    assert (out / "decisions_baseline.csv").is_file() and (out / "risk_coverage.png").is_file()
    assert main(["triage", "--calibration", str(tmp_path / "missing.csv"), "--cells", str(paths["d_test"]),
                 "--out", str(out)]) == 2
    assert "cytomodel classify" in capsys.readouterr().err


def test_held_out_cells_in_the_calibration_table_are_left_out_of_the_fit(tmp_path):
    """A held-out class's calibration cells would loosen the flag threshold (they are the anomalies) and count as
    errors of the accept rule; the fit leaves them out and says how many; the summary splits trained classes off."""
    from cytomodel.classify.triage import run_triage
    rng = np.random.default_rng(6)
    cal, cells = _cells(800, rng), _cells(600, rng, novel_share=0.15)
    with_novel = pd.concat([cal, cells[cells["label"] == "novel"]], ignore_index=True)
    rec = run_triage(tmp_path / "a", {"diffusion": (with_novel, cells)}, target_error=0.05, held_out=["novel"])
    clean = run_triage(tmp_path / "b", {"diffusion": (cal, cells)}, target_error=0.05, held_out=["novel"])
    r, c = rec["classifiers"]["diffusion"], clean["classifiers"]["diffusion"]
    assert r["calibration_cells_of_held_out_classes_left_out"] == int((cells["label"] == "novel").sum()) > 0
    assert c["calibration_cells_of_held_out_classes_left_out"] == 0
    assert r["rule"] == c["rule"]
    trained = r["summary"]["trained_classes"]
    assert trained["n"] == int((cells["label"] != "novel").sum())
    assert trained["errors_among_accepted"] <= r["summary"]["errors_among_accepted"]
