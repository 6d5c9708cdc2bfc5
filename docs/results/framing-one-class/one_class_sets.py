"""How the intake frames a set of one cell type (PBC val, each class alone; PBC test originals of `data/pbc_mini`,
each class alone), with the bundled record's class offsets and without them (the rule before): the rule chosen and
the window.  Writes one-class-sets.csv and, per class whose rule changes, a folder of links for `cytomodel classify`.

    python docs/results/framing-one-class/one_class_sets.py OUT_DIR [PER_CLASS]
"""
import json
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))

from cytomodel.data import load_image, scan_dataset  # noqa: E402
from cytomodel.data.framing import measure_cell, plan_scale  # noqa: E402
from cytomodel.data.intake import contract_of  # noqa: E402

out = Path(sys.argv[1])
per = int(sys.argv[2]) if len(sys.argv) > 2 else 60
contract = contract_of(json.loads((REPO / "data/models/cpu-32-lab/cytomodel.json").read_text()))
old = replace(contract, cell_class_offsets=None)
rows = []
sets = {"pbc val (128-px copies)": [r for r in scan_dataset(REPO / "../shared/data/pbc", split="val")],
        "pbc_mini (originals)": scan_dataset(REPO / "data/pbc_mini")}
for name, records in sets.items():
    by: dict = {}
    for r in records:
        by.setdefault(r.label, []).append(r)
    for label, rs in sorted(by.items()):
        rs = rs[:per]
        ms = [measure_cell(load_image(r.path)) for r in rs]
        before, after = plan_scale(ms, old), plan_scale(ms, contract)
        rows.append({"set": name, "class": label, "images": len(rs), "rule_before": before.rule,
                     "window_before": before.window_fraction, "rule_after": after.rule,
                     "window_after": after.window_fraction})
        print(rows[-1], flush=True)
        if before.rule != after.rule:
            d = out / f"{name.split()[0]}-{label}" / label
            d.mkdir(parents=True, exist_ok=True)
            for r in rs:
                link = d / Path(r.path).name
                if not link.exists():
                    link.symlink_to(Path(r.path).resolve())
pd.DataFrame(rows).to_csv(out / "one-class-sets.csv", index=False)
