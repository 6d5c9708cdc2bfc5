"""ig (held out of training) against the other PBC test cells, with the bundled held-out cascade's calibrated
`class-gain+texture` score: AUROC, sensitivity at specificity 0.962 (threshold from the test cells of the trained
classes, as in docs/classifier.md), per ig subtype. RUNS: the folder with the two halves' classify tables
(`cytomodel classify --model data/models/holdout-ig/cascade --anomaly class-gain+texture`, test split in two
halves, one core each)."""
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

RUNS = sys.argv[1] if len(sys.argv) > 1 else "runs"
REPO = Path(__file__).resolve().parents[3]
m = pd.read_csv(REPO.parent / "shared" / "data" / "pbc" / "manifest.csv")
m['name'] = m.path.map(lambda p: Path(p).name)
d = pd.concat([pd.read_csv(f'{RUNS}/holdout-test-{h}.csv') for h in 'ab'], ignore_index=True)
d['name'] = d.image.map(lambda p: Path(p).name)
d = d.merge(m[['name', 'subtype']], on='name', how='left')
n_all = len(d); d = d[d.pred_class.notna()]
y = (d.label == 'ig').astype(int); s = d.anomaly_score
thr = np.quantile(s[y == 0], 0.962)
out = {'cells': n_all, 'classified': len(d), 'ig': int(y.sum()), 'others': int((y == 0).sum()),
       'auroc': round(roc_auc_score(y, s), 3), 'sens_at_spec_0.962': round(float((s[y == 1] > thr).mean()), 3),
       'trained_accuracy': round(float((d[y == 0].pred_class == d[y == 0].label).mean()), 4)}
for st in ('PMY', 'MY', 'MMY'):
    k = (d.label != 'ig') | (d.subtype == st)
    yy = (d[k].label == 'ig').astype(int)
    out[f'auroc_{st}'] = round(roc_auc_score(yy, d[k].anomaly_score), 3)
    out[f'sens_{st}'] = round(float((d[k & (d.label == 'ig')].anomaly_score > thr).mean()), 3)
    out[f'n_{st}'] = int(yy.sum())
print(json.dumps(out))
json.dump(out, open(f'{RUNS}/holdout-test-scores.json', 'w'), indent=1)
