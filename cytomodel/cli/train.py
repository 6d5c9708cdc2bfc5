"""``cytomodel train``: train a stage (argument parsing only)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import data, train
from ..train.config import PRESETS, load_config
from .common import add_data_args, add_set_arg
from .framing import record_framing_if_missing


def cmd_train(args: argparse.Namespace) -> int:
    cfg = load_config(args.preset, args.config, args.set)
    images = data.load_dataset(args.data, cfg.resolution, cfg.crop_fraction, split=args.split, strict=args.strict,
                               progress=True)
    for path, why in images.skipped:
        print(f"skipped {path}: {why}", file=sys.stderr)
    print(f"{len(images.images)} images, classes: {', '.join(images.class_names)} (data hash "
          f"{images.data_hash[:12]})")
    model = train.train(cfg, images, args.out, resume=args.resume, init_from=args.init_from,
                        max_minutes=args.max_minutes, data_source=str(args.data))
    print(f"model saved to {Path(args.out) / 'model'} (step {model.metadata.get('train_steps')})")
    record_framing_if_missing(Path(args.out) / "model", args.data, args.split)
    return 0


def register(sub) -> None:
    p = sub.add_parser("train", help="train a diffusion model on labelled cell images",
                       description="Train a class-conditional diffusion model. Resumable: re-run with --resume.")
    add_data_args(p)
    p.add_argument("--preset", default="cpu-32", choices=sorted(PRESETS), help="model/training preset (%(default)s)")
    p.add_argument("--config", help="TOML file overriding preset fields (top level or a [train] table)")
    add_set_arg(p)
    p.add_argument("--out", required=True, help="output folder (checkpoints/, samples/, model/, train_log.csv)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    p.add_argument("--init-from", help="start from the weights of a saved model folder (fresh optimiser)")
    p.add_argument("--max-minutes", type=float, help="checkpoint and stop after this many minutes")
    p.set_defaults(func=cmd_train)
