#!/usr/bin/env bash
# Issue 25 (copied from /work/runs/tex-e2e/run.sh, where it ran; E is outside the repository): the bundled cascade with --anomaly class-gain+texture, end to end: calibrate on PBC val (a copy of the
# model), then the same cells as 128-px copies and as originals, and two other labs. Resumable (classify skips done rows).
set -euo pipefail
cd /work/main
export CYTOMODEL_THREADS=1 OMP_NUM_THREADS=1
E=/work/runs/tex-e2e M=/work/runs/tex-e2e/cascade-128 A="--anomaly class-gain+texture"
[[ -d $M ]] || cp -rL data/models/cascade-128 $M
# the 128-px copies of data/pbc_mini's originals (one of them, EO_238704, holds two cells and is reported, not classified)
.venv/bin/python -c "import os, pandas as pd; t = pd.read_csv('data/pbc_mini/labels.csv'); pd.DataFrame({'path': [os.path.abspath('../shared/data/pbc/' + f) for f in t.file], 'label': t.label}).to_csv('$E/copies_manifest.csv', index=False)"
.venv/bin/cytomodel calibrate --model $M --data ../shared/data/pbc --split val $A --results $E/val.csv --rescored-out $E/val_T.csv
echo "== $(date -u +%T) CALIBRATED"
.venv/bin/cytomodel classify --model $M --data data/pbc_mini $A --out $E/pbc_mini.csv
.venv/bin/cytomodel classify --model $M --data $E/copies_manifest.csv $A --out $E/pbc_mini_copies.csv
.venv/bin/cytomodel classify --model $M --data ../shared/data/tecom_wbc $A --out $E/tecom.csv
.venv/bin/cytomodel classify --model $M --data ../shared/data/bccd_wbc $A --out $E/bccd.csv
echo "== $(date -u +%T) DONE"
.venv/bin/python docs/results/texture-pipeline-bundled-cascade/flag_rates.py docs/results/texture-pipeline-bundled-cascade/flag_rates.csv
