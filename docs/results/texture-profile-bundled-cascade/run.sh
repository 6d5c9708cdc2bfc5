#!/usr/bin/env bash
# Issue 25, fifth session: the bundled cascade's class-gain+texture reference re-fitted with the texture profile
# (`bash run.sh`), or the class-gain+texture+baseline one with data/models/baseline-32 (`bash run.sh baseline`):
# calibrate on PBC val (a copy of the model; copy_fit.py then copies the fit into data/models/cpu-32), then classify
# the data/pbc_mini originals, their 128-px copies (copies_manifest.csv) and two other labs. Resumable; one core.
set -euo pipefail
cd "$(dirname "$0")/../../.."
export CYTOMODEL_THREADS=1 OMP_NUM_THREADS=1
if [[ ${1:-} == baseline ]]; then
  E=/work/runs/s9/bundled-b A=(--anomaly class-gain+texture+baseline --baseline data/models/baseline-32)
else
  E=/work/runs/s9/bundled A=(--anomaly class-gain+texture)
fi
M=$E/cascade-128 HERE=docs/results/texture-profile-bundled-cascade
mkdir -p "$E"
[[ -d $M ]] || cp -rL data/models/cascade-128 "$M"
.venv/bin/cytomodel calibrate --model "$M" --data ../shared/data/pbc --split val "${A[@]}" --results "$E/val.csv" \
  --rescored-out "$E/val_T.csv"
echo "== $(date -u +%T) CALIBRATED"
.venv/bin/cytomodel classify --model "$M" --data data/pbc_mini "${A[@]}" --out "$E/pbc_mini.csv"
.venv/bin/cytomodel classify --model "$M" --data $HERE/copies_manifest.csv "${A[@]}" --out "$E/pbc_mini_copies.csv"
.venv/bin/cytomodel classify --model "$M" --data ../shared/data/tecom_wbc "${A[@]}" --out "$E/tecom.csv"
.venv/bin/cytomodel classify --model "$M" --data ../shared/data/bccd_wbc "${A[@]}" --out "$E/bccd.csv"
# flag rates: the sixth session's script, which recomputes every score a record holds from its reference (on this
# session's run folders it gives these CSVs exactly; the +baseline one gains a class-gain+texture column)
.venv/bin/python docs/results/texture-null-profile-bundled-cascade/flag_rates.py "$E" "$HERE/flag_rates${1:+-$1}.csv"
echo "== $(date -u +%T) DONE; then: python $HERE/copy_fit.py $M/base/cytomodel.json ${A[1]}"
