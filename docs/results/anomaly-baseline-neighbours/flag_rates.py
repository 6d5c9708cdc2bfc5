"""(From the repository root, by refit.sh.) Share of cells over PBC val's 96.2nd percentile for the bundled cascade's
+baseline score before (the Mahalanobis part, the reference at git HEAD when refit.sh ran: pass its commit as
OLD_COMMIT) and after (the nearest-neighbour part, the refitted copy's), the softmax form, and each baseline part
alone, on PBC val and two other labs' normal cells.   python flag_rates.py RUN_DIR [OLD_COMMIT]"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from cytomodel.classify.novelty import anomaly_of, score_parts

run = Path(sys.argv[1])
old_commit = sys.argv[2] if len(sys.argv) > 2 else "HEAD"
S = "class-gain+texture+baseline"


def fits_of(meta: dict) -> dict:
    return {f["config"]["anomaly"]: f["reference"] for f in meta["novelty_fits"]}


new = fits_of(json.loads((run / "cascade-128" / "base" / "cytomodel.json").read_text()))
old = fits_of(json.loads(subprocess.run(["git", "show", f"{old_commit}:data/models/cpu-32/cytomodel.json"],
                                        capture_output=True, text=True, check=True).stdout))
refs = {"+baseline, Mahalanobis (before)": old[S], "+baseline, neighbours (now)": new[S],
        "+baseline-softmax": new[S + "-softmax"], "class-gain+texture": new["class-gain+texture"]}
for part, ref in (("baseline_distance", old[S]), ("baseline_neighbours", new[S])):
    refs[f"{part} alone"] = {"parts": {part: ref["parts"][part]}}


def scores(t: pd.DataFrame) -> dict[str, np.ndarray]:
    pred = list(t.pred_class)
    return {k: anomaly_of(score_parts(t, r), pred, r) for k, r in refs.items()}


tabs = {n: (lambda t: t[t.pred_class.notna()])(pd.read_csv(run / f"main-{n}.csv")) for n in ("val", "tecom", "bccd")}
thr = {k: np.quantile(v, 0.962) for k, v in scores(tabs["val"]).items()}
rows = {n: {k: round(float(np.mean(v > thr[k])), 3) for k, v in scores(t).items()} for n, t in tabs.items()}
print(pd.DataFrame(rows).to_string())
