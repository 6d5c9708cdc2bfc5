"""Probe (issue 25): k-NN cosine distance in the held-out base model's own mid-block features (null class), alone,
beside the diffusion parts (class-gain+texture), and as a fifth part beside +baseline (neighbours). Val only."""
import sys, numpy as np, pandas as pd
sys.path.insert(0, "/work/main"); sys.path.insert(0, "/work/main/benchmarks")
from anomaly_scores import _auroc, _sens_at_spec
from cytomodel.classify import config as C
from cytomodel.classify.novelty import anomaly_of, score_parts, fit_score_reference
held, featdir, T, table_csv = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
ks = (5, 10, 20, 50)
def norm(x): return x / np.linalg.norm(x, axis=1, keepdims=True)
tr = np.load(f"{featdir}/train-t{T}.npz", allow_pickle=True)
Ftr = norm(tr["feats"][np.isfinite(tr["feats"]).all(1)].astype(np.float64))
mu = Ftr.mean(0)
def knn(F, centre=False):
    out = np.full((len(F), len(ks)), np.nan); ok = np.isfinite(F).all(1)
    R = norm(Ftr - mu) if centre else Ftr
    X = norm(F[ok].astype(np.float64)); X = norm(X - mu) if centre else X
    for b in range(0, len(X), 500):
        d = np.sort(1 - X[b:b+500] @ R.T, axis=1)
        out[np.where(ok)[0][b:b+500]] = d[:, [k - 1 for k in ks]]
    return out
table = pd.read_csv(table_csv); table = table[table.pred_class.notna()].reset_index(drop=True)
f = np.load(f"{featdir}/val-t{T}.npz", allow_pickle=True)
idx = pd.Series(np.arange(len(f["image"])), index=f["image"])
F = f["feats"][idx[table.image].to_numpy()]
y = (table.label == held).to_numpy(); pred = table.pred_class.to_numpy()
classes = sorted(set(table.label) - {held})
mn = table.image.map(lambda p: p)  # noqa
man = pd.read_csv("/work/shared/data/pbc/manifest.csv"); man["image"] = "/work/shared/data/pbc/" + man.path
sub = table.merge(man[["image", "subtype"]], on="image", how="left").subtype.to_numpy()
def report(name, s):
    pos, neg = s[y], s[~y]
    row = f"{name:52s} {_auroc(pos, neg):.3f} {_sens_at_spec(pos, neg):.3f}"
    if held == "ig":
        for st in ("PMY", "MY", "MMY"):
            m = y & (sub == st); row += f"  {st} {_auroc(s[m], neg):.3f}/{_sens_at_spec(s[m], neg):.2f}"
    print(row, flush=True)
def scored(t, parts):
    C.SCORE_PARTS["probe"] = parts
    ref = fit_score_reference(t[t.label != held], classes, "probe")
    return anomaly_of(score_parts(t, ref), pred, ref)
print("val", held, "t", T)
base4 = C.SCORE_PARTS["class-gain+texture+baseline"]; diff3 = C.SCORE_PARTS["class-gain+texture"]
report("class-gain+texture", scored(table, diff3))
report("class-gain+texture+baseline (neighbours)", scored(table, base4))
for centre in (False, True):
    D = knn(F, centre)
    for j, k in enumerate(ks):
        t = table.assign(diffusion_knn=D[:, j]); tag = f"k={k}{' centred' if centre else ''}"
        report(f"diffusion kNN {tag} alone", D[:, j])
        report(f"class-gain+texture+diffusion kNN {tag}", scored(t, diff3 + ("diffusion_knn",)))
        report(f"+baseline+diffusion kNN {tag}", scored(t, base4 + ("diffusion_knn",)))
