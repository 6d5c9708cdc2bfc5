"""(From the repository root, after run.sh.) Issue 25: how many of another lab's normal cells each anomaly score
flags with the training lab's reference (PBC val) and with a reference fitted on the lab's own normal cells — what
`cytomodel calibrate --reference-only` fits (the same function, `fit_score_reference`).

Each lab's cells are split in two halves (stratified by label, 10 seeds, both ways); the reference is fitted on one
half and the flag rate read on the other, at two thresholds: PBC val's 96.2nd percentile of the score under its own
reference (the z-scale carried over) and the fitting half's own 96.2nd percentile (the lab's threshold, as triage
fits it on its calibration cells). Expected share flagged: 3.8 %.

    python docs/results/lab-reference/lab_reference.py RUN_DIR [OUT.csv]"""
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))
from cytomodel.classify.novelty import anomaly_of, fit_score_reference, score_parts  # noqa: E402

Q = 0.962
run = Path(sys.argv[1])
classes = ["basophil", "eosinophil", "erythroblast", "ig", "lymphocyte", "monocyte", "neutrophil", "platelet"]


def fits_of(model: str) -> dict[str, dict]:
    meta = json.loads((REPO / "data" / "models" / model / "cytomodel.json").read_text())
    return {f["config"]["anomaly"]: f["reference"] for f in meta["novelty_fits"]}


def score(t: pd.DataFrame, ref: dict) -> np.ndarray:
    return anomaly_of(score_parts(t, ref), list(t.pred_class), ref)


def read(name: str) -> pd.DataFrame:
    t = pd.read_csv(run / f"{name}.csv")
    return t[t.pred_class.notna()].reset_index(drop=True)


def halves(t: pd.DataFrame, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = np.zeros(len(t), bool)
    for _, idx in t.groupby("label").indices.items():
        idx = rng.permutation(idx)
        a[idx[: len(idx) // 2]] = True
    return a, ~a


rows = []
for prefix, model, scores in (("cascade", "cpu-32", ["class-gain+texture", "class-gain+texture-gain",
                                                      "class-gain+texture+baseline"]),
                              ("lab32", "cpu-32-lab", ["class-gain"])):
    if not (run / f"{prefix}-val.csv").is_file():
        continue
    fits = fits_of(model)
    val = read(f"{prefix}-val")
    for anomaly in scores:
        pbc_ref = fits[anomaly]
        pbc_thr = np.quantile(score(val, pbc_ref), Q)
        for lab in ("tecom", "bccd"):
            if not (run / f"{prefix}-{lab}.csv").is_file():
                continue
            t = read(f"{prefix}-{lab}")
            before = float(np.mean(score(t, pbc_ref) > pbc_thr))
            at_pbc, at_own = [], []
            for seed in range(10):
                a, b = halves(t, seed)
                for fit_on, read_on in ((a, b), (b, a)):
                    ref = fit_score_reference(t[fit_on], classes, anomaly)
                    own_thr = np.quantile(score(t[fit_on], ref), Q)
                    s = score(t[read_on], ref)
                    at_pbc.append(np.mean(s > pbc_thr))
                    at_own.append(np.mean(s > own_thr))
            rows.append({"model": model, "anomaly": anomaly, "lab": lab, "n": len(t),
                         "accuracy": round(float((t.label == t.pred_class).mean()), 3),
                         "flagged, PBC reference": round(before, 3),
                         "flagged, lab reference, PBC threshold": round(float(np.mean(at_pbc)), 3),
                         "sd over splits (PBC thr.)": round(float(np.std(at_pbc)), 3),
                         "flagged, lab reference, lab threshold": round(float(np.mean(at_own)), 3),
                         "sd over splits (lab thr.)": round(float(np.std(at_own)), 3)})
res = pd.DataFrame(rows)
print(res.to_string(index=False))
if len(sys.argv) > 2:
    res.to_csv(sys.argv[2], index=False)
