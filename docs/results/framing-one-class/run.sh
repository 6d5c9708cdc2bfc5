#!/usr/bin/env bash
# One-class sets through the intake, before and after the classes' offsets of the white-cell size (issue 23).
# OLD: a checkout of the code before them (git worktree add OLD 2ca3582); both run the bundled defaults.
set -euo pipefail
OUT=${OUT:-runs/framing-one-class}; OLD=${OLD:?a checkout of 2ca3582}
python docs/results/framing-one-class/one_class_sets.py "$OUT" 60      # rules; links for the sets that change
for s in pbc-monocyte pbc-platelet; do
  (cd "$OLD" && python -m cytomodel classify --data "$OLDPWD/$OUT/$s" --out "$OLDPWD/$OUT/$s-old.csv")
  python -m cytomodel classify --data "$OUT/$s" --out "$OUT/$s-new.csv"
  (cd "$OLD" && python -m cytomodel baseline predict --data "$OLDPWD/$OUT/$s" --out "$OLDPWD/$OUT/$s-base-old.csv")
  python -m cytomodel baseline predict --data "$OUT/$s" --out "$OUT/$s-base-new.csv"
done
