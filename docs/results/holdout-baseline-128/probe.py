"""Issue 25 probe: does a baseline CNN that reads the cell at 128 px (a strided stem: a 32-px network's cost) add more
to the held-out-class anomaly score than the bundled 32-px one?

The held-out cascade's classify tables (evaluate.sh: one UNet pass per split) hold the diffusion parts; the baseline
parts (feature distance, 1 − max softmax) are recomputed for every cell by each baseline through the library's own
``BaselinePart``, the score's reference refitted on val by the library's ``fit_score_reference`` (as ``cytomodel
calibrate`` does) and the score read by ``anomaly_of``. With the bundled baseline this reproduces the bundle's own
val figures (a check). Test is read only with ``--test``, after val has chosen.

    python probe.py HOLDOUT TABLES_PREFIX CASCADE NAME=BASELINE_DIR ... [--test] [--json OUT]
    e.g. python probe.py ig /work/runs/holdout14/12k data/models/holdout-ig/cascade \\
             bundled=data/models/holdout-ig/baseline s4-128=/work/runs/b128/baseline-ig-128s4
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from anomaly_scores import _auroc, _sens_at_spec  # noqa: E402
from cytomodel.classify.baseline_part import BaselinePart  # noqa: E402
from cytomodel.data import framed_arrays  # noqa: E402
from cytomodel.classify.novelty import anomaly_of, fit_score_reference, score_parts  # noqa: E402
from cytomodel.evaluate import load_baseline  # noqa: E402

SCORES = ("class-gain+texture+baseline", "class-gain+texture+baseline-softmax")


def table(prefix: str, split: str) -> pd.DataFrame:
    t = pd.concat([pd.read_csv(f"{prefix}-{split}-{h}.csv") for h in "ab"], ignore_index=True)
    return t[t.pred_class.notna()].reset_index(drop=True)


def measures(score: np.ndarray, held: np.ndarray) -> dict:
    pos, neg = score[held], score[~held]
    return {"auroc": round(_auroc(pos, neg), 3), "sens": round(_sens_at_spec(pos, neg), 3)}


def accuracy(part: BaselinePart, t: pd.DataFrame) -> float:
    """The baseline's own accuracy on the trained classes' cells of a table, through its intake."""
    arrays, keep = framed_arrays(part.intake.frame(list(t.image)), part.classifier.resolution)
    names = np.array(part.classifier.class_names)[np.argmax(part.classifier.predict_proba(arrays), axis=1)]
    return round(float(np.mean(names == t.label.to_numpy()[keep])), 4)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("holdout")
    p.add_argument("prefix")
    p.add_argument("cascade", type=Path)
    p.add_argument("baselines", nargs="+")
    p.add_argument("--test", action="store_true")
    p.add_argument("--json", default=None)
    a = p.parse_args()
    classes = json.loads((a.cascade / "base" / "cytomodel.json").read_text())["class_names"]
    splits = ["val"] + (["test"] if a.test else [])
    tables = {s: table(a.prefix, s) for s in splits}
    out = {}
    for spec in a.baselines:
        name, folder = spec.split("=", 1)
        part = BaselinePart.of_classifier(load_baseline(folder), folder, classes)
        cols = {s: part.columns(list(t.image)) for s, t in tables.items()}
        res = {}
        for s, t in tables.items():
            t = t.copy()
            for c, v in cols[s].items():
                t[c] = v
            held = (t.label == a.holdout).to_numpy()
            res[s] = {c: measures(t[c].to_numpy(float), held) for c in cols[s]}
            if s == "val":
                refs = {sc: fit_score_reference(t[~held], classes, sc) for sc in SCORES}
            for sc, ref in refs.items():
                res[s][sc] = measures(anomaly_of(score_parts(t, ref), t.pred_class.to_numpy(), ref), held)
            res[s]["baseline_accuracy_trained"] = accuracy(part, t[~held])
        out[name] = res
        print(name, json.dumps(res, indent=1), flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
