#!/usr/bin/env bash
# The held-out-ig models of issue 25 (both stages of a cascade and the baseline CNN, all trained on PBC train without
# ig), as bundled in data/models/holdout-ig. Resumable: run again after an interruption and each training goes on
# from its last checkpoint in $R. One core each (the two trainings side by side: ~55 min on this 2-core machine).
set -uo pipefail
cd "$(dirname "$0")/../../.."
R=${R:-runs/holdout-ig}
export CYTOMODEL_THREADS=1 OMP_NUM_THREADS=1
resume() { ls "$1/checkpoints" 2>/dev/null | grep -q . && echo --resume; }
( taskset -c 0 nice -n 5 cytomodel train-variant --data ../shared/data/pbc --split train --val-split val \
    --holdout-class ig --preset cpu-32 --set max_steps=4000 --out "$R/base-ig" $(resume "$R/base-ig") \
    --baseline-out "$R/baseline-ig" --baseline-epochs 20 > "$R/base-ig.log" 2>&1 ) &
( taskset -c 1 nice -n 5 cytomodel train-variant --data ../shared/data/pbc --split train --val-split val \
    --holdout-class ig --preset cpu-sr128 --set max_steps=5000 --out "$R/sr-ig" $(resume "$R/sr-ig") \
    > "$R/sr-ig.log" 2>&1 ) &
wait
# bundle: fp16 weights, the two stages as one cascade, the baseline as trained
cytomodel export --model "$R/base-ig/model" --out "$R/export/base"
cytomodel export --model "$R/sr-ig/model" --out "$R/export/superres"
cytomodel cascade --base "$R/export/base" --superres "$R/export/superres" --out data/models/holdout-ig/cascade
cp -r "$R/baseline-ig" data/models/holdout-ig/baseline
# how their training images (PBC train without ig, all 9,938) are framed, as for the bundled models (train-variant
# now records it at the end of a run, on 2,000 images; this run predates that)
cytomodel framing measure --model data/models/holdout-ig/cascade data/models/holdout-ig/baseline \
    --data ../shared/data/pbc --split train --holdout-class ig --limit 0 --original-px 360x363 --crop-of-original 0.6667
