"""(Run from the repository root after run.sh.) Flag rates of the bundled cascade's class-gain+texture score (and its parts) at PBC val's 96.2nd percentile."""
import json, sys, numpy as np, pandas as pd
sys.path.insert(0, "/work/main")
from cytomodel.classify.novelty import standardise
E = "/work/runs/tex-e2e"
fit = [f for f in json.load(open(f"{E}/cascade-128/base/cytomodel.json"))["novelty_fits"]
       if f["config"]["anomaly"] == "class-gain+texture"][0]["reference"]["parts"]
def cols(t):
    t = t[t.pred_class.notna()]
    return {"class-gain+texture": t.anomaly_score.to_numpy(),
            **{c: standardise(t[c].to_numpy(), list(t.pred_class), fit[c]) for c in fit}}, t
val, vt = cols(pd.read_csv(f"{E}/val_T.csv"))
thr = {k: np.quantile(v, 0.962) for k, v in val.items()}
rows = []
for s in ["val_T", "pbc_mini_copies", "pbc_mini", "tecom", "bccd"]:
    sc, t = cols(pd.read_csv(f"{E}/{s}.csv"))
    known = t[t.label.isin(["basophil","eosinophil","erythroblast","ig","lymphocyte","monocyte","neutrophil","platelet"])]
    r = {"cells": s, "n": len(t), "accuracy": round(float((known.label == known.pred_class).mean()), 3)}
    for k, v in sc.items():
        r[f"over {k}"] = round(float(np.mean(v > thr[k])), 3)
    r["mean texture_raw"] = round(float(t.texture_raw.mean()), 5)
    rows.append(r)
res = pd.DataFrame(rows)
print(res.to_string(index=False))
if len(sys.argv) > 1:
    res.to_csv(sys.argv[1], index=False)
