"""Does the product's stain normalisation depend on a set's mix of cells? PBC val, 60 cells a class (as
benchmarks/cross_lab.py's `pbc_val`): each class alone as one set, forced through
`--stain-normalisation optical-density` (the record's statistics: per compartment since 2026-12-07), classified by
cpu-32-lab at the defaults. A map that the mix does not move leaves each one-class set as it is.

    python docs/results/stain-compartments/composition.py OUT.json"""
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from cross_lab import datasets  # noqa: E402
from cytomodel.classify import ClassifierConfig, classify_images  # noqa: E402
from cytomodel.models import load_base  # noqa: E402
from cytomodel.runtime import configure_runtime  # noqa: E402

configure_runtime()
model = load_base(REPO / "data" / "models" / "cpu-32-lab")
items, _ = datasets(REPO.parent / "shared" / "data")["pbc_val"]
out = {}
for stain in ("none", "optical-density"):
    recall = {}
    for c in model.class_names:
        paths = [p for p, lab in items if lab == c]
        df = classify_images(model, paths, ClassifierConfig(), on_error="skip", intake=model.intake(stain=stain))
        done = df[df["pred_class"].notna()]
        recall[c] = round(float((done["pred_class"] == c).mean()), 3)
        print(stain, c, recall[c], flush=True)
    out[stain] = {"bal": round(float(np.mean(list(recall.values()))), 4), "recall": recall}
Path(sys.argv[1]).write_text(json.dumps(out, indent=1))
print(json.dumps(out))
