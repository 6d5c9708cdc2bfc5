#!/usr/bin/env bash
# Triage of the held-out classes with the sixth session's scores (tables from stored errors; no UNet calls):
# class-gain+texture, +baseline (feature distance), +baseline-softmax.
set -euo pipefail
cd /work/main
export OMP_NUM_THREADS=1
S=/work/runs/s10
for h in ig ery; do
  if [[ $h == ig ]]; then H=ig; T=/work/runs/holdout-sr/texture-ig; V=/work/runs/holdout/CG_ig_val.csv; X=/work/runs/holdout/CG_ig_test.csv; B=/work/runs/holdout-sr/baseline-ig
  else H=erythroblast; T=/work/runs/holdout-sr-ery/texture-ery; V=/work/runs/holdout-ery/T_ery_val.csv; X=/work/runs/holdout-ery/T_ery_test.csv; B=/work/runs/holdout-sr-ery/baseline-ery; fi
  for form in "" "+baseline" "+baseline-softmax"; do
    tag=$h${form:+-${form#+}}
    .venv/bin/python benchmarks/texture_scores.py --holdout $H --out $T --score --table val=$V --table test=$X \
      --baseline $B --scores-out $S/scores3/$h --tables-out $S/t3-tables-$tag \
      --tables-score "classify's class-gain+texture$form (gain + profile), t ≥ 200" > $S/score3-$h.log 2>&1
    .venv/bin/cytomodel triage --calibration $S/t3-tables-$tag/val.csv --cells $S/t3-tables-$tag/test.csv \
      --held-out $H --out $S/t3-$tag | grep "accept\|flagged"
  done
done
echo DONE
