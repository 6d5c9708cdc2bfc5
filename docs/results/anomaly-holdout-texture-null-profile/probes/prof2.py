"""Val-only: which per-level texture profile — gains (today), log E_class, log E_null, both — from stored errors."""
import sys, numpy as np, pandas as pd
sys.path.insert(0, "/work/main"); sys.path.insert(0, "/work/main/benchmarks")
from anomaly_scores import _auroc, _sens_at_spec
from texture_scores import load_errors
from pathlib import Path
from cytomodel.classify.novelty import fit_profile_reference, profile_distance, fit_reference, standardise
held, tdir, tabdir = sys.argv[1:4]
SPL = sys.argv[4].split(",") if len(sys.argv) > 4 else ["val"]
TS = [200, 350, 500, 650, 800]
res = []
z = {s: load_errors(Path(tdir), s) for s in ("val", "test")}
tabs = {s: pd.read_csv(f"{tabdir}/{s}.csv") for s in ("val", "test")}
for s in z: assert (tabs[s].image.to_numpy()[:len(z[s]["image"])] == z[s]["image"]).all()
classes = sorted(set(tabs["val"].pred_class.dropna()))
def feats(s):
    e = z[s]["errors"]; ti = [list(z[s]["timesteps"]).index(t) for t in TS]
    e = e[:, ti]
    lc, ln = np.log(e[..., 0]).mean(2), np.log(e[..., 1]).mean(2)    # (N, T) mean over draws
    gain = np.log(e[..., 0] / e[..., 1]).mean(2)
    return {"gain": gain, "logE_class": lc, "logE_null": ln, "class+null": np.concatenate([lc, ln], 1),
            "gain+null": np.concatenate([gain, ln], 1)}
F = {s: feats(s) for s in z}
pred = {s: np.asarray([str(p) for p in tabs[s].pred_class.to_numpy()[:len(z[s]["image"])]], object) for s in z}
lab = {s: z[s]["label"] for s in z}
tv = lab["val"] != held
def zp(v):  # scalar part -> robust z per class
    ref = fit_reference(v["val"][tv], pred["val"][tv], classes); return {s: standardise(v[s], pred[s], ref) for s in v}
def zprof(X):
    ok = np.isfinite(X["val"]).all(1) & tv
    ref = fit_profile_reference(X["val"][ok], pred["val"][ok], classes, [f"c{i}" for i in range(X["val"].shape[1])])
    return {s: standardise(profile_distance(X[s], pred[s], ref), pred[s], ref["distance"]) for s in X}
n = {s: len(z[s]["image"]) for s in z}
cg = zp({s: tabs[s].novelty_raw.to_numpy()[:n[s]] for s in z})
gz = zp({s: F[s]["gain"].mean(1) for s in z})
base = {s: tabs[s].anomaly_score.to_numpy()[:n[s]] for s in z}   # the chosen 4-part (with MSP)
# msp z = 4*cur - (cg + gz + prof_gain)
prof = {k: zprof({s: F[s][k] for s in z}) for k in F["val"]}
msp = {s: 4 * base[s] - cg[s] - gz[s] - prof["gain"][s] for s in z}
cands = {"cur4 (check)": base}
for k, p in prof.items():
    cands[f"3-part, profile={k}"] = {s: (cg[s] + gz[s] + p[s]) / 3 for s in z}
    cands[f"4-part, profile={k}"] = {s: (cg[s] + gz[s] + p[s] + msp[s]) / 4 for s in z}
cands["5-part gain+null profiles"] = {s: (cg[s] + gz[s] + prof["gain"][s] + prof["logE_null"][s] + msp[s]) / 5 for s in z}
cands["4-part, gain prof + null prof, no msp"] = {s: (cg[s] + gz[s] + prof["gain"][s] + prof["logE_null"][s]) / 4 for s in z}
rows = []
for k, v in cands.items():
    r = {"score": k}
    for s in SPL:
        pos, neg = v[s][lab[s] == held], v[s][lab[s] != held]
        pos, neg = pos[~np.isnan(pos)], neg[~np.isnan(neg)]
        r[f"{s}_auroc"], r[f"{s}_sens"] = _auroc(pos, neg), _sens_at_spec(pos, neg)
        sub = z[s]["subtype"]
        for st in sorted(set(sub[lab[s] == held]) - {""}):
            p = v[s][(lab[s] == held) & (sub == st)]
            if len(p) >= 20: r[f"{s}_{st}"] = _auroc(p[~np.isnan(p)], neg)
    rows.append(r)
print(pd.DataFrame(rows).round(4).to_string(index=False))
