"""``cytomodel baseline train | predict``: the discriminative baseline's commands (argument parsing only)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cli_common import add_device_arg


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from .baseline import train_baseline
    from .data import load_dataset

    data = load_dataset(args.data, args.resolution, args.crop_fraction, split=args.split, strict=args.strict,
                        progress=True)
    for path, why in data.skipped:
        print(f"skipped {path}: {why}", file=sys.stderr)
    val = None
    if args.val_split:
        val = load_dataset(args.data, args.resolution, args.crop_fraction, split=args.val_split,
                           class_names=data.class_names, strict=args.strict, progress=True)
    print(f"{len(data.images)} training images, classes: {', '.join(data.class_names)}"
          + (f"; {len(val.images)} validation images" if val is not None else ""))
    clf = train_baseline(data, val, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                         lr=args.lr, precision=args.precision, widths=_ints(args.widths), blocks=_ints(args.blocks),
                         stem_stride=args.stem_stride,
                         log=sys.stdout, device=args.device)
    extra = {"data_source": str(args.data), "split": args.split, "val_split": args.val_split,
             "crop_fraction": args.crop_fraction}
    if args.test_split:
        test = load_dataset(args.data, args.resolution, args.crop_fraction, split=args.test_split,
                            class_names=data.class_names, strict=args.strict, progress=True)
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
    return 0


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"expected a comma list of integers, got {text!r}") from None


def cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np
    import pandas as pd

    from .baseline import BaselineClassifier
    from .data import load_dataset, load_image, preprocess
    from .metrics import classification_metrics
    from .runtime import resolve_device

    clf = BaselineClassifier.from_pretrained(args.model, device=resolve_device(args.device))
    crop = float(clf.metadata.get("crop_fraction", 1.0))
    if args.images:
        names = [str(p) for p in args.images]
        arrays = np.stack([preprocess(load_image(p), clf.resolution, crop, name=str(p)) for p in args.images])
        truth = None
    elif args.data:
        # the data's own labels: cells of a class the baseline never saw (a held-out class) keep theirs, as in
        # `cytomodel classify`, and stay out of the metrics
        data = load_dataset(args.data, clf.resolution, crop, split=args.split, strict=args.strict, progress=True)
        for path, why in data.skipped:
            print(f"skipped {path}: {why}", file=sys.stderr)
        names, arrays = [str(r.path) for r in data.records], data.images
        labels = np.asarray(data.class_names, dtype=object)[data.labels]
        known = np.isin(labels, clf.class_names)
        if not known.all():
            print(f"{int((~known).sum())} images of classes the baseline was not trained on "
                  f"({', '.join(sorted(set(labels[~known])))}): kept with their labels, left out of the metrics")
        truth = labels
    else:
        raise ValueError("give --data (a labelled dataset) or --images (files)")
    proba = clf.predict_proba(arrays)
    pred = proba.argmax(1)
    table = pd.DataFrame({"path": names, "predicted": [clf.class_names[i] for i in pred],
                          "confidence": proba.max(1).round(5)})
    for j, c in enumerate(clf.class_names):
        table[f"p_{c}"] = proba[:, j].round(5)
    if truth is not None:
        table.insert(1, "label", truth)
        idx = np.array([clf.class_names.index(c) for c in truth[known]], dtype=int)
        m = classification_metrics(idx, pred[known], clf.class_names)
        print(f"accuracy {m['accuracy']:.4f}, balanced accuracy {m['balanced_accuracy']:.4f} (n={m['n']})")
        for c, r in m["recall"].items():
            print(f"  {c:<14} recall {r:.4f}" if r is not None else f"  {c:<14} (no images)")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out, index=False)
        print(f"wrote {len(table)} predictions to {args.out}")
    elif truth is None:
        print(table[["path", "predicted", "confidence"]].to_string(index=False))
    return 0


def register(subparsers) -> None:
    """``cytomodel baseline train|predict``."""
    from .baseline import bundled_baseline_path

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
    q.add_argument("--strict", action="store_true", help="fail on the first unreadable image")
    q.add_argument("--out", help="write per-image probabilities to this CSV")
    add_device_arg(q)
    q.set_defaults(func=cmd_predict)
