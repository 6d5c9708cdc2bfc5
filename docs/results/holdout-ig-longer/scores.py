"""ig (held out of training) against the other PBC cells of one split, for every anomaly reference a calibrated
held-out cascade holds, scored by the library's own functions from one classify table (so every score reads the
same UNet calls): AUROC, sensitivity at specificity 0.962 (threshold = the 96.2nd percentile of the trained classes'
scores of the same split, as in docs/classifier.md), per ig subtype, and the trained classes' accuracy.

    python scores.py MODEL_BASE_DIR SPLIT TABLE.csv [TABLE2.csv ...] [--json OUT.json]

MODEL_BASE_DIR: the cascade's base stage folder (its cytomodel.json holds the references, `novelty_fits`).
On val the references were fitted on the same trained-class cells (in-sample, as every val figure of this issue)."""
import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from cytomodel.classify.novelty import anomaly_of, score_parts

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "benchmarks"))

from anomaly_scores import _auroc, _sens_at_spec  # noqa: E402   the anomaly benchmarks' measures (specificity 0.962)


def references(model_base: Path) -> dict[str, dict]:
    """The latest fitted reference of each anomaly score the model holds."""
    meta = json.loads((model_base / "cytomodel.json").read_text())
    return {fit["config"]["anomaly"]: fit["reference"] for fit in meta.get("novelty_fits") or []}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("model_base", type=Path)
    p.add_argument("split")
    p.add_argument("tables", nargs="+")
    p.add_argument("--holdout", default="ig")
    p.add_argument("--json", default=None)
    p.add_argument("--tables-out", default=None, type=Path,
                   help="write the table once per score, anomaly_score = that score (for cytomodel triage)")
    args = p.parse_args()
    manifest = pd.read_csv(REPO.parent / "shared" / "data" / "pbc" / "manifest.csv")
    manifest["name"] = manifest.path.map(lambda q: Path(q).name)
    table = pd.concat([pd.read_csv(t) for t in args.tables], ignore_index=True)
    table["name"] = table.image.map(lambda q: Path(q).name)
    table = table.merge(manifest[["name", "subtype"]], on="name", how="left")
    n_all = len(table)
    table = table[table.pred_class.notna()].reset_index(drop=True)
    held = (table.label == args.holdout).to_numpy()
    out = {"split": args.split, "cells": n_all, "classified": len(table), "held_out": int(held.sum()),
           "others": int((~held).sum()),
           "trained_accuracy": round(float((table[~held].pred_class == table[~held].label).mean()), 4), "scores": {}}
    pred = table.pred_class.to_numpy()
    for name, ref in references(args.model_base).items():
        score = anomaly_of(score_parts(table, ref), pred, ref)
        neg = score[~held]
        row = {"auroc": round(_auroc(score[held], neg), 3), "sens": round(_sens_at_spec(score[held], neg), 3)}
        for st in sorted(table[held].subtype.dropna().unique()):
            pos = score[held & (table.subtype == st).to_numpy()]
            if len(pos) >= 20:
                row[f"auroc_{st}"], row[f"sens_{st}"] = round(_auroc(pos, neg), 3), round(_sens_at_spec(pos, neg), 3)
        out["scores"][name] = row
        if args.tables_out:
            args.tables_out.mkdir(parents=True, exist_ok=True)
            table.assign(anomaly_score=score).drop(columns=["name", "subtype"]).to_csv(
                args.tables_out / f"{args.split}-{name}.csv", index=False)
    print(json.dumps(out, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
