#!/usr/bin/env bash
# Issue 25: a held-out-class cascade (BASE and SR model folders; HOLDOUT=ig by default, or erythroblast) exported,
# assembled, calibrated on PBC val and scored there (the held-out class against the trained classes, with every
# reference it holds), and, with TEST=1, read once on test.
#   bash evaluate.sh TAG BASE_MODEL SR_MODEL      e.g. 12k $R/base-ig/model $R/sr-ig/model
# Classification runs in two halves of each split, one per core (CORES=1: one after the other on core 1), with the
# baseline CNN trained without the class, so the diffusion-only and +baseline scores read the same UNet calls (CORES=1
# CORE=0: both on core 0). Resumable:
# classify keeps its tables. The held-out cascade's framing record is copied from the bundled one: the same
# training images (9,938 without ig), measured on all of them (docs/results/holdout-ig-models/make.sh).
set -euo pipefail
cd "$(dirname "$0")/../../.."
HERE=docs/results/holdout-ig-longer
H=${HOLDOUT:-ig}
R=${R:-runs/holdout-$H}
TAG=$1; BASE=$2; SR=$3
CORES=${CORES:-2}; CORE=${CORE:-1}; TEST=${TEST:-0}
BASELINE=data/models/holdout-$H/baseline
M=$R/cascade-$TAG
export CYTOMODEL_THREADS=1 OMP_NUM_THREADS=1
CLI=.venv/bin/cytomodel
if [[ ! -f $M/cytomodel.json ]]; then
  $CLI export --model "$BASE" --out "$R/export-$TAG/base"
  $CLI export --model "$SR" --out "$R/export-$TAG/superres"
  $CLI cascade --base "$R/export-$TAG/base" --superres "$R/export-$TAG/superres" --out "$M" --name "cascade-128-holdout-$H-$TAG"
  .venv/bin/python - "$M" "data/models/holdout-$H/cascade" <<'EOF'
import json, sys
from pathlib import Path
src, dst = Path(sys.argv[2]), Path(sys.argv[1])
for part in ("cytomodel.json", "base/cytomodel.json", "superres/cytomodel.json"):
    a, b = json.loads((src / part).read_text()), json.loads((dst / part).read_text())
    if "framing" in a:
        b["framing"] = a["framing"]
        (dst / part).write_text(json.dumps(b, indent=2) + "\n")
EOF
fi
if [[ ! -f $R/test-b.csv ]]; then   # each split's manifest rows in two halves (every other row by class and path)
  .venv/bin/python - "$R" <<'EOF'
import sys
from pathlib import Path
import pandas as pd
root, out = Path("../shared/data/pbc").resolve(), Path(sys.argv[1])
m = pd.read_csv(root / "manifest.csv")
for split in ("val", "test"):
    s = m[m.split == split].assign(path=lambda d: d.path.map(lambda q: str(root / q)))
    s = s.sort_values(["label", "path"]).reset_index(drop=True)
    s.iloc[0::2].to_csv(out / f"{split}-a.csv", index=False)
    s.iloc[1::2].to_csv(out / f"{split}-b.csv", index=False)
EOF
fi
classify_split() {   # split -> $R/$TAG-$split-{a,b}.csv
  local split=$1 ca=0 cb=1
  [[ $CORES == 1 ]] && ca=$CORE cb=$CORE
  for half in a b; do
    ( taskset -c $([[ $half == a ]] && echo $ca || echo $cb) nice -n 5 $CLI classify --model "$M" \
        --data "$R/$split-$half.csv" --split "$split" --anomaly class-gain+texture+baseline --baseline "$BASELINE" \
        --out "$R/$TAG-$split-$half.csv" > "$R/$TAG-$split-$half.log" 2>&1 ) &
    [[ $CORES == 1 ]] && wait
  done
  wait
}
if ! python3 -c "import json,sys; d=json.load(open('$M/base/cytomodel.json')); sys.exit(0 if d.get('novelty_fits') else 1)"; then
  classify_split val
  .venv/bin/python -c "import pandas as pd, sys; pd.concat([pd.read_csv(f) for f in sys.argv[2:]]).to_csv(sys.argv[1], index=False)" \
      "$R/$TAG-val.csv" "$R/$TAG-val-a.csv" "$R/$TAG-val-b.csv"
  $CLI calibrate --model "$M" --data ../shared/data/pbc --split val --from-results "$R/$TAG-val.csv" \
      --anomaly class-gain+texture > "$R/$TAG-calibrate.log" 2>&1
  $CLI calibrate --model "$M" --data ../shared/data/pbc --split val --from-results "$R/$TAG-val.csv" \
      --anomaly class-gain+texture+baseline --baseline "$BASELINE" --rescored-out "$R/$TAG-val-rescored.csv" \
      >> "$R/$TAG-calibrate.log" 2>&1
  $CLI calibrate --model "$M" --data ../shared/data/pbc --split val --from-results "$R/$TAG-val.csv" \
      --anomaly class-gain+texture+baseline-softmax --baseline "$BASELINE" >> "$R/$TAG-calibrate.log" 2>&1
fi
.venv/bin/python $HERE/scores.py "$M/base" val "$R/$TAG-val-rescored.csv" --holdout $H --json "$R/$TAG-val-scores.json" \
    --tables-out "$R/$TAG-tables"
if [[ $TEST == 1 ]]; then
  classify_split test
  .venv/bin/python $HERE/scores.py "$M/base" test "$R/$TAG-test-a.csv" "$R/$TAG-test-b.csv" \
      --holdout $H --json "$R/$TAG-test-scores.json" --tables-out "$R/$TAG-tables"
  for score in class-gain+texture class-gain+texture+baseline class-gain+texture+baseline-softmax; do   # where the held-out cells go (no UNet calls)
    $CLI triage --calibration "$R/$TAG-tables/val-$score.csv" --cells "$R/$TAG-tables/test-$score.csv" \
        --held-out $H --out "$R/$TAG-triage-$score" > "$R/$TAG-triage-$score.log" 2>&1
  done
fi
