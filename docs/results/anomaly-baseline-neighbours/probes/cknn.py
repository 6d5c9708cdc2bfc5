"""Probe (issue 25): class-conditional k-NN — the cosine distance of the baseline's features to the k-th nearest
training cell *of the predicted class* (the diffusion classifier's call, or the baseline's own) — against the
class-agnostic one (Sun et al. 2022), alone and as the +baseline part. Val only."""
import sys, numpy as np, pandas as pd
sys.path.insert(0, "/work/main"); sys.path.insert(0, "/work/main/benchmarks")
from anomaly_scores import _auroc, _sens_at_spec
from cytomodel.classify import config as C
from cytomodel.classify.novelty import anomaly_of, score_parts, fit_score_reference
held, featdir, table_csv = sys.argv[1:4]
def norm(x): return x / np.linalg.norm(x, axis=1, keepdims=True)
tr = np.load(f"{featdir}/train.npz", allow_pickle=True)
ok = np.isfinite(tr["feats"]).all(1)
Ftr, ytr = norm(tr["feats"][ok].astype(np.float64)), tr["label"][ok]
table = pd.read_csv(table_csv); table = table[table.pred_class.notna()].reset_index(drop=True)
f = np.load(f"{featdir}/val.npz", allow_pickle=True)
idx = pd.Series(np.arange(len(f["image"])), index=f["image"])
F = norm(f["feats"][idx[table.image].to_numpy()].astype(np.float64))
L = f["logits"][idx[table.image].to_numpy()]
classes = sorted(set(ytr))
base_pred = np.array(classes)[L.argmax(1)]
y = (table.label == held).to_numpy(); pred = table.pred_class.to_numpy()
man = pd.read_csv("/work/shared/data/pbc/manifest.csv"); man["image"] = "/work/shared/data/pbc/" + man.path
sub = table.merge(man[["image", "subtype"]], on="image", how="left").subtype.to_numpy()
S = 1 - F @ Ftr.T
def kth(k, by=None):
    if by is None:
        return np.sort(S, axis=1)[:, k - 1]
    out = np.empty(len(S))
    for c in classes:
        m = by == c
        if m.any():
            out[m] = np.sort(S[m][:, ytr == c], axis=1)[:, k - 1]
    return out
def report(name, s):
    pos, neg = s[y], s[~y]
    row = f"{name:52s} {_auroc(pos, neg):.3f} {_sens_at_spec(pos, neg):.3f}"
    if held == "ig":
        for st in ("PMY", "MY", "MMY"):
            m = y & (sub == st); row += f"  {st} {_auroc(s[m], neg):.3f}/{_sens_at_spec(s[m], neg):.2f}"
    print(row, flush=True)
def scored(v):
    t = table.assign(baseline_neighbours=v)
    ref = fit_score_reference(t[t.label != held], classes, "class-gain+texture+baseline")
    return anomaly_of(score_parts(t, ref), pred, ref)
print("val", held)
for k in (1, 5, 10, 20):
    for name, by in (("agnostic", None), ("diffusion's class", pred), ("baseline's class", base_pred)):
        v = kth(k, by)
        report(f"k={k} {name} alone", v)
        report(f"k={k} {name} in +baseline", scored(v))
