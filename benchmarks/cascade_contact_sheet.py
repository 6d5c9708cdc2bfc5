"""A contact sheet for people to look at: per class, real held-out test cells beside generated ones, at display size.

    python benchmarks/cascade_contact_sheet.py --model data/models/cascade-128 --out data/models/cascade-128/contact-sheet.jpg

Rows are classes; the left half of each row holds ``--n`` real PBC test cells (never seen in training), the right half
``--n`` generated cells of that class (seeds 0..n-1, the study's guidance and steps). Every tile is resized to
``--display-px`` with the same bicubic filter the study uses.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from PIL import Image, ImageDraw

from quality_common import common_args, generate_balanced, load_model_any, load_real, setup_runtime


def main(argv=None) -> int:
    p = common_args(argparse.ArgumentParser(description=__doc__.split("\n\n")[0]))
    p.add_argument("--n", type=int, default=4, help="real and generated cells per class (%(default)s)")
    p.add_argument("--guidance", type=float, default=2.0)
    p.add_argument("--display-px", type=int, default=192, help="tile size (%(default)s)")
    p.add_argument("--out", required=True, help="image file (.jpg or .png)")
    p.set_defaults(steps=50)
    args = p.parse_args(argv)
    setup_runtime()
    t0 = time.time()
    model = load_model_any(args.model)
    real = load_real(args.data, "test", model.resolution, model.class_names, model.crop_fraction)
    rng = np.random.default_rng(args.seed)
    gen, labels = generate_balanced(model, args.model, args.n, args.guidance, args.steps, args.precision, args.seed,
                                    not args.no_cache, superres_steps=args.superres_steps)
    px, gap, label_w = args.display_px, 6, 130
    names = model.class_names
    sheet = Image.new("RGB", (label_w + 2 * args.n * px + (2 * args.n + 2) * gap, len(names) * (px + gap) + 40 + gap),
                      "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((label_w + gap, 12), "real (PBC test split)", fill="black")
    draw.text((label_w + (args.n + 1) * (px + gap) + gap, 12), f"generated ({model.resolution} px)", fill="black")
    for r, c in enumerate(names):
        y = 40 + r * (px + gap)
        draw.text((8, y + px // 2), c, fill="black")
        pick = rng.permutation(np.flatnonzero(real.labels == r))[:args.n]
        tiles = list(real.images[pick]) + [None] + list(gen[labels == r][:args.n])
        for k, t in enumerate(tiles):
            if t is None:
                continue
            x = label_w + gap + k * (px + gap)
            sheet.paste(Image.fromarray(t).resize((px, px), Image.Resampling.BICUBIC), (x, y))
    kw = {"quality": 90} if args.out.lower().endswith((".jpg", ".jpeg")) else {}
    sheet.save(args.out, **kw)
    print(f"wrote {args.out} ({sheet.size[0]}x{sheet.size[1]}, {time.time() - t0:.0f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
