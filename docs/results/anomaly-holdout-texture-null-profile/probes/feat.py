"""Prototype: baseline CNN penultimate-feature Mahalanobis (Lee et al. 2018) for held-out classes; cache features."""
import sys, time, numpy as np, pandas as pd
from pathlib import Path
sys.path.insert(0, "/work/main")
from cytomodel.data import framed_arrays
from cytomodel.evaluate import load_baseline
held, bdir, tabdir, out = sys.argv[1:5]
out = Path(out); out.mkdir(parents=True, exist_ok=True)
clf = load_baseline(bdir)
man = pd.read_csv("/work/shared/data/pbc/manifest.csv")
tr = man[(man.split == "train") & (man.label != held)]
sets = {"train": ["../shared/data/pbc/" + p for p in tr.path]}
labs = {"train": tr.label.to_numpy()}
for s in ("val", "test"):
    t = pd.read_csv(f"{tabdir}/{s}.csv"); sets[s] = list(t.image); labs[s] = t.label.to_numpy()
for s, paths in sets.items():
    f = out / f"{s}.npz"
    if f.is_file(): continue
    t0 = time.time(); feats = []; logits = []
    for b in range(0, len(paths), 512):
        arr, keep = framed_arrays(clf.intake().frame(paths[b:b+512]), clf.resolution)
        n = len(paths[b:b+512]); fe = clf.features(arr); l = clf.logits(arr)
        F = np.full((n, fe.shape[1]), np.nan, np.float32); L = np.full((n, l.shape[1]), np.nan, np.float32)
        F[keep] = fe; L[keep] = l
        if len(keep) < n: print(s, b, "not framed:", n - len(keep), flush=True)
        feats.append(F); logits.append(L)
        print(s, b, time.time() - t0, flush=True)
    np.savez(f, feats=np.concatenate(feats), logits=np.concatenate(logits), label=labs[s], image=np.array(paths))
