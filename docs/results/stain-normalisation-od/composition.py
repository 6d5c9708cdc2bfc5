"""Does per-set OD normalisation depend on the set's class mix? PBC val, 60 per class: normalised as one mixed set,
and each class as its own set; cpu-32-lab at defaults on the arrays (probe's own transform: 32-px stats both sides)."""
import sys, json
import numpy as np
sys.argv = [sys.argv[0], 'none', 'pbc_val']
exec(open(__file__.replace('composition.py', 'probe.py')).read().split("ds = datasets(SH)")[0])
ds = datasets(SH)
items, _ = ds['pbc_val']
arr, keep = framed(items)
labels = np.array([items[i][1] for i in keep])
res = {}
for mode in ('mixed', 'per-class'):
    x = arr.copy()
    if mode == 'mixed':
        x = transform('od-linear', arr, tgt)
    else:
        for c in np.unique(labels):
            x[labels == c] = transform('od-linear', arr[labels == c], tgt)
    pred = classify_arrays(model, x, ClassifierConfig())['pred_class'].to_numpy()
    rec = {c: round(float(np.mean(pred[labels == c] == c)), 3) for c in np.unique(labels)}
    res[mode] = dict(bal=round(float(np.mean(list(rec.values()))), 4), recall=rec)
    print(mode, json.dumps(res[mode]), flush=True)
json.dump(res, open('composition.json', 'w'), indent=1)
