"""The distilled student against its teacher (the diffusion classifier) and the baseline CNN, side by side in one run
on the same cells (issue 22): cells/s, accuracy, ECE, triage coverage at a target error with its guarantee, and —
given a held-out-class teacher's tables and its student — anomaly AUROC on the held-out class.

    python benchmarks/student_vs_teacher.py --teacher data/models/cpu-32-lab --student runs/student \\
        --baseline data/models/baseline-32 --teacher-val runs/teacher_val.csv --teacher-test runs/teacher_test.csv \\
        --speed-cells 200 --out docs/results/student.json
    [--holdout ig --holdout-teacher-val ... --holdout-teacher-test ... --holdout-student DIR]

The teacher's tables are `cytomodel classify` outputs (computed once, resumably); the student's and the baseline's
are computed here (seconds). Speed: the teacher classifies ``--speed-cells`` test cells at its defaults, the
student and the baseline the same cells, alternating, on this process's threads (printed).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def single_pass_table(clf, teacher_table: pd.DataFrame) -> pd.DataFrame:
    """The classification table of a student or baseline on the cells of a teacher table (framed by its intake)."""
    from cytocore import classification as ct
    from cytomodel.data import framed_arrays

    cells = clf.intake().frame(list(teacher_table["image"]))
    arrays, keep = framed_arrays(cells, clf.resolution)
    if len(keep) != len(cells):
        raise RuntimeError(f"{len(cells) - len(keep)} cells could not be framed again")
    proba, anomaly, head = clf.student_outputs(arrays) if clf.student else (clf.predict_proba(arrays), None, None)
    table = pd.DataFrame({ct.IMAGE: teacher_table["image"].to_numpy(), ct.LABEL: teacher_table["label"].to_numpy(),
                          ct.PRED_CLASS: np.asarray(clf.class_names)[proba.argmax(1)],
                          ct.CONFIDENCE: proba.max(1)})
    if clf.student:   # its anomaly score (by its rule) and its head's estimate of the teacher's
        table["anomaly_score"], table["anomaly_head"] = anomaly, head
    for j, c in enumerate(clf.class_names):
        table[ct.prob_column(c)] = proba[:, j]
    return table


def metrics(table: pd.DataFrame, class_names: list[str]) -> dict:
    from cytomodel.evaluate.metrics import classification_summary, ece_score

    known = table[table["label"].isin(class_names)]
    idx = {c: i for i, c in enumerate(class_names)}
    y = known["label"].map(idx).to_numpy()
    p = known[[f"prob_{c}" for c in class_names]].to_numpy(np.float64)
    s = classification_summary(y, p.argmax(1), len(class_names))
    return {"n": int(len(known)), "accuracy": float(np.mean(p.argmax(1) == y)),
            "balanced_accuracy": float(s["balanced_accuracy"]), "ece": float(ece_score(p, y))}


def triage(val: pd.DataFrame, test: pd.DataFrame, target: float, held_out: list[str]) -> dict:
    from cytomodel.classify.triage import apply_triage, fit_triage, summarise_triage, without_labels

    cal, _ = without_labels(val, held_out)
    rule = fit_triage(cal, target_error=target)
    return summarise_triage(apply_triage(test, rule), classes=held_out or None)


def holdout_detail(tables: dict[str, pd.DataFrame], held_out: str, manifest: str, specificity: float = 0.962,
                   n_boot: int = 2000, seed: int = 0) -> dict:
    """Student − teacher anomaly AUROC with a 95 % stratified bootstrap interval (the same cells resampled for
    both), sensitivity at the paper's specificity (threshold: that quantile of the trained classes' scores) and the
    AUROC per subtype of the held-out class (the manifest's ``subtype``)."""
    from sklearn.metrics import roc_auc_score

    from cytomodel.morphology_map.cells import read_subtypes

    t, s = tables["teacher"], tables["student"]
    y = (t["label"] == held_out).to_numpy()
    a, b = t["anomaly_score"].to_numpy(float), s["anomaly_score"].to_numpy(float)
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
    diffs = []
    for _ in range(n_boot):
        i = np.concatenate([rng.choice(pos, len(pos)), rng.choice(neg, len(neg))])
        diffs.append(roc_auc_score(y[i], b[i]) - roc_auc_score(y[i], a[i]))
    out = {"auroc_difference_student_minus_teacher": float(roc_auc_score(y, b) - roc_auc_score(y, a)),
           "auroc_difference_ci95": [float(q) for q in np.quantile(diffs, [0.025, 0.975])],
           "specificity": specificity,
           "rank_correlation_of_scores": float(pd.Series(a).corr(pd.Series(b), method="spearman"))}
    scores = {"teacher": a, "student": b}
    if "anomaly_head" in s and not np.array_equal(s["anomaly_head"].to_numpy(float), b):
        scores["student_head"] = s["anomaly_head"].to_numpy(float)
        out["student_head_auroc"] = float(roc_auc_score(y, scores["student_head"]))
    for name, score in scores.items():
        out[f"{name}_sensitivity_at_specificity"] = float(np.mean(score[y] > np.quantile(score[~y], specificity)))
    subtypes = read_subtypes(Path(manifest)) if Path(manifest).is_file() else None
    if subtypes:
        by_name = {Path(p).name: v for p, v in subtypes.items()}     # the tables' paths may be relative or absolute
        sub = t["image"].map(lambda p: by_name.get(Path(str(p)).name)).to_numpy()
        out["by_subtype"] = {}
        for st in sorted({x for x in sub[y] if isinstance(x, str)}):
            k = y & (sub == st)
            yy = np.r_[np.ones(k.sum()), np.zeros(len(neg))]
            out["by_subtype"][st] = {"n": int(k.sum()), **{f"{name}_auroc": float(roc_auc_score(yy, np.r_[x[k], x[~y]]))
                                                            for name, x in scores.items()}}
    return out


def speed(teacher, student, baseline, table: pd.DataFrame, n: int) -> dict:
    import torch

    from cytomodel.classify import ClassifierConfig, classify_arrays
    from cytomodel.data import framed_arrays

    cells = teacher.intake().frame(list(table["image"][:n]))
    arrays, _ = framed_arrays(cells, teacher.resolution)
    out = {"cells": len(arrays), "threads": torch.get_num_threads()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        classify_arrays(teacher, arrays, ClassifierConfig())
        out["teacher_cells_per_s"] = len(arrays) / (time.perf_counter() - t0)
    for name, clf in (("student", student), ("baseline", baseline)):
        if clf is None:
            continue
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            clf.student_outputs(arrays) if clf.student else clf.predict_proba(arrays)   # what its table needs
            times.append(time.perf_counter() - t0)
        out[f"{name}_cells_per_s"] = len(arrays) / float(np.median(times))
        out[f"{name}_speedup_over_teacher"] = out[f"{name}_cells_per_s"] / out["teacher_cells_per_s"]
    return out


def main(argv=None) -> int:
    from sklearn.metrics import roc_auc_score

    from cytomodel.classify import classified, read_table
    from cytomodel.evaluate import load_baseline
    from cytomodel.models.loading import load_base

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", required=True)
    p.add_argument("--student", required=True)
    p.add_argument("--baseline")
    p.add_argument("--teacher-val", required=True)
    p.add_argument("--teacher-test", required=True)
    p.add_argument("--speed-cells", type=int, default=200)
    p.add_argument("--target-error", type=float, default=0.01)
    p.add_argument("--holdout")
    p.add_argument("--holdout-teacher-val")
    p.add_argument("--holdout-teacher-test")
    p.add_argument("--holdout-student")
    p.add_argument("--manifest", default=str(REPO.parent / "shared" / "data" / "pbc" / "manifest.csv"),
                   help="for the held-out class's subtypes (its 'subtype' column), when present")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)

    teacher = load_base(args.teacher)
    student = load_baseline(args.student)
    baseline = load_baseline(args.baseline) if args.baseline else None
    tv, tt = read_table(Path(args.teacher_val)), read_table(Path(args.teacher_test))
    # the same cells for every classifier: those the teacher framed (a cell it could not frame has no prediction)
    res = {"not_framed_left_out": {"val": int(tv["pred_class"].isna().sum()), "test": int(tt["pred_class"].isna().sum())}}
    tv, tt = classified(tv).reset_index(drop=True), classified(tt).reset_index(drop=True)
    res.update({"speed": speed(teacher, student, baseline, tt, args.speed_cells), "test": {}, "triage": {}})
    for name, clf in (("teacher", None), ("student", student), ("baseline", baseline)):
        if name != "teacher" and clf is None:
            continue
        val, test = (tv, tt) if clf is None else (single_pass_table(clf, tv), single_pass_table(clf, tt))
        res["test"][name] = metrics(test, teacher.class_names)
        res["triage"][name] = triage(val, test, args.target_error, [])
    if args.holdout and args.holdout_student:
        hv, ht = read_table(Path(args.holdout_teacher_val)), read_table(Path(args.holdout_teacher_test))
        hv, ht = classified(hv).reset_index(drop=True), classified(ht).reset_index(drop=True)
        hs = load_baseline(args.holdout_student)
        res["holdout"] = {"class": args.holdout}
        tables = {"teacher": ht, "student": single_pass_table(hs, ht)}
        for name, table in tables.items():
            y = (table["label"] == args.holdout).to_numpy()
            res["holdout"][f"{name}_auroc"] = float(roc_auc_score(y, table["anomaly_score"]))
            res["holdout"][f"{name}_triage"] = triage(hv if name == "teacher" else single_pass_table(hs, hv), table,
                                                      args.target_error, [args.holdout])
        res["holdout"].update(holdout_detail(tables, args.holdout, args.manifest))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1, default=str))
    print(json.dumps(res, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
