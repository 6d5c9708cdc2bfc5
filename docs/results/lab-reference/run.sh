#!/usr/bin/env bash
# Issue 25: anomaly references fitted on another lab's own normal cells (`cytomodel calibrate --reference-only`).
# Classifies PBC val, tecom_wbc and bccd_wbc once per model and score (default intake: stain normalisation auto),
# then lab_reference.py splits each lab's cells in halves, fits the reference on one half and reads the flag rate on
# the other. Resumable (classify's own resume); one core. `bash run.sh RUN_DIR`
# flag-rates.csv: after the per-compartment stain statistics (the same day) the tecom and BCCD tables were made again
# with that code; the PBC val tables of the first run were kept — `auto` leaves PBC alone, so they hold the numbers
# this code gives, but classify refuses to resume them (their recorded plan lacks the compartment statistics).
# flag-rates-all-pixel-stain.csv: the first run, tecom and BCCD mapped with the all-pixel moment.
set -euo pipefail
cd "$(dirname "$0")/../../.."
export CYTOMODEL_THREADS=1 OMP_NUM_THREADS=1
E=${1:?RUN_DIR}
mkdir -p "$E"
B=(--anomaly class-gain+texture+baseline --baseline data/models/baseline-32)
for d in tecom:../shared/data/tecom_wbc bccd:../shared/data/bccd_wbc val:../shared/data/pbc; do
  name=${d%%:*} data=${d#*:} split=(); [[ $name == val ]] && split=(--split val)
  .venv/bin/cytomodel classify --model data/models/cascade-128 --data "$data" "${split[@]}" "${B[@]}" \
    --out "$E/cascade-$name.csv"
  echo "== $(date -u +%T) cascade $name"
done
for d in tecom:../shared/data/tecom_wbc bccd:../shared/data/bccd_wbc val:../shared/data/pbc; do
  name=${d%%:*} data=${d#*:} split=(); [[ $name == val ]] && split=(--split val)
  .venv/bin/cytomodel classify --data "$data" "${split[@]}" --anomaly class-gain --out "$E/lab32-$name.csv"
  echo "== $(date -u +%T) cpu-32-lab $name"
done
echo "== $(date -u +%T) DONE"
