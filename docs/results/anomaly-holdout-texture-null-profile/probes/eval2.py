"""Val-only ranking of baseline-feature parts added to the 4-part score (held-out ig / erythroblast)."""
import sys, numpy as np, pandas as pd
sys.path.insert(0, "/work/main/benchmarks"); sys.path.insert(0, "/work/main")
from anomaly_scores import _auroc, _sens_at_spec
from cytomodel.classify.novelty import fit_reference, standardise
SPLITS = sys.argv[4].split(",") if len(sys.argv) > 4 else ["val"]
held, tabdir = sys.argv[1:3]
featdirs = dict(kv.split("=") for kv in sys.argv[3].split(","))
tabs = {s: pd.read_csv(f"{tabdir}/{s}.csv") for s in ("val", "test")}
classes = sorted(set(tabs["val"].pred_class))
tv = (tabs["val"].label != held).to_numpy()
def fitg(F, y):
    cl = sorted(set(y)); mu = np.stack([F[y == c].mean(0) for c in cl])
    R = F - mu[[cl.index(c) for c in y]]
    P = np.linalg.pinv(np.cov(R.T)); g = F.mean(0); Pg = np.linalg.pinv(np.cov(F.T))
    return mu, P, g, Pg
def dist(F, m, rel=True):
    mu, P, g, Pg = m
    d = np.stack([np.einsum("ij,jk,ik->i", F-m_, P, F-m_) for m_ in mu], 1).min(1)
    return d - np.einsum("ij,jk,ik->i", F-g, Pg, F-g) if rel else d
def zpart(v):
    pred = {s: list(tabs[s].pred_class) for s in v}
    ref = fit_reference(v["val"][tv], np.asarray(pred["val"])[tv], classes)
    return {s: standardise(v[s], pred[s], ref) for s in v}
parts = {"cur4": {s: tabs[s].anomaly_score.to_numpy() for s in tabs}}
for name, d in featdirs.items():
    z = {s: dict(np.load(f"{d}/{s}.npz", allow_pickle=True)) for s in ("train", "val", "test")}
    for s in ("val", "test"): assert (z[s]["image"] == tabs[s].image.to_numpy()).all()
    ok = ~np.isnan(z["train"]["feats"]).any(1)
    m = fitg(z["train"]["feats"][ok].astype(np.float64), z["train"]["label"][ok])
    parts[f"d{name}"] = zpart({s: dist(z[s]["feats"].astype(np.float64), m) for s in ("val", "test")})
    parts[f"dabs{name}"] = zpart({s: dist(z[s]["feats"].astype(np.float64), m, False) for s in ("val", "test")})
    def msp(lg):
        e = np.exp(lg - lg.max(1, keepdims=True)); return 1 - (e / e.sum(1, keepdims=True)).max(1)
    parts[f"msp{name}"] = zpart({s: msp(z[s]["logits"].astype(np.float64)) for s in ("val", "test")})
cands = {k: v for k, v in parts.items()}
# the 3 diffusion parts' mean = (4*cur4 - msp32)/3
if "msp32" in parts:
    diff3 = {s: (4 * parts["cur4"][s] - parts["msp32"][s]) / 3 for s in tabs}
    cands["diff3"] = diff3
    for extra in ([["msp32"], ["d32"], ["msp32", "d32"], ["dabs32"]] + ([["msp128"], ["d128"], ["msp128", "d128"],
                  ["msp32", "msp128"], ["msp32", "d32", "msp128", "d128"], ["dabs128"]] if "msp128" in parts else [])):
        cands["diff3+" + "+".join(extra)] = {s: (3 * diff3[s] + sum(parts[e][s] for e in extra)) / (3 + len(extra)) for s in tabs}
rows = []
for k, v in cands.items():
    r = {"score": k}
    for s in SPLITS:
        lab = tabs[s].label.to_numpy(); pos, neg = v[s][lab == held], v[s][lab != held]
        pos, neg = pos[~np.isnan(pos)], neg[~np.isnan(neg)]
        r[f"{s}_auroc"], r[f"{s}_sens"] = _auroc(pos, neg), _sens_at_spec(pos, neg)
    rows.append(r)
print(pd.DataFrame(rows).round(3).to_string(index=False))
