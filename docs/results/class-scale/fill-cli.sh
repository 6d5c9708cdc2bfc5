#!/usr/bin/env bash
# framing with a background-filled window (working tree) against the reflected one (worktree of HEAD), as a user runs it
cd /work/main
export CYTOMODEL_THREADS=1 OMP_NUM_THREADS=1
O=/work/runs/s14/fill
C=eosinophil,lymphocyte,monocyte,neutrophil
OLD="env PYTHONPATH=/work/runs/s14/wt-head .venv/bin/python -c 'import sys; from cytomodel.cli import main; sys.exit(main())'"
for s in pbc-bbox pbc-zoom bccd; do
  D=/work/runs/s14/sets/$s; [[ $s == bccd ]] && D=../shared/data/bccd_wbc
  .venv/bin/cytomodel baseline predict --data $D --classes $C --out $O/after-base-$s.csv > $O/after-base-$s.log 2>&1
  .venv/bin/cytomodel classify --data $D --classes $C --out $O/after-diff-$s.csv > $O/after-diff-$s.log 2>&1
done
echo DONE > $O/done
