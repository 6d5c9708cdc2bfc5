#!/usr/bin/env bash
# The held-out-class models of issue 25 (both stages of a cascade and the baseline CNN, all trained on PBC train
# without one class), as bundled in data/models/holdout-$HOLDOUT (HOLDOUT=ig by default; HOLDOUT=erythroblast for
# the other). Resumable: run again after an interruption and each training goes on from its last checkpoint in $R
# (a finished one is only saved again; a finished baseline is kept). One core each (the two diffusion trainings side
# by side: ~55 min on this 2-core machine, the baseline ~6 min before the base stage).
set -uo pipefail
cd "$(dirname "$0")/../../.."
H=${HOLDOUT:-ig}
R=${R:-runs/holdout-$H}
BUNDLE=data/models/holdout-$H
export CYTOMODEL_THREADS=1 OMP_NUM_THREADS=1
resume() { ls "$1/checkpoints" 2>/dev/null | grep -q . && echo --resume; }
( [[ -f "$R/baseline-$H/baseline.json" ]] || taskset -c 0 nice -n 5 cytomodel train-variant --data ../shared/data/pbc \
    --split train --val-split val --holdout-class $H --preset cpu-32 --baseline-only --baseline-out "$R/baseline-$H" \
    --baseline-epochs 20 --out "$R/base-$H" > "$R/baseline-$H.log" 2>&1
  taskset -c 0 nice -n 5 cytomodel train-variant --data ../shared/data/pbc --split train \
    --holdout-class $H --preset cpu-32 --set max_steps=4000 --out "$R/base-$H" $(resume "$R/base-$H") \
    >> "$R/base-$H.log" 2>&1 ) &
( taskset -c 1 nice -n 5 cytomodel train-variant --data ../shared/data/pbc --split train --val-split val \
    --holdout-class $H --preset cpu-sr128 --set max_steps=5000 --out "$R/sr-$H" $(resume "$R/sr-$H") \
    >> "$R/sr-$H.log" 2>&1 ) &
wait
# bundle: fp16 weights, the two stages as one cascade, the baseline as trained
cytomodel export --model "$R/base-$H/model" --out "$R/export/base"
cytomodel export --model "$R/sr-$H/model" --out "$R/export/superres"
cytomodel cascade --base "$R/export/base" --superres "$R/export/superres" --out $BUNDLE/cascade
cp -r "$R/baseline-$H" $BUNDLE/baseline
# how their training images (PBC train without the class, all of them) are framed, as for the bundled models
# (train-variant records it at the end of a run, on 2,000 images; the bundle measures all)
cytomodel framing measure --model $BUNDLE/cascade $BUNDLE/baseline \
    --data ../shared/data/pbc --split train --holdout-class $H --limit 0 --original-px 360x363 --crop-of-original 0.6667
