"""``cytomodel evaluate | train-variant``: the evidence commands (argument parsing only)."""
from __future__ import annotations

import argparse
from pathlib import Path

from .. import bundled_baseline_path, data, evaluate, train
from ..train.config import PRESETS, load_config
from .classify import add_classifier_args, config_from_args
from .common import add_device_arg, add_set_arg
from .framing import record_framing_if_missing


def cmd_evaluate(args: argparse.Namespace) -> int:
    low = []
    for spec in args.low_data or []:
        parts = spec.split(":")
        if len(parts) not in (2, 3):
            raise ValueError(f"--low-data {spec!r}: use N:MODEL_DIR[:BASELINE_DIR]")
        low.append((int(parts[0]), parts[1], parts[2] if len(parts) == 3 else None))
    baseline = args.baseline
    if baseline is None:
        baseline = str(bundled_baseline_path()) if (bundled_baseline_path() / "baseline.json").is_file() else None
    inp = evaluate.EvalInputs(model=args.model, data=args.data, out=args.out, test_split=args.split,
                              val_split=args.val_split, per_class=args.per_class,
                              baseline=None if baseline == "none" else baseline, shift_data=args.shift_data,
                              anomaly_model=args.anomaly_model, anomaly_baseline=args.anomaly_baseline, low_data=low,
                              seed=args.seed)
    cfg = config_from_args(args)
    if cfg.needs_texture:
        raise ValueError(f"evaluate does not compute --anomaly {cfg.anomaly} (it reads a cascade's 128-px stage): "
                         "classify and calibrate with a cascade and that option, then `cytomodel triage`")
    rep = evaluate.evaluate(inp, cfg, device=args.device)
    print("\n".join(rep.md))
    print(f"wrote {Path(args.out) / 'results.md'}, results.csv, figures/")
    return 0


def cmd_train_variant(args: argparse.Namespace) -> int:
    if not args.holdout_class and not args.labelled_per_class:
        raise ValueError("give --holdout-class and/or --labelled-per-class")
    cfg = load_config(args.preset, args.config, args.set)
    images = data.load_dataset(args.data, cfg.resolution, cfg.crop_fraction, split=args.split, progress=True)
    if args.baseline_out:
        val = data.load_dataset(args.data, cfg.resolution, cfg.crop_fraction, split=args.val_split) \
            if args.val_split else None
        evaluate.train_variant_baseline(images, val, args.baseline_out, holdout=args.holdout_class,
                                        labelled_per_class=args.labelled_per_class, seed=args.seed,
                                        epochs=args.baseline_epochs, device=args.device)
        record_framing_if_missing(Path(args.baseline_out), args.data, args.split, holdout=args.holdout_class)
        print(f"baseline saved to {args.baseline_out}")
    if args.baseline_only:
        return 0
    model = train.train_variant(cfg, images, args.out, holdout=args.holdout_class,
                                labelled_per_class=args.labelled_per_class, unlabelled=not args.no_unlabelled,
                                seed=args.seed, resume=args.resume, max_minutes=args.max_minutes,
                                data_source=str(args.data))
    record_framing_if_missing(Path(args.out) / "model", args.data, args.split, holdout=args.holdout_class)
    print(f"model saved to {Path(args.out) / 'model'} (step {model.metadata.get('train_steps')})")
    return 0


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="evidence: accuracy, calibration, anomaly, low data, domain shift",
                       description="Evaluate the diffusion classifier against the baseline; writes results.md, "
                       "results.csv, provenance.json and figures/ to --out (classifications cached, resumable).")
    p.add_argument("--model", default=None, help="diffusion model folder (default: bundled data/models/cpu-32)")
    p.add_argument("--data", required=True, help="dataset with a manifest (train/val/test splits), e.g. ../shared/data/pbc")
    p.add_argument("--split", default="test")
    p.add_argument("--val-split", default="val", help="split used to fit the temperature and anomaly threshold")
    p.add_argument("--per-class", type=int, help="at most N images per class of each split (default: all)")
    p.add_argument("--baseline", help="baseline folder (default: data/models/baseline-32 if present; 'none' to skip)")
    p.add_argument("--shift-data", help="a second dataset for the domain-shift test, e.g. ../shared/data/bccd_wbc")
    p.add_argument("--anomaly-model", help="a diffusion model trained with one class held out")
    p.add_argument("--anomaly-baseline", help="a baseline trained with the same class held out")
    p.add_argument("--low-data", action="append", metavar="N:MODEL[:BASELINE]",
                   help="a model (and baseline) trained with N labelled images per class; repeatable")
    p.add_argument("--out", required=True, help="output folder")
    add_device_arg(p)
    add_classifier_args(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("train-variant", help="train on a held-out-class or low-data variant of a dataset",
                       description="Like `cytomodel train`, on a variant of the data: --holdout-class drops a class "
                       "(anomaly experiments); --labelled-per-class N keeps N labels per class and the rest of the "
                       "images with the null label (low-data experiments). Optionally trains the baseline on the "
                       "same variant.")
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="train")
    p.add_argument("--val-split", default="val", help="baseline validation split")
    p.add_argument("--holdout-class")
    p.add_argument("--labelled-per-class", type=int)
    p.add_argument("--no-unlabelled", action="store_true", help="drop the unlabelled rest instead of null-labelling it")
    p.add_argument("--seed", type=int, default=0, help="which labelled images are kept")
    p.add_argument("--preset", default="cpu-32", choices=sorted(PRESETS))
    p.add_argument("--config")
    add_set_arg(p)
    p.add_argument("--out", required=True)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--max-minutes", type=float)
    p.add_argument("--baseline-out", help="also train the baseline on the same variant, saved here")
    p.add_argument("--baseline-epochs", type=int, default=20)
    p.add_argument("--baseline-only", action="store_true")
    add_device_arg(p, "the baseline trains (the diffusion model trains like `cytomodel train`)")
    p.set_defaults(func=cmd_train_variant)
