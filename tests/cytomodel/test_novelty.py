"""Anomaly scores against a class's validation cells (best-error, class-gain): null draws, reference, CLI."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from cytomodel.classify import ClassifierConfig, estimate_errors, fit_reference, novelty_statistic, standardise
from cli_warnings import run_cli
from oracle_models import grey, oracle_model  # tests/cytomodel/oracle_models.py


def test_class_gain_evaluates_the_null_class_on_every_draw_and_separates_an_unexplained_cell():
    cfg = ClassifierConfig(trials=8, precision="fp32", anomaly="class-gain")
    images = grey(3)
    # "normal": its best class explains it far better than no class; "unseen": no class helps
    normal = estimate_errors(oracle_model([0.3, 1.0, 1.1], 1.0), images, cfg)
    unseen = estimate_errors(oracle_model([0.97, 1.0, 1.1], 1.0), images, cfg)
    plain = estimate_errors(oracle_model([0.3, 1.0, 1.1], 1.0), images, ClassifierConfig(trials=8, precision="fp32"))
    assert normal.null_errors.shape == (3, 8) and np.isfinite(normal.null_errors).all()
    assert plain.null_errors is None
    np.testing.assert_array_equal(normal.unet_calls, plain.unet_calls + 8)        # one null call per draw
    np.testing.assert_allclose(normal.errors, plain.errors)                       # the class errors are unchanged
    gain_n = novelty_statistic(normal.draw_errors, normal.draws_run, normal.errors.argmin(1), "class-gain",
                               normal.null_errors)
    gain_u = novelty_statistic(unseen.draw_errors, unseen.draws_run, unseen.errors.argmin(1), "class-gain",
                               unseen.null_errors)
    # the statistic is the mean log ratio of the predicted class's error to the null's, draw by draw
    best = normal.errors.argmin(1)
    direct = np.log(normal.draw_errors[np.arange(3), :, best] / normal.null_errors).mean(axis=1)
    np.testing.assert_allclose(gain_n, direct)
    assert gain_u.min() > gain_n.max() + 1.0
    best_err = novelty_statistic(normal.draw_errors, normal.draws_run, best, "best-error")
    np.testing.assert_allclose(best_err, np.log(normal.draw_errors[np.arange(3), :, best]).mean(axis=1))
    with pytest.raises(ValueError, match="null"):
        novelty_statistic(plain.draw_errors, plain.draws_run, best, "class-gain")


def test_reference_standardises_each_class_and_pools_a_rare_one():
    rng = np.random.default_rng(0)
    # skewed (gamma) statistics with a different location and spread per class: not what the median/MAD assume
    raw = np.r_[rng.gamma(4.0, 0.5, 400) + 3.0, rng.gamma(4.0, 2.0, 400) - 5.0, rng.normal(0, 1, 4)]
    pred = np.array(["a"] * 400 + ["b"] * 400 + ["c"] * 4, dtype=object)
    ref = fit_reference(raw, pred, ["a", "b", "c"])
    z = standardise(raw, pred, ref)
    for c in ("a", "b"):
        zc = z[pred == c]
        assert abs(np.median(zc)) < 0.05
        assert 0.9 < 1.4826 * np.median(np.abs(zc - np.median(zc))) < 1.1
        assert ref["per_class"][c]["n"] == 400
    assert ref["per_class"]["c"].get("pooled") is True
    # a cell far above its own class's cells scores high even where another class's cells are typically higher
    assert standardise(np.array([8.0]), ["a"], ref)[0] > 3 > standardise(np.array([8.0]), ["b"], ref)[0]
    with pytest.raises(ValueError, match="at least"):
        fit_reference(raw[:5], pred[:5], ["a"])


def test_cli_calibrate_fits_the_reference_and_classify_uses_it(tiny_model_dir, tiny_dataset, tmp_path):
    from cytomodel.cli import main

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    opts = ["--trials", "4", "--min-trials", "2", "--precision", "fp32", "--anomaly", "class-gain"]
    out = tmp_path / "val.csv"
    caught = run_cli(["classify", "--model", str(model_dir), "--data", str(tiny_dataset), "--out", str(out)] + opts)
    assert any("no validation reference" in m for m in caught)
    val = pd.read_csv(out)
    assert {"novelty_raw", "anomaly_score", "zeta"} <= set(val.columns)
    np.testing.assert_allclose(val.anomaly_score, val.novelty_raw)                # raw until a reference exists
    assert main(["calibrate", "--model", str(model_dir), "--data", str(tiny_dataset), "--from-results", str(out),
                 "--rescored-out", str(tmp_path / "val_T.csv")] + opts) == 0
    fits = json.loads((model_dir / "cytomodel.json").read_text())["novelty_fits"]
    assert len(fits) == 1 and fits[0]["config"]["anomaly"] == "class-gain" and fits[0]["n_images"] == len(val)
    again = tmp_path / "again.csv"
    assert main(["classify", "--model", str(model_dir), "--data", str(tiny_dataset), "--out", str(again)] + opts) == 0
    new, rescored = pd.read_csv(again), pd.read_csv(tmp_path / "val_T.csv")
    want = standardise(new.novelty_raw.to_numpy(), list(new.pred_class), fits[0]["reference"])
    np.testing.assert_allclose(new.anomaly_score, want)
    np.testing.assert_allclose(rescored.anomaly_score, new.anomaly_score, rtol=1e-9)
    # zeta is untouched by the choice of anomaly score; a second fit for the same settings replaces the first
    assert main(["calibrate", "--model", str(model_dir), "--data", str(tiny_dataset), "--from-results", str(out)]
                + opts) == 0
    assert len(json.loads((model_dir / "cytomodel.json").read_text())["novelty_fits"]) == 1


def test_reference_only_fits_a_labs_reference_on_a_copy_and_keeps_the_model_and_its_temperature(
        tiny_model_dir, tiny_dataset, tmp_path):
    from cytomodel.cli import main

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    opts = ["--trials", "4", "--min-trials", "2", "--precision", "fp32", "--anomaly", "class-gain"]
    out = tmp_path / "val.csv"
    assert main(["classify", "--model", str(model_dir), "--data", str(tiny_dataset), "--out", str(out)] + opts) == 0
    assert main(["calibrate", "--model", str(model_dir), "--data", str(tiny_dataset), "--from-results", str(out)]
                + opts) == 0
    record = (model_dir / "cytomodel.json").read_bytes()
    training_lab = json.loads(record)
    # another lab: every cell reads 2 units stranger than the training lab's, no labels; plus cells labelled with a
    # class the model does not know, which are left out of the fit
    val = pd.read_csv(out)
    lab = val.drop(columns="label").assign(novelty_raw=val.novelty_raw + 2.0)
    lab_table = tmp_path / "lab.csv"
    lab.to_csv(lab_table, index=False)
    copy = tmp_path / "model-lab"
    assert main(["calibrate", "--model", str(model_dir), "--data", "lab/", "--from-results", str(lab_table),
                 "--reference-only", "--out-model", str(copy), "--rescored-out", str(tmp_path / "lab_T.csv")]
                + opts) == 0
    assert (model_dir / "cytomodel.json").read_bytes() == record            # the model itself untouched
    copied = json.loads((copy / "cytomodel.json").read_text())
    assert copied["temperature"] == training_lab["temperature"]            # the temperature kept
    (fit,) = copied["novelty_fits"]
    assert fit["reference_only"] is True and fit["n_images"] == len(lab)
    rescored = pd.read_csv(tmp_path / "lab_T.csv")
    on_lab = standardise(lab.novelty_raw.to_numpy(), list(lab.pred_class), fit["reference"])
    on_training = standardise(lab.novelty_raw.to_numpy(), list(lab.pred_class),
                              training_lab["novelty_fits"][0]["reference"])
    np.testing.assert_allclose(rescored.anomaly_score, on_lab)
    assert abs(np.median(on_lab)) < 0.5 < 2.0 < np.median(on_training)   # typical for its lab, not for PBC's
    again = tmp_path / "again.csv"
    assert main(["classify", "--model", str(copy), "--data", str(tiny_dataset), "--out", str(again)] + opts) == 0
    new = pd.read_csv(again)
    np.testing.assert_allclose(new.anomaly_score, standardise(new.novelty_raw.to_numpy(), list(new.pred_class),
                                                              fit["reference"]))
    # labelled cells of classes the model does not know are left out; a run again into the copy an earlier
    # (interrupted) run made goes on there
    mixed = pd.concat([val, val.head(5).assign(label="blast")])
    mixed.to_csv(tmp_path / "mixed.csv", index=False)
    assert main(["calibrate", "--model", str(model_dir), "--data", "lab/", "--from-results",
                 str(tmp_path / "mixed.csv"), "--reference-only", "--out-model", str(copy)] + opts) == 0
    assert json.loads((copy / "cytomodel.json").read_text())["novelty_fits"][0]["n_images"] == len(val)
    assert (model_dir / "cytomodel.json").read_bytes() == record


def test_reference_only_refuses_what_would_lose_a_reference(tiny_model_dir, tmp_path, capsys):
    from cytomodel.cli import main

    opts = ["--data", "lab/", "--from-results", "lab.csv", "--reference-only"]
    assert main(["calibrate", "--anomaly", "class-gain"] + opts) == 2               # the bundled model, in place
    assert "--out-model" in capsys.readouterr().err
    assert main(["calibrate", "--model", str(tiny_model_dir)] + opts) == 2         # zeta has no reference
    assert "zeta" in capsys.readouterr().err
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    assert main(["calibrate", "--model", str(tiny_model_dir), "--anomaly", "class-gain", "--out-model", str(taken)]
                + opts) == 2
    assert "not a copy" in capsys.readouterr().err and (taken / "keep.txt").read_text() == "mine"
    assert main(["calibrate", "--model", str(tiny_model_dir), "--data", "x/", "--out-model", str(tmp_path / "new"),
                 "--anomaly", "class-gain"]) == 2
    assert "--reference-only" in capsys.readouterr().err and not (tmp_path / "new").exists()
