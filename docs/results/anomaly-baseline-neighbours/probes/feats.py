"""Baseline CNN penultimate features (the held-out baseline) for PBC train (without the class), val, test — framed by
the product's intake; cached per split."""
import sys, time, numpy as np, pandas as pd
from pathlib import Path
sys.path.insert(0, "/work/main")
from cytomodel.data import framed_arrays
from cytomodel.evaluate import load_baseline
held, bdir, out = sys.argv[1:4]
out = Path(out); out.mkdir(parents=True, exist_ok=True)
clf = load_baseline(bdir)
root = "/work/shared/data/pbc/"
man = pd.read_csv(root + "manifest.csv")
for s in ("val", "test", "train"):
    f = out / f"{s}.npz"
    if f.is_file(): continue
    m = man[(man.split == s) & ((man.label != held) if s == "train" else True)]
    paths = [root + p for p in m.path]
    t0 = time.time(); feats = []; logits = []
    intake = clf.intake()
    for b in range(0, len(paths), 512):
        chunk = paths[b:b + 512]
        arr, keep = framed_arrays(intake.frame(chunk), clf.resolution)
        fe = clf.features(arr); l = clf.logits(arr)
        F = np.full((len(chunk), fe.shape[1]), np.nan, np.float32); L = np.full((len(chunk), l.shape[1]), np.nan, np.float32)
        F[keep] = fe; L[keep] = l
        feats.append(F); logits.append(L)
        print(s, b, len(paths), round(time.time() - t0), flush=True)
    np.savez(f, feats=np.concatenate(feats), logits=np.concatenate(logits), label=m.label.to_numpy(),
             subtype=m.subtype.fillna("").to_numpy(), image=np.array(paths))
