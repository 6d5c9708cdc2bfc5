"""``cytomodel baseline train | predict | fit-density``: the discriminative baseline's commands (argument parsing
only)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from cytocore import classification as ct

from .. import bundled_baseline_path, data, evaluate, runtime
from .common import add_classes_arg, add_device_arg, add_intake_args
from .framing import record_framing_if_missing


def cmd_train(args: argparse.Namespace) -> int:
    import torch  # the weights' dtype; torch loads with the training anyway, not when the parser is built

    images = data.load_dataset(args.data, args.resolution, args.crop_fraction, split=args.split, strict=args.strict,
                               progress=True)
    for path, why in images.skipped:
        print(f"skipped {path}: {why}", file=sys.stderr)
    val = None
    if args.val_split:
        val = data.load_dataset(args.data, args.resolution, args.crop_fraction, split=args.val_split,
                                class_names=images.class_names, strict=args.strict, progress=True)
    print(f"{len(images.images)} training images, classes: {', '.join(images.class_names)}"
          + (f"; {len(val.images)} validation images" if val is not None else ""))
    source = None
    if args.lab_augment > 0 and args.source_resolution and args.source_resolution != args.resolution:
        source = data.load_dataset(args.data, args.source_resolution, args.crop_fraction, split=args.split,
                                   class_names=images.class_names, strict=args.strict, progress=True)
    clf = evaluate.train_baseline(images, val, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                                  lr=args.lr, precision=args.precision, widths=_ints(args.widths),
                                  blocks=_ints(args.blocks), stem_stride=args.stem_stride, norm=args.norm,
                                  lab_augment=args.lab_augment, source=source, log=sys.stdout, device=args.device)
    clf.fit_density(images, {"data": str(args.data), "split": args.split}, required=False)   # for …+baseline
    extra = {"data_source": str(args.data), "split": args.split, "val_split": args.val_split,
             "crop_fraction": args.crop_fraction}
    if args.test_split:
        test = data.load_dataset(args.data, args.resolution, args.crop_fraction, split=args.test_split,
                                 class_names=images.class_names, strict=args.strict, progress=True)
        m = clf.evaluate(test)
        extra["test_metrics"] = {"n": m["n"], "accuracy": m["accuracy"],
                                 "balanced_accuracy": m["balanced_accuracy"], "recall": m["recall"],
                                 "data_hash": test.data_hash, "split": args.test_split}
    clf.save_pretrained(args.out, dtype=torch.float16 if args.fp16 else torch.float32, extra=extra)
    for name in ("val_metrics", "test_metrics"):
        if name in clf.metadata:
            m = clf.metadata[name]
            print(f"{name.split('_')[0]}: accuracy {m['accuracy']:.4f}, balanced accuracy "
                  f"{m['balanced_accuracy']:.4f} (n={m['n']})")
    print(f"baseline saved to {args.out}")
    record_framing_if_missing(Path(args.out), args.data, args.split)
    return 0


def cmd_fit_density(args: argparse.Namespace) -> int:
    clf = evaluate.BaselineClassifier.from_pretrained(args.model)
    if clf.student:
        raise ValueError(f"{args.model} is a distilled student: its anomaly score is its own (see `cytomodel distil`)")
    images = data.load_dataset(args.data, clf.resolution, float(clf.metadata.get("crop_fraction") or 1.0),
                               split=args.split, class_names=clf.class_names, strict=args.strict, progress=True)
    for path, why in images.skipped:
        print(f"skipped {path}: {why}", file=sys.stderr)
    density = clf.fit_density(images, {"data": str(args.data), "split": args.split})
    written = clf.save_density(args.model)
    print(f"feature density fitted on {density.record['n']} cells -> {written}")
    return 0


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"expected a comma list of integers, got {text!r}") from None


def cmd_predict(args: argparse.Namespace) -> int:
    import pandas as pd  # ~1 s: only when the command runs, not when the parser is built

    clf = evaluate.BaselineClassifier.from_pretrained(args.model, device=runtime.resolve_device(args.device))
    intake = clf.intake(args.um_per_px, args.stain_normalisation)
    candidates = ct.check_candidates(getattr(args, "classes", None), clf.class_names)   # before any image is read
    if args.images:
        paths, labels = [Path(p) for p in args.images], None
    elif args.data:
        # the data's own labels: cells of a class the baseline never saw (a held-out class) keep theirs, as in
        # `cytomodel classify`, and stay out of the metrics
        recs = data.scan_dataset(args.data, split=args.split)
        paths, labels = [r.path for r in recs], np.asarray([r.label for r in recs], dtype=object)
    else:
        raise ValueError("give --data (a labelled dataset) or --images (files)")
    cells = intake.frame(paths, [str(p) for p in paths], progress=True)
    for msg in intake.warnings(cells, paths):
        print(f"warning: {msg}", file=sys.stderr)
    arrays, keep = data.framed_arrays(cells, clf.resolution)
    unframed = [i for i in range(len(cells)) if i not in set(keep)]
    for i in unframed:
        print(f"not classified {paths[i]}: {cells[i].message or cells[i].status}", file=sys.stderr)
    if args.strict and unframed:
        raise data.DataError(f"{len(unframed)} image(s) could not be framed (first: {paths[unframed[0]]})")
    if not keep:
        raise data.DataError("none of the images could be framed")
    proba = np.full((len(cells), len(clf.class_names)), np.nan)
    scores = {}
    if clf.student:   # a distilled student's anomaly score (by its rule) and its estimate of its teacher's
        proba[keep], scores["anomaly_score"], scores["anomaly_head"] = clf.student_outputs(arrays)
    else:
        proba[keep] = clf.predict_proba(arrays)
    if len(candidates) < len(clf.class_names):
        proba = ct.restrict_probabilities(proba, clf.class_names, candidates)
    ok = np.zeros(len(cells), bool)
    ok[keep] = True
    pred = np.where(ok, np.nan_to_num(proba, nan=-1).argmax(1), -1)
    # the classification table every classifier writes (cytocore.classification)
    table = pd.DataFrame({ct.IMAGE: [str(p) for p in paths],
                          ct.PRED_CLASS: [clf.class_names[i] if i >= 0 else None for i in pred],
                          ct.CONFIDENCE: np.round(np.nanmax(np.where(ok[:, None], proba, 0), 1), 5)})
    table.loc[~ok, ct.CONFIDENCE] = np.nan
    for column, score in scores.items():
        table[column] = np.nan
        table.loc[keep, column] = score
    for j, c in enumerate(clf.class_names):
        table[ct.prob_column(c)] = proba[:, j].round(5)
    table = pd.concat([table, pd.DataFrame([c.columns() for c in cells])], axis=1)
    if labels is not None:
        table.insert(1, ct.LABEL, labels)
        known = np.isin(labels, candidates) & ok
        if (~np.isin(labels, candidates)).any():
            unseen = sorted(set(labels[~np.isin(labels, candidates)]))
            print(f"{int((~np.isin(labels, candidates)).sum())} images of classes outside the candidates "
                  f"({', '.join(unseen)}): kept with their labels, left out of the metrics")
        position = {c: i for i, c in enumerate(candidates)}   # metrics index the candidates, by name
        truth = np.array([position[c] for c in labels[known]], dtype=int)
        predicted = np.array([position[clf.class_names[int(k)]] for k in pred[known]], dtype=int)
        m = evaluate.classification_metrics(truth, predicted, candidates)
        print(f"accuracy {m['accuracy']:.4f}, balanced accuracy {m['balanced_accuracy']:.4f} (n={m['n']})")
        for c, r in m["recall"].items():
            print(f"  {c:<14} recall {r:.4f}" if r is not None else f"  {c:<14} (no images)")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        if str(args.out).endswith(".parquet"):
            table.to_parquet(args.out, index=False)
        else:
            table.to_csv(args.out, index=False)
        print(f"wrote {len(table)} predictions to {args.out}")
    elif labels is None:
        print(table[[ct.IMAGE, ct.PRED_CLASS, ct.CONFIDENCE]].to_string(index=False))
    return 0


def register(subparsers) -> None:
    """``cytomodel baseline train|predict|fit-density``."""
    p = subparsers.add_parser("baseline", help="train or apply the discriminative baseline CNN",
                              description="A small ResNet-style CNN that names the cell type; the yardstick for "
                                          "class fidelity and for the diffusion classifier.")
    sub = p.add_subparsers(dest="baseline_command", required=True)

    t = sub.add_parser("train", help="train the baseline on labelled images",
                       description="Train the baseline CNN; prints validation (and test) balanced accuracy.")
    t.add_argument("--data", required=True, help="class-per-folder tree, a folder with manifest.csv, or a CSV")
    t.add_argument("--split", default=None, help="manifest split to train on (e.g. train)")
    t.add_argument("--val-split", default=None, help="manifest split for validation metrics (e.g. val)")
    t.add_argument("--test-split", default=None, help="manifest split for test metrics, recorded in the JSON")
    t.add_argument("--resolution", type=int, default=32, help="image size in pixels (%(default)s)")
    t.add_argument("--crop-fraction", type=float, default=1.0, help="centre-crop fraction before resizing")
    t.add_argument("--epochs", type=int, default=20, help="(%(default)s)")
    t.add_argument("--batch-size", type=int, default=128, help="(%(default)s)")
    t.add_argument("--lr", type=float, default=3e-3, help="peak AdamW learning rate (%(default)s)")
    t.add_argument("--widths", default="32,64,128", help="channels per stage, comma list (%(default)s)")
    t.add_argument("--blocks", default="1,1,1", help="residual blocks per stage, comma list (%(default)s)")
    t.add_argument("--stem-stride", type=int, default=1,
                   help="stride of the first conv (4 = a 128-px network at a 32-px one's cost; %(default)s)")
    t.add_argument("--norm", default="batch", choices=["batch", "group"],
                   help="normalisation layers: group norm carries over to other labs' stains better (%(default)s)")
    t.add_argument("--lab-augment", type=float, default=0.0,
                   help="share of training images given another lab's stain, scale, focus, noise and rotation "
                   "(%(default)s)")
    t.add_argument("--source-resolution", type=int, default=128,
                   help="resolution the lab variation is applied at before downsampling (%(default)s)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--precision", default="bf16", choices=["bf16", "fp32"], help="training autocast")
    t.add_argument("--fp16", action="store_true", help="store the weights as fp16 (half the size)")
    t.add_argument("--strict", action="store_true", help="fail on the first unreadable image")
    t.add_argument("--out", required=True, help="output folder (model.safetensors + baseline.json)")
    add_device_arg(t)
    t.set_defaults(func=cmd_train)

    q = sub.add_parser("predict", help="classify images or a labelled dataset",
                       description="Predict cell types; with --data also prints accuracy and balanced accuracy.")
    q.add_argument("--model", default=str(bundled_baseline_path()), help="baseline folder (default: bundled)")
    q.add_argument("--data", help="labelled dataset (folder tree, folder with manifest.csv, or CSV)")
    q.add_argument("--split", default=None, help="manifest split (e.g. test)")
    q.add_argument("--images", nargs="+", help="image files to classify")
    q.add_argument("--strict", action="store_true", help="exit with an error when any image cannot be read or framed")
    q.add_argument("--out", help="write per-image probabilities to this CSV")
    add_device_arg(q)
    add_classes_arg(q)
    add_intake_args(q)
    q.set_defaults(func=cmd_predict)

    f = sub.add_parser("fit-density", help="fit the density of a baseline's features on its training cells",
                       description="Fit the class means and covariances of the baseline's penultimate features on "
                       "its training cells (relative Mahalanobis distance) and keep the cells' features (float16, "
                       "for the distance to the nearest ones), for the anomaly score `cytomodel classify --anomaly "
                       "class-gain+texture+baseline`. `baseline train` fits it already; this adds it to a baseline "
                       "trained before, or refits one fitted before the features were kept.")
    f.add_argument("--model", required=True, help="baseline folder")
    f.add_argument("--data", required=True, help="its training data (folder tree, folder with manifest.csv, or CSV)")
    f.add_argument("--split", default=None, help="manifest split it was trained on (e.g. train)")
    f.add_argument("--strict", action="store_true", help="fail on the first unreadable image")
    f.set_defaults(func=cmd_fit_density)
