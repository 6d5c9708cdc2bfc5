"""Diffusion classifier: error estimation, adaptive pruning, calibration, anomaly score, CLI (tiny model)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cytomodel.classify import (ClassifierConfig, anomaly_scores, classify_arrays, classify_images, estimate_errors,
                                fit_temperature, nll_of, replay_strategy, softmax_neg, zeta_scores)
from cytomodel.classify.draw_plan import _ttest_prune
from cytomodel.data import DataError, load_dataset
from cytomodel.models import load_model
from oracle_models import grey, oracle_model  # tests/cytomodel/oracle_models.py

FAST = dict(trials=8, precision="fp32", min_trials=4)


@pytest.fixture(scope="module")
def tiny(tiny_model_dir, tiny_dataset):
    model = load_model(tiny_model_dir)
    data = load_dataset(tiny_dataset, model.resolution)
    pick = np.arange(0, len(data.images), 6)  # 6 images, 2 per class
    return model, data.images[pick], data.labels[pick]


# ------------------------------------------------------------------------------------------ estimation
def test_batched_and_unbatched_errors_agree(tiny):
    model, images, _ = tiny
    cfg = ClassifierConfig(strategy="exhaustive", **FAST)
    together = estimate_errors(model, images, cfg)
    one_by_one = [estimate_errors(model, images[i:i + 1], ClassifierConfig(
        strategy="exhaustive", image_batch=1, batch_size=3, **FAST)) for i in range(len(images))]
    np.testing.assert_allclose(together.errors, np.concatenate([e.errors for e in one_by_one]), rtol=1e-4)
    np.testing.assert_array_equal(together.timesteps, np.concatenate([e.timesteps for e in one_by_one]))
    assert (together.unet_calls == 8 * 3).all()
    # adaptive too: the same decisions image by image
    ada = estimate_errors(model, images, ClassifierConfig(strategy="paired-ttest", **FAST))
    ada1 = [estimate_errors(model, images[i:i + 1], ClassifierConfig(strategy="paired-ttest", image_batch=1, **FAST))
            for i in range(len(images))]
    np.testing.assert_array_equal(ada.unet_calls, [e.unet_calls[0] for e in ada1])


def test_adaptive_run_is_a_replay_of_the_exhaustive_one(tiny):
    model, images, _ = tiny
    full = estimate_errors(model, images, ClassifierConfig(strategy="exhaustive", trials=12, precision="fp32"))
    for cfg in (ClassifierConfig(strategy="paired-ttest", trials=10, min_trials=3, test_every=2, p_value=0.2,
                                 precision="fp32"),
                ClassifierConfig(strategy="topk", trials=10, topk_schedule=((2, 2), (5, 1)), precision="fp32")):
        live = estimate_errors(model, images, cfg)
        replayed = replay_strategy(full, cfg)
        np.testing.assert_array_equal(live.unet_calls, replayed.unet_calls)
        np.testing.assert_allclose(live.errors, replayed.errors, rtol=1e-4)
        assert live.unet_calls.sum() < 10 * 3 * len(images)  # something was pruned


def test_same_seed_same_result_other_seed_differs(tiny):
    model, images, _ = tiny
    cfg = ClassifierConfig(**FAST)
    a = classify_arrays(model, images, cfg, seed=3)
    b = classify_arrays(model, images[::-1], cfg, seed=3).iloc[::-1].reset_index(drop=True)  # order-independent
    pd.testing.assert_frame_equal(a, b, rtol=1e-5)
    c = classify_arrays(model, images, cfg, seed=4)
    assert not np.allclose(a.filter(like="err_").to_numpy(), c.filter(like="err_").to_numpy())


def test_output_columns_and_probabilities(tiny):
    model, images, _ = tiny
    with pytest.warns(UserWarning, match="no fitted temperature"):
        df = classify_arrays(model, images, ClassifierConfig(**FAST))
    names = model.class_names
    expected = ["pred_class", "runner_up", "confidence", "entropy", "margin", "anomaly_score", "unet_calls"]
    assert all(c in df for c in expected + [f"prob_{c}" for c in names] + [f"err_{c}" for c in names])
    probs = df[[f"prob_{c}" for c in names]].to_numpy()
    np.testing.assert_allclose(probs.sum(1), 1, rtol=1e-9)
    errs = df[[f"err_{c}" for c in names]].to_numpy()
    assert list(df.pred_class) == [names[i] for i in errs.argmin(1)]
    assert (df.runner_up != df.pred_class).all()
    np.testing.assert_allclose(df.confidence, probs.max(1))
    assert (df.temperature == 1.0).all()


def test_pruning_keeps_a_far_better_class_and_saves_calls():
    model = oracle_model([0.3, 1.0, 1.05, 0.95, 1.02])
    images = grey(12)
    exhaustive = estimate_errors(model, images, ClassifierConfig(strategy="exhaustive", trials=24, precision="fp32"))
    assert (exhaustive.errors.argmin(1) == 0).all()
    for strategy in ("paired-ttest", "topk"):
        for seed in range(3):
            cfg = ClassifierConfig(strategy=strategy, trials=24, min_trials=3, test_every=1, precision="fp32",
                                   topk_schedule=((2, 3), (6, 1)), seed=seed)
            est = estimate_errors(model, images, cfg)
            last = est.draw_errors[np.arange(12), est.draws_run - 1]
            assert not np.isnan(last[:, 0]).any(), f"{strategy}: the far better class was pruned"
            assert (est.errors.argmin(1) == 0).all()
            assert est.unet_calls.mean() < exhaustive.unet_calls.mean() / 2, strategy


def test_ttest_prune_drops_only_significantly_worse_classes():
    rng = np.random.default_rng(0)
    k = 12
    common = rng.normal(0, 1, (k, 1))  # shared per-trial noise: pairing removes it
    trial = common + np.stack([np.full(k, 1.0), np.full(k, 1.5), np.full(k, 1.0)], 1) + rng.normal(0, 0.05, (k, 3))
    trial[:, 2] += rng.normal(0, 0.05, k)  # class 2 is as good as class 0 within noise
    keep = _ttest_prune(trial, k, [0, 1, 2], 2e-3)
    assert 1 not in keep and 0 in keep and 2 in keep


# ------------------------------------------------------------------------------------------ calibration, anomaly
def test_temperature_fit_recovers_temperature_and_lowers_nll():
    rng = np.random.default_rng(1)
    n, c, t_true = 3000, 5, 0.02
    errors = 0.5 + rng.normal(0, 0.03, (n, c))
    p = softmax_neg(errors, t_true)
    labels = np.array([rng.choice(c, p=row) for row in p])
    t, nll1, nllt = fit_temperature(errors, labels)
    assert abs(t / t_true - 1) < 0.15
    assert nllt < nll1 - 0.05
    assert nllt <= nll_of(errors, labels, t * 1.3) and nllt <= nll_of(errors, labels, t / 1.3)


def test_anomaly_score_ranks_constructed_outlier_above_inliers():
    rng = np.random.default_rng(2)
    inliers = 1.0 + rng.normal(0, 0.02, (50, 8))
    inliers[np.arange(50), rng.integers(0, 8, 50)] -= 0.3   # one class clearly best
    outlier = 1.0 + rng.normal(0, 0.02, (1, 8))             # no class stands out
    scores = anomaly_scores(np.vstack([inliers, outlier]))
    assert scores[-1] > scores[:-1].max()
    # scale-free, and equal to the paper's loop formula
    np.testing.assert_allclose(zeta_scores(inliers * 7.0), zeta_scores(inliers))
    e = np.sort(inliers[0] - inliers[0].min())
    e = e / e.mean()
    k = 7
    ref = sum(abs(e[j] - e[0]) / k for j in range(1, k)) - sum(
        abs(e[l] - e[j]) / (k * (k - 1)) for j in range(1, k) for l in range(1, k))
    assert zeta_scores(inliers[:1])[0] == pytest.approx(ref)


def test_anomaly_score_with_the_oracle_model():
    images = grey(4)
    inlier = estimate_errors(oracle_model([0.3, 1.0, 1.05, 0.95]), images,
                             ClassifierConfig(strategy="exhaustive", trials=16, precision="fp32"))
    outlier = estimate_errors(oracle_model([1.0, 1.01, 0.99, 1.02]), images,
                              ClassifierConfig(strategy="exhaustive", trials=16, precision="fp32"))
    assert anomaly_scores(outlier.errors).min() > anomaly_scores(inlier.errors).max()


# ------------------------------------------------------------------------------------------ images, bad input
def test_classify_images_preprocesses_and_reports_bad_input(tiny_model_dir, tiny_dataset, tmp_path):
    model = load_model(tiny_model_dir)
    paths = sorted(Path(tiny_dataset).glob("*/*.png"))[:2]  # 40 px files: centre-cropped and resized to 16
    df = classify_images(model, paths, ClassifierConfig(**FAST))
    assert list(df.image) == [str(p) for p in paths]
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(DataError, match="broken.png"):
        classify_images(model, [paths[0], bad], ClassifierConfig(**FAST))
    skipped = classify_images(model, [paths[0], bad], ClassifierConfig(**FAST), on_error="skip")
    # the unreadable image keeps its row, without a prediction, and says why
    assert list(skipped.image) == [str(paths[0]), str(bad)]
    assert skipped.pred_class.notna().tolist() == [True, False]
    assert skipped.framing_status.tolist() == ["ok", "unreadable"] and "identify" in skipped.framing_note[1]
    with pytest.raises(ValueError, match="16x16"):
        classify_arrays(model, np.zeros((1, 20, 20, 3), np.uint8))


def test_config_validation():
    with pytest.raises(ValueError, match="strategy"):
        ClassifierConfig(strategy="vote").validate()
    with pytest.raises(ValueError, match="topk_schedule"):
        ClassifierConfig(topk_schedule=((10, 2), (4, 4))).validate()
    cfg = ClassifierConfig(strategy="topk")
    assert ClassifierConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


# ------------------------------------------------------------------------------------------ CLI
def test_classify_cli_resumes_and_calibrate_writes_temperature(tiny_model_dir, tiny_dataset, tmp_path, capsys):
    from cytomodel.cli import main

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    out = tmp_path / "res.csv"
    args = ["classify", "--model", str(model_dir), "--data", str(tiny_dataset), "--out", str(out),
            "--trials", "4", "--min-trials", "2", "--precision", "fp32", "--limit", "9"]
    assert main(args) == 0
    first = pd.read_csv(out)
    assert len(first) == 9 and {"image", "label", "pred_class"} <= set(first.columns)
    # drop three rows as if interrupted; a re-run classifies only those, the rest stay byte-identical
    first.iloc[:6].to_csv(out, index=False)
    assert main(args) == 0
    assert "resuming: 6 of 9" in capsys.readouterr().err
    second = pd.read_csv(out)
    pd.testing.assert_frame_equal(second, first)
    # cached results are never mixed with results of other settings
    other = list(args)
    other[other.index("--trials") + 1] = "5"
    assert main(other) == 2
    assert "another model or classifier setting" in capsys.readouterr().err

    meta_before = json.loads((model_dir / "cytomodel.json").read_text())
    assert main(["calibrate", "--model", str(model_dir), "--data", str(tiny_dataset), "--from-results",
                 str(out), "--trials", "4", "--rescored-out", str(tmp_path / "res_T.csv")]) == 0
    meta = json.loads((model_dir / "cytomodel.json").read_text())
    assert meta["temperature"] > 0 and meta["temperature_fit"]["n_images"] == 9
    assert {k: v for k, v in meta.items() if not k.startswith("temperature")} == meta_before
    assert load_model(model_dir).temperature == meta["temperature"]
    # the rescored table is what classifying again at the fitted temperature gives, without the UNet calls
    assert main(args[:args.index("--out") + 1] + [str(tmp_path / "again.csv")] + args[args.index("--out") + 2:]) == 0
    again, res_t = pd.read_csv(tmp_path / "again.csv"), pd.read_csv(tmp_path / "res_T.csv")
    pd.testing.assert_frame_equal(res_t[again.columns], again, check_exact=False, rtol=1e-9)

    pq = tmp_path / "res.parquet"
    assert main(["classify", "--model", str(model_dir), "--data", str(tiny_dataset / "beta"), "--out", str(pq),
                 "--trials", "3", "--min-trials", "2", "--limit", "2"]) == 0
    table = pd.read_parquet(pq)
    assert len(table) == 2 and "label" not in table and (table.temperature == meta["temperature"]).all()


def test_rescored_equals_scoring_at_that_temperature_and_keeps_other_columns():
    from cytomodel.classify.scores import rescored, scores_frame
    rng = np.random.default_rng(0)
    errors = rng.gamma(2.0, 1e-3, size=(50, 4))
    names = ["a", "b", "c", "d"]
    table = scores_frame(errors, names, 1.0)
    table.insert(0, "image", [f"x{i}.png" for i in range(50)])
    for j, n in enumerate(names):
        table[f"err_{n}"] = errors[:, j]
    again = rescored(table, 2e-4)
    want = scores_frame(errors, names, 2e-4)
    pd.testing.assert_frame_equal(again[want.columns].reset_index(drop=True), want)
    assert list(again.columns) == list(table.columns) and (again["image"] == table["image"]).all()
    assert again["confidence"].mean() > table["confidence"].mean()   # T=1 is nearly uniform for errors ~1e-3
    with pytest.raises(ValueError, match="err_"):
        rescored(table.drop(columns=[f"err_{n}" for n in names]), 1.0)
