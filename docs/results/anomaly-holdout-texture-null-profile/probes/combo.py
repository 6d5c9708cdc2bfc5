import sys, numpy as np, pandas as pd
sys.path.insert(0, "/work/main"); sys.path.insert(0, "/work/main/benchmarks")
from anomaly_scores import _auroc, _sens_at_spec
held, scores_tab, tabdir, featdir = sys.argv[1:5]
# new 4-part (null profile, +msp) and new 3-part from the benchmark's tables
def load(form):
    import subprocess
    return None
exec(open("/work/runs/s10/eval2.py").read().split("cands = {k: v")[0].replace("held, tabdir = sys.argv[1:3]", "held, tabdir = sys.argv[1], sys.argv[3]").replace("featdirs = dict(kv.split(\"=\") for kv in sys.argv[3].split(\",\"))", "featdirs = {'32': sys.argv[4]}"))
new4 = {s: pd.read_csv(f"{scores_tab}-baseline/{s}.csv").anomaly_score.to_numpy() for s in ("val",)}
new3 = {s: pd.read_csv(f"{scores_tab}/{s}.csv").anomaly_score.to_numpy() for s in ("val",)}
assert (pd.read_csv(f"{scores_tab}/val.csv").image.to_numpy() == tabs["val"].image.to_numpy()).all()
c = {"new4 (+msp)": new4["val"], "new3": new3["val"], "new3+d32": (3 * new3["val"] + parts["d32"]["val"]) / 4,
     "new3+msp+d32": (3 * new3["val"] + parts["d32"]["val"] + parts["msp32"]["val"]) / 5}
lab = tabs["val"].label.to_numpy()
for k, v in c.items():
    pos, neg = v[lab == held], v[lab != held]; pos, neg = pos[~np.isnan(pos)], neg[~np.isnan(neg)]
    print(f"{k:15s} {_auroc(pos, neg):.4f} {_sens_at_spec(pos, neg):.3f}")
