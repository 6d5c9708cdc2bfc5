"""The distilled student: learns a teacher's probabilities and anomaly score, loads as a baseline folder with an
anomaly head, and writes the classification table through `cytomodel classify` and `baseline predict`."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from cytocore.classification import predictive_entropy
from cytomodel.data import load_dataset
from cytomodel.evaluate import BaselineClassifier
from cytomodel.evaluate.distillation import distil_student, teacher_targets, teacher_training_rows


def _teacher(data):
    """A teacher that is not a model: 0.7 on the *next* class of each cell's label (so following the labels, which
    the student is given for class counts only, fails), and an anomaly score that is the cell's mean red level (a
    pixel property no label carries)."""
    n, c = len(data.images), len(data.class_names)
    target = (data.labels + 1) % c
    probs = np.full((n, c), 0.3 / (c - 1))
    probs[np.arange(n), target] = 0.7
    anomaly = data.images[..., 0].mean(axis=(1, 2)) / 10.0 + 50.0
    return probs, anomaly, target


def test_student_learns_the_teachers_probabilities_and_anomaly_score(tiny_dataset, tmp_path):
    data = load_dataset(tiny_dataset, 16)
    probs, anomaly, target = _teacher(data)
    student = distil_student(data, probs, anomaly, {"model": "synthetic"}, epochs=60, batch_size=12, lr=1e-2,
                             progress=False, precision="fp32", threads=1)
    agree = np.mean(student.predict(data.images) == target)
    assert agree >= 0.9, agree                       # it follows the teacher, not the labels
    p = student.predict_proba(data.images)
    assert np.abs(p.max(axis=1) - 0.7).mean() < 0.15  # soft targets: not one-hot confidence
    head = student.anomaly_head(data.images)
    rho = spearmanr(head, anomaly)[0]
    assert rho > 0.7, rho
    assert abs(np.median(head) - np.median(anomaly)) < 2.0   # the teacher's scale
    # its anomaly score by default: the entropy of its probabilities (the head's estimate stays beside it)
    assert student.anomaly_rule == "entropy"
    np.testing.assert_allclose(student.anomaly(data.images), predictive_entropy(p), rtol=1e-5)
    student.save_pretrained(tmp_path / "student")
    again = BaselineClassifier.from_pretrained(tmp_path / "student")
    np.testing.assert_allclose(again.anomaly_head(data.images), head, rtol=1e-5)
    again.metadata["student"]["anomaly_score"] = "head"
    np.testing.assert_allclose(again.anomaly(data.images), head, rtol=1e-5)
    del again.metadata["student"]["anomaly_score"]           # a student recorded before the rule: its head
    assert again.anomaly_rule == "head"
    proba, score, head_once = student.student_outputs(data.images)   # one forward pass: the same numbers
    np.testing.assert_allclose(proba, p, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(score, predictive_entropy(p), rtol=1e-5)
    np.testing.assert_allclose(head_once, head, rtol=1e-5)
    assert again.logits(data.images).shape == (len(data.images), len(data.class_names))


def test_teacher_table_is_checked():
    table = pd.DataFrame({"image": ["a", "b"], "pred_class": ["x", "y"], "prob_x": [0.9, np.nan],
                          "prob_y": [0.1, np.nan], "anomaly_score": [0.0, 1.0]})
    with pytest.raises(ValueError, match="no probabilities"):
        teacher_targets(table, ["x", "y"])
    with pytest.raises(ValueError, match="prob_z"):
        teacher_targets(table.iloc[:1], ["x", "y", "z"])
    probs, anomaly = teacher_targets(table.iloc[:1], ["y", "x"])
    np.testing.assert_allclose(probs, [[0.1, 0.9]])


def test_cells_of_a_class_the_teacher_never_saw_are_not_learnt_from():
    # a held-out-class teacher's table of the whole training split: the student must not learn the teacher's
    # verdict on the held-out class, whose anomaly flag is measured afterwards
    table = pd.DataFrame({"image": list("abcd"), "label": ["x", "ig", None, "y"], "pred_class": ["x", "y", "x", "y"],
                          "prob_x": [0.9, 0.4, 0.8, 0.1], "prob_y": [0.1, 0.6, 0.2, 0.9],
                          "anomaly_score": [0.0, 5.0, 1.0, 0.5]})
    kept, n_left_out = teacher_training_rows(table, ["x", "y"])
    assert n_left_out == 1 and list(kept["image"]) == ["a", "c", "d"]       # unlabelled cells stay
    assert teacher_training_rows(table.drop(columns="label"), ["x", "y"])[1] == 0


def test_cli_distil_then_classify_and_triage_with_the_student(tiny_model_dir, tiny_dataset, tmp_path):
    from cytomodel.cli import main

    teacher_table = tmp_path / "teacher.csv"
    assert main(["classify", "--model", str(tiny_model_dir), "--data", str(tiny_dataset), "--out",
                 str(teacher_table), "--trials", "3", "--min-trials", "2", "--temperature", "0.01"]) == 0
    restricted = tmp_path / "teacher-alpha-gamma.csv"   # the candidates restricted, as for another lab's classes
    assert main(["classify", "--model", str(tiny_model_dir), "--data", str(tiny_dataset), "--out", str(restricted),
                 "--trials", "3", "--min-trials", "2", "--limit", "6", "--classes", "alpha,gamma"]) == 0
    assert set(pd.read_csv(restricted).pred_class) <= {"alpha", "gamma"}
    out = tmp_path / "student"
    assert main(["distil", "--teacher-table", str(teacher_table), "--model", str(tiny_model_dir), "--out", str(out),
                 "--max-steps", "4", "--batch-size", "8", "--epochs", "2"]) == 0
    meta = json.loads((out / "baseline.json").read_text())
    assert meta["student"]["teacher"]["rows"] == 36 and meta["student"]["teacher"]["classifier_config"]["trials"] == 3
    teacher_meta = json.loads((tiny_model_dir / "cytomodel.json").read_text())
    assert meta.get("framing") == teacher_meta.get("framing")      # the student frames cells as its teacher did
    assert meta["crop_fraction"] == teacher_meta["preprocessing"].get("crop_fraction", 1.0)
    table_path = tmp_path / "student.csv"
    assert main(["classify", "--model", str(out), "--data", str(tiny_dataset), "--out", str(table_path)]) == 0
    table = pd.read_csv(table_path)
    teacher = pd.read_csv(teacher_table)
    assert {"image", "label", "pred_class", "confidence", "anomaly_score"} <= set(table.columns)
    assert [c for c in table.columns if c.startswith("prob_")] == [c for c in teacher.columns if c.startswith("prob_")]
    assert np.isfinite(table.anomaly_score).all() and np.isfinite(table.anomaly_head).all()
    probs = table[[c for c in table.columns if c.startswith("prob_")]].to_numpy()
    np.testing.assert_allclose(table.anomaly_score, predictive_entropy(probs), atol=1e-3)   # its rule: entropy
    assert main(["triage", "--calibration", str(table_path), "--cells", str(table_path), "--out",
                 str(tmp_path / "triage")]) == 0
    decisions = pd.read_csv(tmp_path / "triage" / "decisions_diffusion.csv")
    assert len(decisions) == 36
    record = json.loads((tmp_path / "triage" / "triage.json").read_text())
    assert "student" in json.dumps(record)          # triage used the student's own anomaly score
    # the student's temperature, fitted on labelled cells (the teacher's table gives the images and labels)
    assert main(["distil", "--out", str(out), "--val-table", str(teacher_table), "--calibrate-only"]) == 0
    calibrated = BaselineClassifier.from_pretrained(out)
    fit = calibrated.metadata["temperature_fit"]
    assert calibrated.temperature == fit["temperature"] != 1.0 and fit["nll_at_T"] <= fit["nll_at_T1"]
    assert fit["n_images"] == 36
    data = load_dataset(tiny_dataset, calibrated.resolution)
    z = calibrated.logits(data.images)
    p = np.exp(z / calibrated.temperature - (z / calibrated.temperature).max(1, keepdims=True))
    np.testing.assert_allclose(calibrated.predict_proba(data.images), p / p.sum(1, keepdims=True), rtol=1e-4,
                               atol=1e-6)


def test_student_inherits_its_teachers_lab_variation(tiny_model_dir, tiny_dataset, tmp_path):
    """A teacher trained with lab variation passes it on (the student sees other labs' looks, framed from larger
    cells, against the teacher's verdict on the clean cell); --lab-augment 0 turns it off."""
    import shutil

    from cytomodel.cli import main

    teacher = tmp_path / "teacher"
    shutil.copytree(tiny_model_dir, teacher)
    meta = json.loads((teacher / "cytomodel.json").read_text())
    meta["config"].update(lab_augment=0.5, source_resolution=2 * meta["resolution"])
    (teacher / "cytomodel.json").write_text(json.dumps(meta))
    table = tmp_path / "teacher.csv"
    assert main(["classify", "--model", str(teacher), "--data", str(tiny_dataset), "--out", str(table), "--trials",
                 "2", "--min-trials", "2"]) == 0
    for extra, share, px in (([], 0.5, 2 * meta["resolution"]), (["--lab-augment", "0"], 0.0, None)):
        out = tmp_path / f"student{share}"
        assert main(["distil", "--teacher-table", str(table), "--model", str(teacher), "--out", str(out),
                     "--max-steps", "2", "--batch-size", "8", "--epochs", "1", *extra]) == 0
        training = json.loads((out / "baseline.json").read_text())["training"]
        assert training["lab_augment"] == share
        assert (f"lab variation for 50% of images at {px} px" in training["augmentation"]) == (px is not None)
