"""Evidence machinery: metrics, training variants, and `cytomodel evaluate` end to end on tiny models."""
from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cytomodel.data import load_dataset
from cytomodel.evaluate.metrics import (anomaly_summary, brier_score, calibration_summary, classification_summary,
                                        confident_errors, ece_score, youden_threshold)
from cytomodel.train.variants import holdout_class, low_data

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from cytomodel.testing import make_dataset  # noqa: E402


def test_metrics_on_known_values():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.3, 0.7]])
    labels = np.array([0, 1, 0, 1])
    s = classification_summary(labels, probs.argmax(1), 2)
    assert s["accuracy"] == 0.75 and s["balanced_accuracy"] == 0.75
    assert s["confusion"].tolist() == [[2, 0], [1, 1]]
    # ECE by hand: bins (0.6], (0.7], (0.8], (0.9] hold one image each: |1-.9|+|0-.8|+|1-.6|+|1-.7| over 4
    assert ece_score(probs, labels) == pytest.approx((0.1 + 0.8 + 0.4 + 0.3) / 4)
    assert brier_score(probs, labels) == pytest.approx(np.mean([0.02, 1.28, 0.32, 0.18]))
    perfect = np.eye(2)[labels]
    assert ece_score(perfect, labels) == 0 and brier_score(perfect, labels) == 0
    rate, share = confident_errors(np.array([[0.99, 0.01]] * 9 + [[0.4, 0.6]]), np.array([1] + [0] * 8 + [1]))
    assert rate == 1.0 and share == 1.0  # the single most confident image is the single error


def test_anomaly_threshold_from_validation_only():
    val_s = np.array([0.1, 0.2, 0.3, 0.9, 1.0])
    val_a = np.array([0, 0, 0, 1, 1], bool)
    assert 0.3 < youden_threshold(val_s, val_a) <= 0.9
    s = anomaly_summary(val_s, val_a, np.array([0.0, 0.5, 0.95, 0.95]), np.array([0, 0, 1, 0], bool))
    # threshold 0.9 from validation; test AUROC by hand: the anomaly (0.95) beats 0.0 and 0.5, ties 0.95
    assert s["threshold"] == pytest.approx(0.9) and s["auroc"] == pytest.approx(2.5 / 3)
    assert s["sensitivity"] == 1.0 and s["specificity"] == pytest.approx(2 / 3)


def test_holdout_and_low_data_variants(tiny_dataset):
    data = load_dataset(tiny_dataset, 16)
    h = holdout_class(data, "beta")
    assert h.class_names == ["alpha", "gamma"] and set(np.unique(h.labels)) == {0, 1}
    assert len(h.images) == 24 and h.data_hash != data.data_hash
    assert all(r.label != "beta" for r in h.records)
    with pytest.raises(ValueError, match="delta"):
        holdout_class(data, "delta")
    lo = low_data(data, 2, seed=0)
    null = len(data.class_names)
    labelled = lo.labels != null
    # 2 distinct labelled images per class, the other 30 images null-labelled, labelled share about 1/2
    distinct = {(r.path, int(l)) for r, l in zip(lo.records, lo.labels) if l != null}
    assert sorted(c for _, c in distinct) == [0, 0, 1, 1, 2, 2]
    assert (lo.labels == null).sum() == 30 and 0.35 < labelled.mean() < 0.65
    assert low_data(data, 2, seed=0).data_hash == lo.data_hash != low_data(data, 2, seed=1).data_hash
    only = low_data(data, 2, unlabelled=False)
    assert len(only.images) == 6 and (only.labels < null).all()


@pytest.fixture(scope="module")
def split_dataset(tmp_path_factory):
    return _split_dataset(tmp_path_factory.mktemp("split_data"), 9)


def _split_dataset(folder: Path, n_per_class: int) -> Path:
    """A manifest dataset of the tiny classes, every third image of a class in train, val and test."""
    root = make_dataset(folder, n_per_class=n_per_class, seed=1)
    rows = []
    for c in ("alpha", "beta", "gamma"):
        for j, p in enumerate(sorted((root / c).glob("*.png"))):
            rows.append((f"{c}/{p.name}", c, ("train", "val", "test")[j % 3]))
    with open(root / "manifest.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "split"])
        w.writerows(rows)
    return root


def test_evaluate_end_to_end(tiny_model_dir, tiny_dataset, split_dataset, tmp_path):
    from cytomodel.cli import main
    from cytomodel.evaluate import train_baseline
    from cytomodel.train import load_config, train_variant

    cfg = load_config("tiny-16", overrides={"max_steps": 3, "sample_every": 10_000})
    train = load_dataset(split_dataset, 16, split="train")
    anom = train_variant(cfg, train, tmp_path / "anom", holdout="gamma", progress=False)
    assert anom.class_names == ["alpha", "beta"] and anom.metadata["variant"]["holdout_class"] == "gamma"
    train_baseline(train, None, epochs=1, max_steps=2, progress=False).save_pretrained(tmp_path / "base")
    out = tmp_path / "eval"
    args = ["evaluate", "--model", str(tiny_model_dir), "--data", str(split_dataset), "--per-class", "2",
            "--baseline", str(tmp_path / "base"), "--shift-data", str(tiny_dataset / "alpha"),
            "--anomaly-model", str(tmp_path / "anom" / "model"), "--trials", "3",
            "--min-trials", "2", "--out", str(out)]
    # domain-shift data must be a labelled tree; a flat folder is rejected with a clear error
    assert main(args) == 2
    shift = tmp_path / "shift"
    shutil.copytree(tiny_dataset / "alpha", shift / "alpha")
    shutil.copytree(tiny_dataset / "beta", shift / "beta")
    args[args.index(str(tiny_dataset / "alpha"))] = str(shift)
    assert main(args) == 0
    table = pd.read_csv(out / "results.csv")
    sections = set(table.section)
    assert {"in-domain", "calibration", "anomaly", "domain-shift"} <= sections
    acc = table[(table.metric == "accuracy") & (table.section == "in-domain") & (table.classifier == "diffusion")]
    test = pd.read_csv(out / "test_diffusion.csv")
    assert acc.value.iloc[0] == pytest.approx(np.mean(test.label == test.pred_class))
    assert len(test) == 6 and (test.unet_calls > 0).all()
    shift_rows = pd.read_csv(out / "shift_diffusion.csv")
    assert set(shift_rows.pred_class) <= {"alpha", "beta"} and "prob_gamma" not in shift_rows
    md = (out / "results.md").read_text()
    assert "## 3. Anomaly detection" in md and "Held-out class: **gamma**" in md
    anom = table[table.section == "anomaly"]
    assert {"diffusion (-zeta)", "diffusion error margin", "diffusion best-class error"} <= set(anom.classifier)
    assert anom.classifier.str.startswith("diffusion max-softmax").any()
    assert (out / "figures" / "reliability.png").is_file() and (out / "figures" / "anomaly_roc.png").is_file()
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["classifier_config"]["seed"] == 0 and "code_version" in prov
    # a re-run reuses every cached classification (nothing to classify) and gives the same table
    assert main(args) == 0
    pd.testing.assert_frame_equal(pd.read_csv(out / "results.csv"), table)


@pytest.mark.slow
def test_classifier_experiments_script_runs_and_resumes(tiny_model_dir, split_dataset, tmp_path):
    """scripts/run_classifier_experiments.sh end to end on the tiny preset: held-out-class and low-data models with
    their baselines, then one evaluation; a second run skips the finished baselines and resumes the trainings."""
    import os
    import subprocess

    root = Path(__file__).resolve().parents[2]
    runs = tmp_path / "runs"
    env = dict(os.environ, CYTOMODEL=str(Path(sys.executable).parent / "cytomodel"), DATA=str(split_dataset),
               RUNS=str(runs), PRESET="tiny-16", STEPS="3", HOLDOUT="gamma", LOW="2", PER_CLASS="2",
               MODEL=str(tiny_model_dir), BASELINE="none", SHIFT=str(tmp_path / "none"), TRAIN_ARGS="--set sample_every=10000",
               BASELINE_ARGS="--baseline-epochs 1", EVAL_ARGS="--trials 3 --min-trials 2", TRIAGE="0")
    script = root / "scripts" / "run_classifier_experiments.sh"
    p = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    for name in ("holdout-gamma", "low2"):
        assert (runs / name / "model" / "cytomodel.json").is_file()
        assert (runs / f"{name}-baseline" / "baseline.json").is_file()
    sections = set(pd.read_csv(runs / "eval" / "results.csv").section)
    assert {"in-domain", "anomaly", "low-data"} <= sections, sections
    again = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert "baseline holdout-gamma" not in again.stdout and "baseline low2" not in again.stdout
    assert again.stdout.count("(--resume, 3 steps)") == 2


@pytest.mark.slow
def test_classifier_experiments_script_triages_with_the_held_out_models(tmp_path):
    """The script's TRIAGE stage: temperature of the held-out model on val, val rescored, test classified, both
    classifiers triaged with the held-out class reported and its calibration cells left out of the fit."""
    import os
    import subprocess

    root = Path(__file__).resolve().parents[2]
    data = _split_dataset(tmp_path / "data", 18)        # 6 val cells per class: 12 of the trained classes
    runs = tmp_path / "runs"
    env = dict(os.environ, CYTOMODEL=str(Path(sys.executable).parent / "cytomodel"), DATA=str(data), RUNS=str(runs),
               PRESET="tiny-16", STEPS="3", HOLDOUT="gamma", LOW="", EVALUATE="0", SHIFT=str(tmp_path / "none"),
               TRAIN_ARGS="--set sample_every=10000", BASELINE_ARGS="--baseline-epochs 1",
               CLASSIFY_ARGS="--trials 3 --min-trials 2")
    p = subprocess.run(["bash", str(root / "scripts" / "run_classifier_experiments.sh")], env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    t = runs / "triage-holdout-gamma"
    meta = json.loads((runs / "holdout-gamma" / "model" / "cytomodel.json").read_text())
    assert meta["temperature_fit"]["n_images"] == 12                       # the trained classes' val cells
    val = pd.read_csv(t / "diffusion_val.csv")
    assert (val.temperature == meta["temperature"]).all() and len(val) == 18
    rec = json.loads((t / "out" / "triage.json").read_text())
    for name in ("diffusion", "baseline"):
        c = rec["classifiers"][name]
        assert c["calibration_cells_of_held_out_classes_left_out"] == 6
        assert c["summary"]["by_label"]["gamma"]["n"] == 6 and c["summary"]["trained_classes"]["n"] == 12
