"""(From the repository root, after run.sh.) Flag rates of the bundled cascade's anomaly score and of each of its parts
at PBC val's 96.2nd percentile, for the originals, their 128-px copies and two other labs.

    python docs/results/texture-profile-bundled-cascade/flag_rates.py RUN_DIR [OUT.csv]"""
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from cytomodel.classify.novelty import anomaly_of, part_values  # noqa: E402

run = Path(sys.argv[1])
classes = ["basophil", "eosinophil", "erythroblast", "ig", "lymphocyte", "monocyte", "neutrophil", "platelet"]
fits = json.loads((run / "cascade-128" / "base" / "cytomodel.json").read_text())["novelty_fits"]
fit = [f for f in fits if f["config"]["anomaly"].startswith("class-gain+texture")][-1]
parts = fit["reference"]["parts"]


def scores(t: pd.DataFrame) -> dict[str, np.ndarray]:
    pred = list(t.pred_class)
    out = {fit["config"]["anomaly"]: t.anomaly_score.to_numpy()}
    for c, ref in parts.items():
        out[c] = anomaly_of({c: part_values(t, c, ref.get("columns"))}, pred, {"parts": {c: ref}})
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
