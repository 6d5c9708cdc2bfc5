"""Val-only: texture parts from crop 64 (stored) vs the probe's larger crops, same subsample of cells."""
import sys, numpy as np, pandas as pd
sys.path.insert(0, "/work/main"); sys.path.insert(0, "/work/main/benchmarks")
from anomaly_scores import _auroc, _sens_at_spec
from cytomodel.classify.novelty import anomaly_of, fit_score_reference, score_parts
from cytomodel.classify.texture import texture_levels
held, ref64, tab, crops = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
from texture_scores import load_errors
from pathlib import Path
z64 = load_errors(Path(ref64), 'val'); t = pd.read_csv(tab)
assert (t.image.to_numpy()[:len(z64['image'])] == z64['image']).all(); t = t.iloc[:len(z64['image'])]
TS = [200, 350, 500, 650, 800]
def table(errors, ts, rows):
    lv = texture_levels(errors[:, [list(ts).index(x) for x in TS]])
    df = pd.DataFrame({"pred_class": [str(p) for p in z64["pred"][rows]], "novelty_raw": t.novelty_raw.to_numpy()[rows],
                       "texture_raw": lv.mean(1)})
    for j, x in enumerate(TS): df[f"texture_t{x}"] = lv[:, j]
    return df
classes = sorted(set(t.pred_class.dropna()))
res = []
for c in crops:
    zc = dict(np.load(c, allow_pickle=True)); rows = zc["idx"]
    lab = z64["label"][rows]; tr = lab != held
    for name, (err, ts) in {"64": (z64["errors"][rows], z64["timesteps"]), c.split("/")[-1]: (zc["errors"], zc["timesteps"])}.items():
        df = table(err, ts, rows); ok = ~df.texture_raw.isna().to_numpy()
        for anomaly in ("texture", "class-gain+texture", "class-gain+texture-gain"):
            ref = fit_score_reference(df[tr & ok], classes, anomaly)
            s = anomaly_of(score_parts(df, ref), list(df.pred_class), ref)
            g = ok & ~np.isnan(s)
            res.append({"cells": c.split("/")[-1], "crop": name, "score": anomaly, "n": int(g.sum()),
                        "auroc": _auroc(s[g & ~tr], s[g & tr]), "sens": _sens_at_spec(s[g & ~tr], s[g & tr])})
        g = ok
        res.append({"cells": c.split("/")[-1], "crop": name, "score": "gain alone", "n": int(g.sum()),
                    "auroc": _auroc(df.texture_raw[g & ~tr], df.texture_raw[g & tr]), "sens": _sens_at_spec(df.texture_raw[g & ~tr].to_numpy(), df.texture_raw[g & tr].to_numpy())})
print(pd.DataFrame(res).round(3).to_string(index=False))
