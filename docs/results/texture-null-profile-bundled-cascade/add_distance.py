"""(From the repository root.) Add the baseline's feature distance (``baseline_distance``, as `classify` writes it:
BaselinePart.columns on the framed cells) to a calibrate results table made before the column existed — the sixth
session's val table, whose calibrate run was under way when the feature density landed.

    python docs/results/texture-null-profile-bundled-cascade/add_distance.py TABLE.csv [...]"""
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from cytomodel.classify.baseline_part import BaselinePart  # noqa: E402
from cytomodel.evaluate import load_baseline  # noqa: E402

folder = "data/models/baseline-32"
clf = load_baseline(folder)
for table in sys.argv[1:]:
    t = pd.read_csv(table)
    part = BaselinePart.of_classifier(clf, folder, sorted(clf.class_names))
    rows = np.flatnonzero(t.pred_class.notna().to_numpy())
    cols = part.columns(list(t.image.iloc[rows]))
    assert np.allclose(cols["baseline_raw"], t.baseline_raw.iloc[rows], rtol=1e-5, atol=1e-7), "another baseline?"
    t["baseline_distance"] = np.nan
    t.loc[t.index[rows], "baseline_distance"] = cols["baseline_distance"]
    t.to_csv(table, index=False)
    print(f"{table}: baseline_distance added to {len(rows)} rows (baseline_raw reproduced)")
