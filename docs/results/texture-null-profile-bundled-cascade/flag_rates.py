"""(From the repository root, after run.sh.) Flag rates at PBC val's 96.2nd percentile of each texture score the
copy's record holds (computed from the tables' parts with that score's reference) and of each of its parts, for the
originals, their 128-px copies and two other labs.

    python docs/results/texture-null-profile-bundled-cascade/flag_rates.py RUN_DIR [OUT.csv]"""
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from cytomodel.classify.novelty import anomaly_of, score_parts  # noqa: E402

run = Path(sys.argv[1])
classes = ["basophil", "eosinophil", "erythroblast", "ig", "lymphocyte", "monocyte", "neutrophil", "platelet"]
fits = {f["config"]["anomaly"]: f["reference"]
        for f in json.loads((run / "cascade-128" / "base" / "cytomodel.json").read_text())["novelty_fits"]
        if f["config"]["anomaly"].startswith("class-gain+texture")}


def scores(t: pd.DataFrame) -> dict[str, np.ndarray]:
    pred = list(t.pred_class)
    out = {name: anomaly_of(score_parts(t, ref), pred, ref) for name, ref in fits.items()}
    widest = max(fits.values(), key=lambda r: len(r["parts"]))
    for c, ref in widest["parts"].items():
        out[c] = anomaly_of(score_parts(t, {"parts": {c: ref}}), pred, {"parts": {c: ref}})
    return out


val = pd.read_csv(run / "val_T.csv")
val = val[val.pred_class.notna()]
thr = {k: np.quantile(v, 0.962) for k, v in scores(val).items()}
rows = []
for name in ["val_T", "pbc_mini_copies", "pbc_mini", "tecom", "bccd"]:
    t = pd.read_csv(run / f"{name}.csv")
    t = t[t.pred_class.notna()]
    known = t[t.label.isin(classes)]
    r = {"cells": name, "n": len(t), "accuracy": round(float((known.label == known.pred_class).mean()), 3)}
    r.update({f"over {k}": round(float(np.mean(v > thr[k])), 3) for k, v in scores(t).items()})
    rows.append(r)
res = pd.DataFrame(rows)
print(res.to_string(index=False))
if len(sys.argv) > 2:
    res.to_csv(sys.argv[2], index=False)
