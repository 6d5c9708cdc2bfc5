"""Add the baseline's nearest-neighbour distance (``baseline_neighbours``) to stored classify tables, through the
product's own code (BaselinePart.columns: the baseline's intake, its refitted feature density), without repeating
the UNet calls. Checks that the same code re-derives the table's stored ``baseline_distance`` and ``baseline_raw``
(the same framing, the same features), and refuses to write otherwise.

    python add_neighbours.py BASELINE_DIR OUT.csv TABLE.csv [TABLE2.csv ...]
"""
import sys

import numpy as np
import pandas as pd

from cytomodel.classify.baseline_part import BaselinePart
from cytomodel.evaluate import load_baseline

baseline, out, *tables = sys.argv[1:]
table = pd.concat([pd.read_csv(t) for t in tables], ignore_index=True)
clf = load_baseline(baseline)
part = BaselinePart.of_classifier(clf, baseline, clf.class_names)
cols = part.columns(list(table.image))
for c in ("baseline_raw", "baseline_distance"):
    ok = np.isfinite(table[c].to_numpy(float))
    err = np.abs(cols[c][ok] - table[c].to_numpy(float)[ok]).max()
    scale = np.abs(table[c].to_numpy(float)[ok]).max()
    print(f"{c}: {ok.sum()} cells, largest difference from the stored column {err:.2e} (of {scale:.3g})")
    if err > 1e-3 * scale:
        sys.exit(f"{c} differs from the stored table: not the same framing or baseline")
table["baseline_neighbours"] = cols["baseline_neighbours"]
table.to_csv(out, index=False)
print(f"{out}: {len(table)} rows, baseline_neighbours on {np.isfinite(table.baseline_neighbours).sum()}")
