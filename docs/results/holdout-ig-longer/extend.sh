#!/usr/bin/env bash
# Issue 25: the held-out-ig cascade trained on to the main model's length (base 4,000 -> 12,000 steps of the main
# cpu-32's 16,000; 128-px stage 5,000 -> 7,000, the main cascade's). Each run resumes from the checkpoints of
# docs/results/holdout-ig-models/make.sh (its run folders, the same $R): optimiser, EMA and step counter go
# on, and the cosine schedule is re-read for the new max_steps (so the learning rate rises again from 10 % of its
# peak to the point of the longer schedule, then anneals to 10 % at the new end). Resumable: run again after an
# interruption. One core each.
set -uo pipefail
cd "$(dirname "$0")/../../.."
R=${R:-runs/holdout-ig}
BASE_STEPS=${BASE_STEPS:-12000}
SR_STEPS=${SR_STEPS:-7000}
export CYTOMODEL_THREADS=1 OMP_NUM_THREADS=1
( taskset -c 1 nice -n 5 .venv/bin/cytomodel train-variant --data ../shared/data/pbc --split train \
    --holdout-class ig --preset cpu-sr128 --set max_steps=$SR_STEPS --out "$R/sr-ig" --resume \
    > "$R/sr-ig-extend.log" 2>&1; echo "exit $?" >> "$R/sr-ig-extend.log" ) &
( taskset -c 0 nice -n 5 .venv/bin/cytomodel train-variant --data ../shared/data/pbc --split train \
    --holdout-class ig --preset cpu-32 --set max_steps=$BASE_STEPS --out "$R/base-ig" --resume \
    > "$R/base-ig-extend.log" 2>&1; echo "exit $?" >> "$R/base-ig-extend.log" ) &
wait
