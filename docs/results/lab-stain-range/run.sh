#!/bin/bash
# Issue 23 probe: cpu-32-lab fine-tuned 5,000 more steps with a wider stain-strength range, then scored on the other
# labs and PBC val against the bundled cpu-32-lab in the same harness. About 1.3 h of training on one core; resumable
# (run again: --resume is passed when the run folder has a checkpoint). GAMMA=0.35 is the control.
set -euo pipefail
GAMMA=${GAMMA:-0.7}; RUN=${RUN:-runs/lab-stain-range-$GAMMA}
export CYTOMODEL_THREADS=1 OMP_NUM_THREADS=1 MALLOC_ARENA_MAX=2
R=""; ls "$RUN"/checkpoints/* >/dev/null 2>&1 && R="--resume"
nice -n 5 cytomodel train --data ../shared/data/pbc --split train --preset cpu-32 --init-from data/models/cpu-32-lab $R \
  --set max_steps=27000 lab_augment=0.6 lab_unknown=0.25 source_resolution=128 learning_rate=3e-4 \
        lr_warmup_steps=200 checkpoint_every=500 sample_every=1000 lab_variation.gamma=$GAMMA \
  --out "$RUN"
nice -n 5 python benchmarks/cross_lab.py --out "$RUN-cross-lab" --diffusion lab=data/models/cpu-32-lab \
  gamma$GAMMA="$RUN/model" --datasets bccd tecom pbc_val --configs framed+auto framed+unknown+auto
