import sys, numpy as np, pandas as pd
sys.path.insert(0, "/work/main/benchmarks"); sys.path.insert(0, "/work/main")
from anomaly_scores import _auroc, _sens_at_spec
from sklearn.covariance import LedoitWolf
held, d, tabdir = sys.argv[1:4]
z = {s: dict(np.load(f"{d}/{s}.npz", allow_pickle=True)) for s in ("train", "val", "test")}
tabs = {s: pd.read_csv(f"{tabdir}/{s}.csv") for s in ("val", "test")}
classes = sorted(set(z["train"]["label"]))
def fit(F, y):
    mu = np.stack([F[y == c].mean(0) for c in classes])
    R = F - mu[[classes.index(c) for c in y]]
    P = np.linalg.pinv(np.cov(R.T) + 1e-6*np.eye(F.shape[1]))
    g_mu = F.mean(0); Pg = np.linalg.pinv(np.cov(F.T) + 1e-6*np.eye(F.shape[1]))
    return mu, P, g_mu, Pg
def score(F, m, rel=False):
    mu, P, g, Pg = m
    d = np.stack([np.einsum("ij,jk,ik->i", F-m_, P, F-m_) for m_ in mu], 1)
    if rel:
        d = d - np.einsum("ij,jk,ik->i", F-g, Pg, F-g)[:, None]
    return d.min(1)
def ev(name, sc):
    r = [name]
    for s in ("val", "test"):
        lab = z[s]["label"]; pos, neg = sc[s][lab == held], sc[s][lab != held]
        r += [round(_auroc(pos, neg), 3), round(_sens_at_spec(pos, neg), 2)]
    print(*r, sep="\t")
def l2n(F): return F / np.linalg.norm(F, axis=1, keepdims=True)
def rz(v, ref):  # robust z against trained val
    med = np.median(ref); mad = np.median(np.abs(ref - med)) * 1.4826
    return (v - med) / mad
trained_val = z["val"]["label"] != held
for tf in ("raw", "l2", "sqrt"):
    T = {"raw": lambda F: F, "l2": l2n, "sqrt": lambda F: l2n(np.sqrt(np.clip(F, 0, None)))}[tf]
    F = {s: T(z[s]["feats"].astype(np.float64)) for s in z}
    for fit_on in ("train", "val"):
        if fit_on == "train": m = fit(F["train"], z["train"]["label"])
        else: m = fit(F["val"][trained_val], z["val"]["label"][trained_val])
        for rel in (False, True):
            sc = {s: score(F[s], m, rel) for s in ("val", "test")}
            ev(f"maha {tf} fit={fit_on} rel={rel}", sc)
            if fit_on == "train" and not rel or fit_on == "train" and rel:
                comb = {s: (rz(sc[s], sc["val"][trained_val]) + rz(tabs[s].anomaly_score.to_numpy(), tabs["val"].anomaly_score.to_numpy()[trained_val]))/2 for s in ("val","test")}
                ev(f"  + chosen combined", comb)
ev("chosen (+baseline msp)", {s: tabs[s].anomaly_score.to_numpy() for s in ("val","test")})
ev("base gain", {s: tabs[s].anomaly_score_base.to_numpy() for s in ("val","test")})
lg = {s: z[s]["logits"] for s in ("val","test")}
ev("max logit", {s: -lg[s].max(1) for s in lg})
ev("energy", {s: -np.log(np.exp(lg[s]).sum(1)) for s in lg})
