"""Probe (val only): texture errors of a larger centre crop (96, 128 px) than the stage's 64-px training crop, on a
subsample of val cells (all-ig/ery cap 150 + 450 trained-class cells, seed 0), t in {200..800}, 2 draws, same seeds
scheme as the benchmark. Resumable per chunk."""
import sys, time, numpy as np
from pathlib import Path
sys.path.insert(0, "/work/main")
from cytomodel.classify.texture import texture_errors
from cytomodel.data import framed_arrays
from cytomodel.models import load_model
from cytomodel.runtime import configure_runtime
held, srdir, ref, crop, out = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), Path(sys.argv[5])
configure_runtime()
sr = load_model(srdir)
z = dict(np.load(ref, allow_pickle=True))
rng = np.random.default_rng(0)
pos = np.flatnonzero(z["label"] == held); neg = np.flatnonzero(z["label"] != held)
idx = np.sort(np.concatenate([rng.choice(pos, min(150, len(pos)), replace=False), rng.choice(neg, 450, replace=False)]))
ts = (200, 350, 500, 650, 800)
done = dict(np.load(out, allow_pickle=True)) if out.is_file() else None
errs = [done["errors"]] if done is not None else []
start = 0 if done is None else len(done["errors"])
intake = sr.intake(); t0 = time.time()
for b in range(start, len(idx), 50):
    rows = idx[b:b + 50]
    arrays, keep = framed_arrays(intake.frame(list(z["image"][rows])), sr.resolution)
    pred = np.array([sr.class_index(c) for c in z["pred"][rows][keep]])
    chunk = np.full((len(rows), len(ts), 2, 2), np.nan, np.float32)
    chunk[keep] = texture_errors(sr, arrays, pred, 2, seed=b, timesteps=ts, crop=crop)
    errs.append(chunk); e = np.concatenate(errs)
    np.savez(out, errors=e, idx=idx[:len(e)], label=z["label"][idx[:len(e)]], pred=z["pred"][idx[:len(e)]], timesteps=np.array(ts))
    print(len(e), len(idx), f"{(time.time() - t0) / (len(e) - start):.2f} s/cell", flush=True)
