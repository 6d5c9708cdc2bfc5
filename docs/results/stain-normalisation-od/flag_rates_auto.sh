# Issue 25 beside issue 23: the bundled cascade's anomaly flag rates on other labs with the default intake (stain
# normalisation auto). The PBC tables are those of ../texture-null-profile-bundled-cascade/run.sh (auto leaves PBC alone).
set -e
cd "$(dirname "$0")/../../.."
export CYTOMODEL_THREADS=1 OMP_NUM_THREADS=1
B=(--anomaly class-gain+texture+baseline --baseline data/models/baseline-32)
E=${1:?RUN_DIR, holding val_T.csv and pbc_mini*.csv from that run and a link cascade-128 -> data/models/cascade-128}
.venv/bin/cytomodel classify --model data/models/cascade-128 --data ../shared/data/tecom_wbc "${B[@]}" --out $E/tecom.csv
.venv/bin/cytomodel classify --model data/models/cascade-128 --data ../shared/data/bccd_wbc "${B[@]}" --out $E/bccd.csv
.venv/bin/python docs/results/texture-null-profile-bundled-cascade/flag_rates.py $E $E/flag_rates.csv
