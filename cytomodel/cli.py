"""``cytomodel`` command line: a thin layer over the package's functions.

The entry point, with ``train``, ``generate``, ``export`` and ``cascade``; the other commands register from
``cli_baseline`` (baseline train|predict), ``cli_classifier`` (classify, calibrate, explain) and ``cli_evaluation``
(evaluate, train-variant); shared argument helpers are in ``cli_common``. Every command that loads a model for work
takes ``--device`` (default auto: CUDA if present, else the CPU; :func:`cytomodel.runtime.resolve_device`)."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .cli_common import add_data_args, add_device_arg, add_set_arg


def cmd_train(args: argparse.Namespace) -> int:
    from .config import load_config
    from .data import load_dataset
    from .training import train

    cfg = load_config(args.preset, args.config, args.set)
    data = load_dataset(args.data, cfg.resolution, cfg.crop_fraction, split=args.split, strict=args.strict,
                        progress=True)
    for path, why in data.skipped:
        print(f"skipped {path}: {why}", file=sys.stderr)
    print(f"{len(data.images)} images, classes: {', '.join(data.class_names)} (data hash {data.data_hash[:12]})")
    model = train(cfg, data, args.out, resume=args.resume, init_from=args.init_from, max_minutes=args.max_minutes,
                  data_source=str(args.data))
    print(f"model saved to {Path(args.out) / 'model'} (step {model.metadata.get('train_steps')})")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from .cascade import load_generator
    from .generation import generate_images, image_grid, save_generated, sdedit_images
    from .runtime import configure_runtime, resolve_device

    configure_runtime()
    if not 0.0 <= args.strength <= 1.0:
        raise ValueError(f"--strength must be in [0, 1] (0 = the real image, 1 = fully generated), got {args.strength}")
    model = load_generator(args.model, device=resolve_device(args.device))
    classes = model.class_names if args.class_name == "all" else [c.strip() for c in args.class_name.split(",")]
    if args.from_image:
        images = [Path(p) for p in args.from_image]
        batch = sdedit_images(model, images, classes[0] if len(classes) == 1 else classes, args.strength,
                              args.guidance, args.steps, args.seed, args.precision, progress=True,
                              superres_steps=args.superres_steps,
                              intake=model.intake(args.um_per_px, args.stain_normalisation))
    else:
        batch = generate_images(model, classes, args.n, args.guidance, args.steps, args.seed, args.precision,
                                progress=True, superres_steps=args.superres_steps)
    table = save_generated(batch, args.out, model, upscale=args.upscale)
    if args.grid:
        image_grid(batch.images, rows=len(classes) if not args.from_image else 1, upscale=args.upscale or 1).save(
            Path(args.out) / "grid.png")
    print(f"wrote {len(table)} images and generated.csv to {args.out}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    import torch

    from .cascade import load_stage

    model = load_stage(args.model)
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype]
    model.save_pretrained(args.out, dtype=dtype)
    size = sum(f.stat().st_size for f in Path(args.out).rglob("*") if f.is_file())
    print(f"exported {args.model} (step {model.metadata.get('train_steps')}) to {args.out} as {args.dtype}, "
          f"{size / 1e6:.1f} MB")
    return 0


def cmd_cascade(args: argparse.Namespace) -> int:
    from .cascade import assemble_cascade

    cascade = assemble_cascade(args.base, args.superres, args.out, superres_steps=args.superres_steps,
                               name=args.name)
    print(f"cascade {cascade.low_resolution} -> {cascade.resolution} px, classes {', '.join(cascade.class_names)}: "
          f"{args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .config import PRESETS

    parser = argparse.ArgumentParser(prog="cytomodel", description="Train, sample and evaluate a class-conditional "
                                     "diffusion model of blood cells.")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

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

    p = sub.add_parser("generate", help="generate synthetic cells (or SDEdit morphs of real ones)",
                       description="Generate images with classifier-free guidance; same seed, same images.")
    p.add_argument("--model", default=None, help="model folder: a cascade (cells at its high resolution) or a base "
                   "stage (default: the bundled data/models/cpu-32)")
    p.add_argument("--class", dest="class_name", default="all", help="class name, comma list, or 'all'")
    p.add_argument("--n", type=int, default=16, help="images per class")
    p.add_argument("--guidance", type=float, default=2.0, help="classifier-free guidance scale (1 = none)")
    p.add_argument("--steps", type=int, default=50, help="DDIM steps (the base stage's, for a cascade)")
    p.add_argument("--superres-steps", type=int, help="DDIM steps of a cascade's super-resolution stage "
                   "(default: the cascade's own)")
    p.add_argument("--seed", type=int, default=0, help="image i uses seed+i")
    p.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    p.add_argument("--from-image", nargs="+", help="real image(s) to morph (SDEdit)")
    p.add_argument("--strength", type=float, default=0.5, help="SDEdit noise level: 0 = real, 1 = fully synthetic")
    p.add_argument("--upscale", type=int, default=1, help="nearest-neighbour upscale factor for saved PNGs")
    p.add_argument("--grid", action="store_true", help="also write grid.png")
    p.add_argument("--out", required=True, help="output folder")
    add_device_arg(p)
    from .cli_framing import add_intake_args
    add_intake_args(p)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("export", help="copy a trained model folder, e.g. as fp16 weights for distribution",
                       description="Re-save a model folder (weights in fp16 by default; metadata kept).")
    p.add_argument("--model", required=True, help="model folder, e.g. runs/cpu-32/model")
    p.add_argument("--out", required=True, help="destination folder")
    p.add_argument("--dtype", default="fp16", choices=["fp16", "bf16", "fp32"])
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("cascade", help="assemble a base stage and a super-resolution stage into one cascade folder",
                       description="Check that two stages agree (classes, sizes, crop, training data) and copy them "
                       "into one folder with a cytomodel.json that records both.")
    p.add_argument("--base", required=True, help="base-stage model folder (e.g. data/models/cpu-32)")
    p.add_argument("--superres", required=True, help="super-resolution stage folder (e.g. runs/cpu-sr128/model)")
    p.add_argument("--out", required=True, help="cascade folder to write")
    p.add_argument("--superres-steps", type=int, default=20, help="default DDIM steps of the second stage")
    p.add_argument("--name", help="name recorded in cytomodel.json")
    p.set_defaults(func=cmd_cascade)

    from . import cli_baseline, cli_classifier, cli_evaluation, cli_framing, cli_triage

    cli_baseline.register(sub)
    cli_classifier.register(sub)
    cli_evaluation.register(sub)
    cli_framing.register(sub)
    cli_triage.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if getattr(args, "model", "unset") is None:
        from .model import bundled_model_path
        args.model = str(bundled_model_path())
    from .data import DataError
    try:
        return args.func(args) or 0
    except (DataError, ValueError, FileNotFoundError) as exc:  # FramingError is a ValueError
        print(f"cytomodel {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
