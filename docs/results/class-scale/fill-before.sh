#!/usr/bin/env bash
# the baseline with the reflected window: HEAD's code, run from its worktree (cwd first on sys.path)
cd /work/runs/s14/wt-head
export CYTOMODEL_THREADS=1 OMP_NUM_THREADS=1
O=/work/runs/s14/fill
C=eosinophil,lymphocyte,monocyte,neutrophil
for s in pbc-bbox pbc-zoom bccd; do
  D=/work/runs/s14/sets/$s; [[ $s == bccd ]] && D=/work/shared/data/bccd_wbc
  /work/main/.venv/bin/python -c 'import sys, cytomodel.data.framing as f; print(f.__file__, file=sys.stderr); from cytomodel.cli import main; sys.exit(main())' \
      baseline predict --data $D --classes $C --out $O/before-base-$s.csv > $O/before-base-$s.log 2>&1
done
