"""The baseline CNN's own anomaly scores, alone (1 − max softmax: ``baseline_raw``; feature distance:
``baseline_distance``), read from the classify tables of evaluate.sh, by the anomaly benchmarks' measures.

    python baseline_alone.py CLASS R/TAG   e.g. erythroblast /work/runs/holdout15/4k   (reads TAG-{val,test}-{a,b}.csv)
"""
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
from anomaly_scores import _auroc, _sens_at_spec  # noqa: E402

held, prefix = sys.argv[1], sys.argv[2]
for split in ("val", "test"):
    t = pd.concat([pd.read_csv(f"{prefix}-{split}-{half}.csv") for half in "ab"])
    t = t[t.pred_class.notna()]
    y = (t.label == held).to_numpy()
    for c in ("baseline_raw", "baseline_distance"):
        v = t[c].to_numpy(float)
        print(split, c, len(t), int(y.sum()), round(_auroc(v[y], v[~y]), 3), round(_sens_at_spec(v[y], v[~y]), 3))
