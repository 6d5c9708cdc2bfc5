"""The classifiers on the images labs have: PBC originals, other labs' crops (BCCD, tecom_wbc), PBC val and test —
an ablation of framing, training for lab variation and test-time choices, every figure printed and written.

Each run is one (classifier, model, intake, classifier options) on one dataset; results are cached per run in
``--out`` (resumable: ``cytomodel classify``'s own resume), so adding a configuration costs only its own runs.

    nice -n 10 python benchmarks/cross_lab.py --out docs/results/cross-lab \\
        --diffusion bundled=data/models/cpu-32 lab=runs/ft-lab32/model \\
        --baseline bundled=data/models/baseline-32 gn-lab=runs/baseline-gn-lab \\
        --datasets pbc_mini bccd tecom pbc_val --configs ...

Datasets (4 shared classes for the other labs — basophil dropped, too few cells — candidates restricted to them):
``pbc_mini`` (data/pbc_mini, PBC originals from the test split), ``pbc_mini_copies`` (the same 160 cells as the
128-px copies), ``bccd``, ``tecom``, ``pbc_val`` (60 per class of PBC val: where test-time choices are made) and
``pbc_test`` (all 1,795 PBC test cells: reported once, for the chosen settings).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SHIFT_CLASSES = ["eosinophil", "lymphocyte", "monocyte", "neutrophil"]

# intake/classifier settings of a configuration: framing on/off, stain normalisation, lab condition, error region
CONFIGS = {
    "centre-crop": dict(framing=False),
    "framed": dict(),
    "framed+reinhard": dict(stain="reinhard"),
    "framed+od": dict(stain="optical-density"),
    "framed+auto": dict(stain="auto"),
    "framed+unknown+od": dict(lab_condition="unknown", stain="optical-density"),
    "framed+unknown+auto": dict(lab_condition="unknown", stain="auto"),
    "framed+unknown": dict(lab_condition="unknown"),
    "framed+disc": dict(error_region="disc"),
    "framed+unknown+disc": dict(lab_condition="unknown", error_region="disc"),
    "framed+unknown+reinhard": dict(lab_condition="unknown", stain="reinhard"),
}


def datasets(shared: Path) -> dict[str, tuple[list[tuple[Path, str]], list[str] | None]]:
    """name -> ((path, label) items, candidate classes or None for all)."""
    from cytomodel.data import scan_dataset
    from cytomodel.evaluate import balanced_items

    mini = pd.read_csv(REPO / "data" / "pbc_mini" / "labels.csv")
    out = {"pbc_mini": ([(REPO / "data" / "pbc_mini" / f, lab) for f, lab in zip(mini.file, mini.label)], None),
           "pbc_mini_copies": ([(shared / "pbc" / f, lab) for f, lab in zip(mini.file, mini.label)], None)}
    for name, folder in (("bccd", "bccd_wbc"), ("tecom", "tecom_wbc")):
        recs = scan_dataset(shared / folder)
        out[name] = ([(r.path, r.label) for r in recs if r.label in SHIFT_CLASSES], SHIFT_CLASSES)
    out["pbc_val"] = (balanced_items(shared / "pbc", "val", 60, None, seed=0), None)
    out["pbc_test"] = ([(r.path, r.label) for r in scan_dataset(shared / "pbc", split="test")], None)
    return out


def summary(table: pd.DataFrame, classes: list[str], pred_col: str) -> dict:
    from cytomodel.evaluate import classification_summary

    done = table[table[pred_col].notna()]
    idx = {c: i for i, c in enumerate(classes)}
    s = classification_summary(done["label"].map(idx).to_numpy(), done[pred_col].map(idx).to_numpy(), len(classes))
    return {"n": int(len(table)), "classified": int(len(done)), "accuracy": round(s["accuracy"], 4),
            "balanced_accuracy": round(s["balanced_accuracy"], 4),
            "recall": {classes[i]: round(v, 4) for i, v in s["recall"].items() if v is not None},
            "confusion": s["confusion"],
            "rules": table["framing_rule"].value_counts().to_dict() if "framing_rule" in table else {}}


def intake_for(model, cfg: dict):
    from cytomodel.data import Intake

    if cfg.get("framing", True) is False:
        return Intake(None, model.resolution, getattr(model, "crop_fraction", 1.0))
    return model.intake(stain=cfg.get("stain", "none"))


def run_diffusion(model, name: str, cfg: dict, items, classes, out: Path) -> dict:
    from cytomodel.classify import ClassifierConfig, classify_folder

    ccfg = ClassifierConfig(lab_condition=cfg.get("lab_condition", "none"),
                            error_region=cfg.get("error_region", "image"))
    t0 = time.perf_counter()
    table = classify_folder(model, None, out / f"{name}.csv", ccfg, items=items, classes=classes, progress=False,
                            intake=intake_for(model, cfg))
    res = summary(table, classes or model.class_names, "pred_class")
    res["seconds"] = round(time.perf_counter() - t0, 1)
    return res


def run_baseline(clf, name: str, cfg: dict, items, classes, out: Path) -> dict:
    from cytocore.classification import restrict_probabilities, with_current_names
    from cytomodel.classify.batch import add_framing_columns
    from cytomodel.data import framed_arrays

    path = out / f"{name}.csv"
    if path.is_file():
        table = with_current_names(pd.read_csv(path))  # a cache of before the one schema: "predicted"
    else:
        intake = intake_for(clf, cfg)
        cells = intake.frame([p for p, _ in items])
        arrays, keep = framed_arrays(cells, clf.resolution)
        proba = restrict_probabilities(clf.predict_proba(arrays), clf.class_names, classes or clf.class_names)
        pred = [None] * len(items)
        for k, i in enumerate(keep):
            pred[i] = clf.class_names[int(np.argmax(proba[k]))]
        table = pd.DataFrame({"image": [str(p) for p, _ in items], "label": [lab for _, lab in items],
                              "pred_class": pred})
        table = add_framing_columns(table, cells)
        table.to_csv(path, index=False)
    return summary(table, classes or clf.class_names, "pred_class")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shared", default=str(REPO.parent / "shared" / "data"))
    p.add_argument("--out", required=True)
    p.add_argument("--diffusion", nargs="*", default=[], metavar="NAME=MODEL")
    p.add_argument("--baseline", nargs="*", default=[], metavar="NAME=MODEL")
    p.add_argument("--datasets", nargs="+", default=["pbc_mini", "bccd", "tecom", "pbc_val"])
    p.add_argument("--configs", nargs="+", default=["centre-crop", "framed"], choices=sorted(CONFIGS))
    args = p.parse_args(argv)

    from cytomodel.evaluate import load_baseline
    from cytomodel.models import load_base
    from cytomodel.runtime import configure_runtime
    from cytocore.provenance import provenance_record, write_json

    configure_runtime()
    out = Path(args.out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    data = datasets(Path(args.shared))
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    jobs = [("diffusion", *spec.split("=", 1)) for spec in args.diffusion] + \
           [("baseline", *spec.split("=", 1)) for spec in args.baseline]
    for kind, mname, mpath in jobs:
        model = load_base(mpath) if kind == "diffusion" else load_baseline(mpath)
        has_lab = kind == "diffusion" and model.augmentation is not None
        for cname in args.configs:
            cfg = CONFIGS[cname]
            if kind == "baseline" and ("lab_condition" in cfg or "error_region" in cfg):
                continue
            if cfg.get("lab_condition") == "unknown" and not has_lab:
                continue
            for dname in args.datasets:
                items, classes = data[dname]
                key = f"{kind}|{mname}|{cname}|{dname}"
                run = f"{kind}-{mname}-{cname}-{dname}"
                fn = run_diffusion if kind == "diffusion" else run_baseline
                res = fn(model, run, cfg, items, classes, out / "runs")
                results[key] = {"classifier": kind, "model": mname, "model_path": mpath, "config": cname,
                                "dataset": dname, **res}
                print(f"{kind:9} {mname:10} {cname:24} {dname:16} balanced accuracy {res['balanced_accuracy']:.3f} "
                      f"({res['classified']}/{res['n']} framed) recall {res['recall']}", flush=True)
                write_json(results_path, results)
    write_json(out / "provenance.json", {**provenance_record(), "argv": sys.argv[1:]})
    rows = [{k: v for k, v in r.items() if k in ("classifier", "model", "config", "dataset", "balanced_accuracy",
                                                  "accuracy", "classified", "n")} for r in results.values()]
    table = pd.DataFrame(rows).pivot_table(index=["classifier", "model", "config"], columns="dataset",
                                            values="balanced_accuracy")
    (out / "results.md").write_text(table.round(3).to_string() + "\n")
    print(table.round(3).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
