"""Val-only triage check of the two +baseline forms: val split in two halves (seeded, stratified by label); the rule
is fitted on one half's trained-class cells and applied to the other half (held-out val cells included); both ways;
3 seeds. Scores as in the tables (references fitted on all trained val cells — the same for both forms)."""
import subprocess, sys, json, numpy as np, pandas as pd
from pathlib import Path
S = Path("/work/runs/s10"); out = S / "valtriage"; out.mkdir(exist_ok=True)
rows = []
for h, H in (("ig", "ig"), ("ery", "erythroblast")):
    for form in ("", "-baseline", "-baseline-softmax"):
        t = pd.read_csv(S / f"t3-tables-{h}{form}" / "val.csv")
        for seed in range(3):
            rng = np.random.default_rng(seed)
            half = np.zeros(len(t), bool)
            for lab, idx in t.groupby("label").indices.items():
                pick = rng.permutation(idx)[: len(idx) // 2]
                half[pick] = True
            for k, (a, b) in enumerate(((half, ~half), (~half, half))):
                d = out / f"{h}{form}-{seed}-{k}"; d.mkdir(exist_ok=True)
                t[a].to_csv(d / "cal.csv", index=False); t[b].to_csv(d / "cells.csv", index=False)
                subprocess.run(["/work/main/.venv/bin/cytomodel", "triage", "--calibration", str(d / "cal.csv"),
                                "--cells", str(d / "cells.csv"), "--held-out", H, "--out", str(d / "tri")],
                               check=True, capture_output=True)
                j = json.load(open(d / "tri" / "triage.json"))["classifiers"]["diffusion"]["summary"]
                bl = j["by_label"][H]; tc = j["trained_classes"]
                rows.append({"held": H, "form": form or "diffusion only", "seed": seed, "fold": k,
                             "held_flag": bl["flag"], "held_review": bl["review"], "held_accept": bl["accept"],
                             "trained_accept": tc["coverage"], "trained_error": tc["error_among_accepted"]})
r = pd.DataFrame(rows)
r.to_csv(out / "valtriage.csv", index=False)
print(r.groupby(["held", "form"])[["held_flag", "held_review", "held_accept", "trained_accept", "trained_error"]].mean().round(3).to_string())
