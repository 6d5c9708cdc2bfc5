"""Probe (issue 25): the baseline's part as a k-nearest-neighbour distance in its normalised penultimate features
(Sun et al. 2022, "Out-of-distribution detection with deep nearest neighbors") instead of the relative Mahalanobis
distance; alone and inside class-gain+texture+baseline (references refitted on val's trained cells, as calibrate)."""
import sys, numpy as np, pandas as pd
sys.path.insert(0, "/work/main"); sys.path.insert(0, "/work/main/benchmarks")
from anomaly_scores import _auroc, _sens_at_spec
from cytomodel.classify.novelty import anomaly_of, score_parts, fit_score_reference
held, featdir, tabs_val, tabs_test, split = sys.argv[1:6]
ks = (1, 5, 10, 20, 50, 100, 200)
tr = np.load(f"{featdir}/train.npz", allow_pickle=True)
def norm(x): return x / np.linalg.norm(x, axis=1, keepdims=True)
Ftr = norm(tr["feats"][np.isfinite(tr["feats"]).all(1)].astype(np.float64))
def knn(F):
    out = np.full((len(F), len(ks)), np.nan)
    ok = np.isfinite(F).all(1)
    X = norm(F[ok].astype(np.float64))
    for b in range(0, len(X), 500):
        d = 1 - X[b:b+500] @ Ftr.T     # cosine distance; kth smallest
        d.sort(axis=1)
        out[np.where(ok)[0][b:b+500]] = d[:, [k - 1 for k in ks]]
    return out
tabs = {"val": tabs_val, "test": tabs_test}[split]
table = pd.concat([pd.read_csv(t) for t in tabs.split(",")], ignore_index=True)
table = table[table.pred_class.notna()].reset_index(drop=True)
f = np.load(f"{featdir}/{split}.npz", allow_pickle=True)
idx = pd.Series(np.arange(len(f["image"])), index=f["image"])
D = knn(f["feats"][idx[table.image].to_numpy()])
sub = pd.Series(f["subtype"][idx[table.image].to_numpy()])
y = (table.label == held).to_numpy()
pred = table.pred_class.to_numpy()
classes = sorted(set(table.label) - {held})
# references are fitted on val's trained cells (as calibrate); for test, fitted on the val table
vtable = pd.concat([pd.read_csv(t) for t in tabs_val.split(",")], ignore_index=True)
vtable = vtable[vtable.pred_class.notna()].reset_index(drop=True)
fv = np.load(f"{featdir}/val.npz", allow_pickle=True)
iv = pd.Series(np.arange(len(fv["image"])), index=fv["image"])
Dv = knn(fv["feats"][iv[vtable.image].to_numpy()])
def report(name, s):
    pos, neg = s[y], s[~y]
    row = f"{name:48s} {_auroc(pos, neg):.3f} {_sens_at_spec(pos, neg):.3f}"
    if held == "ig":
        for st in ("PMY", "MY", "MMY"):
            m = y & (sub == st).to_numpy()
            row += f"  {st} {_auroc(s[m], neg):.3f}/{_sens_at_spec(s[m], neg):.2f}"
    print(row, flush=True)
def combo(col_values_val, col_values, anomaly="class-gain+texture+baseline"):
    # the candidate stands in the column the +baseline score reads (either name: the score read the Mahalanobis
    # distance when this probe ran, the neighbours after)
    vt = vtable.assign(baseline_distance=col_values_val, baseline_neighbours=col_values_val)
    ref = fit_score_reference(vt[vt.label != held], classes, anomaly)
    t = table.assign(baseline_distance=col_values, baseline_neighbours=col_values)
    return anomaly_of(score_parts(t, ref), pred, ref)
print(split, held, "n pos", y.sum(), "neg", (~y).sum())
report("relative Mahalanobis alone (bundled)", table.baseline_distance.to_numpy())
report("class-gain+texture+baseline (refitted, bundled form)", combo(vtable.baseline_distance.to_numpy(), table.baseline_distance.to_numpy()))
report("class-gain+texture (refitted)", anomaly_of(score_parts(table, fit_score_reference(vtable[vtable.label != held], classes, "class-gain+texture")), pred, fit_score_reference(vtable[vtable.label != held], classes, "class-gain+texture")))
for j, k in enumerate(ks):
    report(f"kNN k={k} alone", D[:, j])
    report(f"class-gain+texture+kNN k={k}", combo(Dv[:, j], D[:, j]))
# both feature statistics as parts (5 parts)
from cytomodel.classify import config as _c
_c.SCORE_PARTS["both"] = ("novelty_raw", "texture_raw", _c.PROFILE_PART, "baseline_distance", "baseline_knn")
for j, k in enumerate(ks):
    if k not in (5, 10, 20): continue
    vt = vtable.assign(baseline_knn=Dv[:, j]); t = table.assign(baseline_knn=D[:, j])   # Mahalanobis stays
    ref = fit_score_reference(vt[vt.label != held], classes, "both")
    report(f"class-gain+texture+Maha+kNN k={k}", anomaly_of(score_parts(t, ref), pred, ref))
