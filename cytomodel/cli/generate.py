"""``cytomodel generate | export | cascade``: sample a model, re-save a model folder, assemble a cascade (argument
parsing only)."""
from __future__ import annotations

import argparse
from pathlib import Path

from .. import models, pipelines, runtime
from .common import add_device_arg, add_intake_args


def cmd_generate(args: argparse.Namespace) -> int:
    runtime.configure_runtime()
    if not 0.0 <= args.strength <= 1.0:
        raise ValueError(f"--strength must be in [0, 1] (0 = the real image, 1 = fully generated), got {args.strength}")
    model = models.load_generator(args.model, device=runtime.resolve_device(args.device))
    classes = model.class_names if args.class_name == "all" else [c.strip() for c in args.class_name.split(",")]
    if args.from_image:
        images = [Path(p) for p in args.from_image]
        batch = pipelines.sdedit_images(model, images, classes[0] if len(classes) == 1 else classes, args.strength,
                                        args.guidance, args.steps, args.seed, args.precision, progress=True,
                                        superres_steps=args.superres_steps,
                                        intake=model.intake(args.um_per_px, args.stain_normalisation))
    else:
        batch = pipelines.generate_images(model, classes, args.n, args.guidance, args.steps, args.seed,
                                          args.precision, progress=True, superres_steps=args.superres_steps)
    table = pipelines.save_generated(batch, args.out, model, upscale=args.upscale)
    if args.grid:
        pipelines.image_grid(batch.images, rows=len(classes) if not args.from_image else 1,
                             upscale=args.upscale or 1).save(Path(args.out) / "grid.png")
    print(f"wrote {len(table)} images and generated.csv to {args.out}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    import torch  # the dtype names; torch loads with the model anyway, not when the parser is built

    model = models.load_stage(args.model)
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype]
    model.save_pretrained(args.out, dtype=dtype)
    size = sum(f.stat().st_size for f in Path(args.out).rglob("*") if f.is_file())
    print(f"exported {args.model} (step {model.metadata.get('train_steps')}) to {args.out} as {args.dtype}, "
          f"{size / 1e6:.1f} MB")
    return 0


def cmd_cascade(args: argparse.Namespace) -> int:
    cascade = models.assemble_cascade(args.base, args.superres, args.out, superres_steps=args.superres_steps,
                                      name=args.name)
    print(f"cascade {cascade.low_resolution} -> {cascade.resolution} px, classes {', '.join(cascade.class_names)}: "
          f"{args.out}")
    return 0


def register(sub) -> None:
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
