"""``cytomodel distil``: train a single-pass student of the diffusion classifier from its classification table
(argument parsing only; the method is :mod:`cytomodel.evaluate.distillation`)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cytocore.provenance import sha256_file

from .. import classify, data, models, runtime
from .common import add_device_arg


def cmd_distil(args: argparse.Namespace) -> int:
    # numpy, torch and the distillation (which loads torch) only when the command runs, not when the parser is built
    import numpy as np
    import torch
    from ..evaluate import distillation  # torch: see above

    runtime.configure_runtime()
    if args.calibrate_only:
        from ..evaluate import BaselineClassifier  # torch: see above
        if not args.val_table:
            raise SystemExit("--calibrate-only needs --val-table")
        student = BaselineClassifier.from_pretrained(args.out)
        _calibrate(student, args.val_table, args.out)
        return 0
    if not args.teacher_table:
        raise SystemExit("--teacher-table is required (the teacher's table of the training split)")
    table_path = Path(args.teacher_table)
    table = classify.classified(classify.read_table(table_path)).reset_index(drop=True)
    teacher = models.load_base(args.model)
    table, n_foreign = distillation.teacher_training_rows(table, teacher.class_names)
    if n_foreign:
        print(f"{n_foreign} rows of {table_path} are labelled with a class the teacher was not trained on; left out",
              file=sys.stderr)
    probs, anomaly = distillation.teacher_targets(table, teacher.class_names)
    intake = teacher.intake()
    paths = [Path(p) for p in table["image"]]
    cells = intake.frame(paths, [str(p) for p in paths], progress=True)
    arrays, keep = data.framed_arrays(cells, teacher.resolution)
    if len(keep) < len(paths):
        print(f"warning: {len(paths) - len(keep)} teacher rows' images could not be framed again; left out",
              file=sys.stderr)
    names = teacher.class_names
    labels = table["pred_class"].to_numpy()[keep]        # for the class counts only: the loss uses probabilities
    table_sha256 = sha256_file(table_path)
    images = data.ImageArrays(arrays, np.array([names.index(c) for c in labels], dtype=np.int64), list(names), [],
                              table_sha256[:16])
    run_key = table_path.with_name(table_path.name + ".run.json")
    record = distillation.teacher_record(teacher.metadata, str(args.model), table, table_sha256,
                                         json.loads(run_key.read_text()) if run_key.is_file() else None)
    lab_share, source = distillation.lab_variation(teacher, [paths[i] for i in keep], images, args.lab_augment)
    print(f"{len(arrays)} cells from {table_path} (teacher {args.model}); training the student"
          + (f" with lab variation for {lab_share:.0%} of images" if lab_share > 0 else ""))
    student = distillation.distil_student(images, probs[keep], anomaly[keep], record, epochs=args.epochs,
                                          batch_size=args.batch_size, seed=args.seed, lr=args.lr,
                                          anomaly_weight=args.anomaly_weight,
                                          anomaly_score=args.anomaly_score, max_steps=args.max_steps,
                                          lab_augment=lab_share, source=source,
                                          device=runtime.resolve_device(args.device))
    extra = {k: teacher.metadata[k] for k in ("framing", "source_framing") if k in teacher.metadata}
    extra["crop_fraction"] = teacher.crop_fraction
    student.save_pretrained(args.out, dtype=torch.float32, extra=extra)
    print(f"student saved to {args.out}")
    if args.val_table:
        _calibrate(student, args.val_table, args.out)
    return 0


def _calibrate(student, val_table: str, out: str) -> None:
    # torch and the distillation only when the command runs (see cmd_distil)
    import torch
    from ..evaluate import distillation

    fit = distillation.fit_temperature_on(student, classify.classified(classify.read_table(Path(val_table))))
    student.save_pretrained(out, dtype=torch.float32)
    print(f"temperature T={fit['temperature']:.4g} fitted on {fit['n_images']} labelled cells of {val_table}: NLL "
          f"{fit['nll_at_T1']:.4f} (T=1) -> {fit['nll_at_T']:.4f}; written to {out}/baseline.json")


def register(sub) -> None:
    p = sub.add_parser("distil", help="train a single-pass student of the diffusion classifier",
                       description="Train a small CNN on the diffusion classifier's probabilities (at its fitted "
                       "temperature) and anomaly scores — a `cytomodel classify` table of the training split — with "
                       "the training augmentations. The student is a baseline folder with an anomaly head: "
                       "`cytomodel classify --model STUDENT` and `cytomodel triage` take it.")
    p.add_argument("--teacher-table", help="`cytomodel classify` output over the training images (.csv/.parquet)")
    p.add_argument("--val-table", help="the teacher's `cytomodel classify` output over labelled validation images: "
                   "the student's temperature is fitted on their labels (as the teacher's was)")
    p.add_argument("--calibrate-only", action="store_true", help="only fit the temperature of the student already "
                   "in --out on --val-table")
    p.add_argument("--model", default=None, help="the teacher model folder (default: the bundled classifier)")
    p.add_argument("--out", required=True, help="student folder")
    p.add_argument("--epochs", type=int, default=20, help="(%(default)s)")
    p.add_argument("--batch-size", type=int, default=128, help="(%(default)s)")
    p.add_argument("--lr", type=float, default=3e-3, help="(%(default)s)")
    p.add_argument("--anomaly-weight", type=float, default=1.0, help="weight of the anomaly head's loss "
                   "(%(default)s)")
    p.add_argument("--anomaly-score", choices=("entropy", "head"), default="entropy",
                   help="the student's anomaly score: the entropy of its probabilities, or its head's estimate of "
                        "the teacher's (%(default)s; both are written)")
    p.add_argument("--lab-augment", type=float, default=None, help="share of training images given another lab's "
                   "stain, scale, focus and noise (default: the teacher's own, from its training config)")
    p.add_argument("--max-steps", type=int, help="stop after this many optimiser steps (tests)")
    p.add_argument("--seed", type=int, default=0)
    add_device_arg(p)
    p.set_defaults(func=cmd_distil, bundled="classifier")
