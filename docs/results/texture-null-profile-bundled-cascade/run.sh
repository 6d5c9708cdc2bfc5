#!/usr/bin/env bash
# Issue 25, sixth session: the bundled cascade's texture references re-fitted with the texture profile of gains *and*
# log null-class errors per noise level, and the +baseline one with the baseline's feature distance. One calibrate run
# on PBC val with class-gain+texture+baseline (data/models/baseline-32, with its feature density) writes every column;
# the class-gain+texture reference is fitted from the same table
# (calibrate --from-results). Both on a copy of the model; ../texture-profile-bundled-cascade/copy_fit.py then copies
# each fit into data/models/cpu-32. Then the data/pbc_mini originals, their 128-px copies and two other labs are
# classified, and flag_rates.py reads both scores from those tables. Resumable; one core. `bash run.sh RUN_DIR`
set -euo pipefail
cd "$(dirname "$0")/../../.."
export CYTOMODEL_THREADS=1 OMP_NUM_THREADS=1
E=${1:?RUN_DIR} M=$1/cascade-128 HERE=docs/results/texture-null-profile-bundled-cascade
OLD=docs/results/texture-profile-bundled-cascade
B=(--anomaly class-gain+texture+baseline --baseline data/models/baseline-32)
mkdir -p "$E"
[[ -d $M ]] || cp -rL data/models/cascade-128 "$M"
if [[ ! -f $E/val_T.csv ]]; then
  .venv/bin/cytomodel calibrate --model "$M" --data ../shared/data/pbc --split val "${B[@]}" --results "$E/val.csv" \
    --rescored-out "$E/val_T.csv"
else   # the val table is there (this session: made before the feature density, then add_distance.py): fit from it
  .venv/bin/cytomodel calibrate --model "$M" --data ../shared/data/pbc --split val "${B[@]}" --from-results "$E/val.csv"
fi
.venv/bin/cytomodel calibrate --model "$M" --data ../shared/data/pbc --split val --anomaly class-gain+texture \
  --from-results "$E/val.csv"
echo "== $(date -u +%T) CALIBRATED"
.venv/bin/cytomodel classify --model "$M" --data data/pbc_mini "${B[@]}" --out "$E/pbc_mini.csv"
.venv/bin/cytomodel classify --model "$M" --data $OLD/copies_manifest.csv "${B[@]}" --out "$E/pbc_mini_copies.csv"
.venv/bin/cytomodel classify --model "$M" --data ../shared/data/tecom_wbc "${B[@]}" --out "$E/tecom.csv"
.venv/bin/cytomodel classify --model "$M" --data ../shared/data/bccd_wbc "${B[@]}" --out "$E/bccd.csv"
.venv/bin/python $HERE/flag_rates.py "$E" "$HERE/flag_rates.csv"
echo "== $(date -u +%T) DONE; then: python $OLD/copy_fit.py $M/base/cytomodel.json ANOMALY, for both"
