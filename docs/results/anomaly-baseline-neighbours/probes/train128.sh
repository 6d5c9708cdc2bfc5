#!/usr/bin/env bash
# 128-px baseline CNNs (stride-4 stem, as data/models/baseline-128; 20 epochs as the held-out 32-px ones) without ig / erythroblast
set -euo pipefail
cd /work/main
export OMP_NUM_THREADS=2
for n in ig erythroblast; do
  [[ -f /work/runs/s18/baseline128-$n/baseline.json ]] || .venv/bin/cytomodel baseline train --data /work/runs/s18/pbc-no-$n.csv \
     --split train --val-split val --resolution 128 --stem-stride 4 --epochs 20 --precision bf16 --seed 0 --out /work/runs/s18/baseline128-$n
done
echo DONE
