"""The probe that chose the method (2026-12-07): per-set colour normalisations of framed cells — none, Reinhard,
white balance only (`wb`), the optical-density map (`od-linear`: what `--stain-normalisation optical-density`
became) and a per-channel OD gain (`od-scale`) — classified by cpu-32-lab (defaults) and baseline-32. This prototype
measured both the set's and the target's statistics on 32-px framed cells (the product measures both at 128 px).

    cd docs/results/stain-normalisation-od && python probe.py none,wb,od-linear,od-scale tecom
    python probe.py none,reinhard,wb,od-linear,od-scale bccd,pbc_val,pbc_mini
"""
import sys, json, time
from pathlib import Path
import numpy as np, pandas as pd
REPO = Path(__file__).resolve().parents[3]; sys.path.insert(0, str(REPO)); sys.path.insert(0, str(REPO / 'benchmarks'))
from cross_lab import datasets, SHIFT_CLASSES
from cytomodel.models.loading import load_model
from cytomodel.evaluate.baseline import load_baseline
from cytomodel.evaluate import balanced_items
from cytomodel.data import framed_arrays
from cytomodel.classify.batch import classify_arrays
from cytomodel.classify import ClassifierConfig
from cytomodel.data.framing import reinhard, lab_statistics
from PIL import Image

OUT = Path('.'); SH = Path(__file__).resolve().parents[4] / 'shared' / 'data'
model = load_model(REPO / 'data/models/cpu-32-lab')
base = load_baseline(REPO / 'data/models/baseline-32')
intake = model.intake(stain='none')

def framed(items):
    cells = intake.frame([p for p, _ in items])
    arr, keep = framed_arrays(cells, model.resolution)
    return arr, keep

def background(arr):
    """per-channel background colour of a set: median colour of each image's brightest tenth, median over images"""
    f = arr.reshape(len(arr), -1, 3).astype(float)
    g = f.mean(2)
    thr = np.quantile(g, 0.9, axis=1)[:, None]
    bg = np.array([np.median(f[i][g[i] >= thr[i]], 0) for i in range(len(f))])
    return np.median(bg, 0)

def od(arr, bg):
    return -np.log(np.clip(arr.astype(float) + 1, 1, None) / (bg + 1))

def from_od(o, bg):
    return np.clip((bg + 1) * np.exp(-o) - 1 + 0.5, 0, 255).astype(np.uint8)

def moments(arr, bg):
    o = od(arr, bg).reshape(-1, 3)
    s = o[o.sum(1) > 0.15]
    return s.T @ s / len(s)

def sqrtm(S, inv=False):
    w, v = np.linalg.eigh(S); w = np.maximum(w, 1e-8)
    return (v * (w ** (-0.5 if inv else 0.5))) @ v.T

class Target:
    def __init__(self, arr):
        self.bg = background(arr); self.S = moments(arr, self.bg)
        self.lab = (np.median([lab_statistics(Image.fromarray(a))[0] for a in arr], 0),
                    np.median([lab_statistics(Image.fromarray(a))[1] for a in arr], 0))

def transform(kind, arr, tgt):
    if kind == 'none': return arr
    if kind == 'reinhard':
        src = (np.median([lab_statistics(Image.fromarray(a))[0] for a in arr], 0),
               np.median([lab_statistics(Image.fromarray(a))[1] for a in arr], 0))
        return np.stack([reinhard(a, intake.contract, src) for a in arr])
    bg = background(arr)
    if kind == 'wb':
        return np.clip(arr.astype(float) * (tgt.bg + 1) / (bg + 1), 0, 255).round().astype(np.uint8)
    if kind == 'od-linear':
        M = sqrtm(tgt.S) @ sqrtm(moments(arr, bg), inv=True)
        o = od(arr, bg) @ M.T
        return from_od(o, tgt.bg)
    if kind == 'od-scale':   # per-channel OD gain only (diagonal): stain strength per channel + white balance
        d = np.sqrt(np.diag(tgt.S) / np.diag(moments(arr, bg)))
        return from_od(od(arr, bg) * d, tgt.bg)
    raise ValueError(kind)

train = balanced_items(SH / 'pbc', 'train', 60, None, seed=1)
tarr, _ = framed(train)
tgt = Target(tarr)
print('target bg', tgt.bg, 'S', np.round(tgt.S, 3), flush=True)
ds = datasets(SH)
kinds = sys.argv[1].split(',')
names = sys.argv[2].split(',')
res = {}
for name in names:
    items, classes = ds[name]
    arr, keep = framed(items)
    labels = np.array([items[i][1] for i in keep])
    cls = classes or model.class_names
    print(name, 'bg', background(arr), flush=True)
    for kind in kinds:
        x = transform(kind, arr, tgt)
        Image.fromarray(np.concatenate([np.concatenate(list(x[j*16:(j+1)*16]), 1) for j in range(4)], 0)).save(OUT / f'{name}-{kind}.png')
        t0 = time.time()
        r = classify_arrays(model, x, ClassifierConfig(), classes=classes)
        pred = r["pred_class"].to_numpy()
        pb = base.predict_proba(x)
        idx = [base.class_names.index(c) for c in cls]
        bpred = np.array(cls)[np.argmax(pb[:, idx], 1)]
        out = {}
        for who, p in (('diffusion', pred), ('baseline', bpred)):
            rec = {c: float(np.mean(p[labels == c] == c)) for c in cls if (labels == c).any()}
            out[who] = dict(bal=round(float(np.mean(list(rec.values()))), 4), recall={k: round(v, 3) for k, v in rec.items()})
        res[f'{name}/{kind}'] = out
        print(name, kind, json.dumps(out), f'{time.time()-t0:.0f}s', flush=True)
        json.dump(res, open(OUT / f'res-{"_".join(kinds)}-{"_".join(names)}.json', 'w'), indent=1)
