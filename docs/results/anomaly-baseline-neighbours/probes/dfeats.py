"""Probe (issue 25): the held-out base model's own representation (UNet mid-block, null class, noise level T, 4
draws; cytomodel.morphology_map.representations.diffusion_features) for PBC train (without the class), val, test,
framed by the model's intake; cached per split."""
import sys, time, numpy as np, pandas as pd
from pathlib import Path
sys.path.insert(0, "/work/main")
from cytomodel.data import framed_arrays
from cytomodel.models.loading import load_base
from cytomodel.morphology_map.representations import diffusion_features
held, mdir, out, T = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
out.mkdir(parents=True, exist_ok=True)
model = load_base(mdir)
root = "/work/shared/data/pbc/"
man = pd.read_csv(root + "manifest.csv")
intake = model.intake()
for s in ("val", "test", "train"):
    f = out / f"{s}-t{T}.npz"
    if f.is_file(): continue
    m = man[(man.split == s) & ((man.label != held) if s == "train" else True)]
    paths = [root + p for p in m.path]
    t0 = time.time(); feats = []
    for b in range(0, len(paths), 512):
        chunk = paths[b:b + 512]
        arr, keep = framed_arrays(intake.frame(chunk), model.resolution)
        fe = diffusion_features(model, arr, noise_level=T, draws=4, seed=0)
        F = np.full((len(chunk), fe.shape[1]), np.nan, np.float32); F[keep] = fe
        feats.append(F)
        print(s, b, len(paths), round(time.time() - t0), flush=True)
    np.savez(f, feats=np.concatenate(feats), label=m.label.to_numpy(), image=np.array(paths))
