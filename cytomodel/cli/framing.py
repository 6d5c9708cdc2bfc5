"""``cytomodel framing measure | show``: record how a model's training cells are framed, and see how any images would
be framed for it (argument parsing only; the work is in :mod:`cytomodel.data.framing` and
:mod:`cytomodel.data.intake`)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from cytocore.provenance import write_json

from ..data import Intake, list_inputs, measure_training_framing
from .common import add_intake_args, check_out_suffix


def _size(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"expected WIDTHxHEIGHT (e.g. 360x363), got {text!r}") from None
    return w, h


def _records(folder: Path) -> list[tuple[Path, dict]]:
    """The JSON records a model folder holds: a cascade's and its stages', a base stage's, or a baseline's."""
    if (folder / "baseline.json").is_file():
        return [(folder / "baseline.json", json.loads((folder / "baseline.json").read_text()))]
    meta_file = folder / "cytomodel.json"
    if not meta_file.is_file():
        raise FileNotFoundError(f"{folder} is not a model folder (no cytomodel.json or baseline.json)")
    meta = json.loads(meta_file.read_text())
    out = [(meta_file, meta)]
    for stage in (meta.get("stages") or {}).values():
        sub = folder / stage.get("folder", "") / "cytomodel.json"
        if sub.is_file():
            out.append((sub, json.loads(sub.read_text())))
    return out


def cmd_measure(args: argparse.Namespace) -> int:
    model_records = [rec for folder in args.model for rec in _records(Path(folder))]
    sf = next((m.get("source_framing") for _, m in model_records if m.get("source_framing")), {}) or {}
    original = _size(args.original_px) or (tuple(sf["original_px"]) if sf.get("original_px") else None)
    crop = args.crop_of_original if args.crop_of_original is not None else sf.get("crop_of_original")
    record = measure_training_framing(args.data, args.split, args.limit, original, crop, progress=True,
                                      holdout=args.holdout_class)
    for path, meta in model_records:
        meta["framing"] = record
        write_json(path, meta)
    print(f"framing of {record['images_measured']} images of {args.data} ({args.split or 'all'}): window "
          f"{record['window_rbc']} red-cell / {record['window_cell']} white-cell diameters (red cells measurable in "
          f"{record['rbc_found_share']:.1%}), centre within {record['centre_tolerance']:.3f} of the window; "
          f"written to {', '.join(str(p) for p, _ in model_records)}")
    offsets = record.get("cell_class_offsets")
    print("white-cell size of each class alone, log against the training median: "
          + (", ".join(f"{c} {v:+.2f}" for c, v in sorted(offsets.items(), key=lambda kv: kv[1])) if offsets else
             "not measured (the images are not labelled): a set of one cell type may be taken for another "
             "magnification"))
    return 0


def record_framing_if_missing(folder: Path, data, split: str | None, limit: int = 2000,
                              holdout: str | None = None) -> None:
    """After a training run: a model without a framing record gets one, measured on (a sample of) its training
    images (without the ``holdout`` class of a held-out-class variant), so that every command frames inputs like
    them (a fine-tune on the same images keeps its model's)."""
    records = _records(Path(folder))
    if all(meta.get("framing") for _, meta in records):
        return
    print(f"recording how the training images are framed (cytomodel framing measure, {limit} images at most) ...")
    try:
        record, why = measure_training_framing(data, split, limit, progress=True, holdout=holdout), \
            "no cells measurable"
    except (ValueError, IndexError) as exc:   # no cell found in any image (e.g. synthetic test shapes)
        record, why = None, str(exc)
    if record is None or (record.get("window_rbc") is None and record.get("window_cell") is None):
        print(f"warning: the training images' framing could not be measured ({why}); inputs will only be resized. "
              f"Record it with `cytomodel framing measure --model {folder} --data ...`", file=sys.stderr)
        return
    for path, meta in records:
        if not meta.get("framing"):
            meta["framing"] = record
            write_json(path, meta)
    print(f"framing recorded in {Path(folder)}: window {record['window_rbc']} red-cell / {record['window_cell']} "
          "white-cell diameters")


def cmd_show(args: argparse.Namespace) -> int:
    import pandas as pd  # ~1 s: only when the command runs, not when the parser is built

    folder = Path(args.model)
    meta = _records(folder)[0][1]
    out_px = int(meta.get("resolution", 128)) if args.size is None else args.size
    crop = float((meta.get("preprocessing") or {}).get("crop_fraction", meta.get("crop_fraction", 1.0)))
    intake = Intake.for_record(meta, out_px, crop, args.um_per_px, args.stain_normalisation)
    items = list_inputs(args.data, args.split)
    if args.limit:
        items = items[:args.limit]
    paths = [p for p, _ in items]
    cells = intake.frame(paths, [str(p) for p in paths], progress=True)
    out = Path(args.out)
    (out / "framed").mkdir(parents=True, exist_ok=True)
    rows = []
    for (p, label), cell in zip(items, cells):
        row = {"image": str(p), "label": label, **cell.columns()}
        if cell.image is not None:
            name = f"{len(rows):05d}_{Path(p).stem}.png"
            Image.fromarray(cell.image).save(out / "framed" / name)
            row["framed"] = f"framed/{name}"
        rows.append(row)
    check_out_suffix(out / "framing.csv", (".csv",))
    pd.DataFrame(rows).to_csv(out / "framing.csv", index=False)
    shown = [c.image for c in cells if c.image is not None][:64]
    if shown:
        k = int(np.ceil(np.sqrt(len(shown))))
        sheet = Image.new("RGB", (k * out_px, k * out_px), "white")
        for i, a in enumerate(shown):
            sheet.paste(Image.fromarray(a), ((i % k) * out_px, (i // k) * out_px))
        sheet.save(out / "contact-sheet.png")
    for msg in intake.warnings(cells, paths):
        print(f"warning: {msg}")
    counts = pd.Series([c.rule if c.image is not None else c.status for c in cells]).value_counts()
    print(f"{len(cells)} images -> {out}/framing.csv, framed/ and contact-sheet.png")
    for rule, n in counts.items():
        print(f"  {n:>6}  {rule}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("framing", help="record how a model's training cells are framed; show how images would be",
                       description="Every command brings input images to the framing of the model's training cells "
                       "(cell found and centred, scale from the red cells or the white cell). `measure` records "
                       "that framing in the model folder(s); `show` frames a folder of images for a model and "
                       "writes them with a table of what was done.")
    s = p.add_subparsers(dest="framing_command", required=True)
    m = s.add_parser("measure", help="measure the training images' framing and write it into model folders")
    m.add_argument("--model", nargs="+", required=True, help="model folder(s) trained on --data (base stage, cascade "
                   "or baseline)")
    m.add_argument("--data", required=True, help="the training data (class folders or a manifest)")
    m.add_argument("--split", default=None, help="manifest split the models were trained on (e.g. train)")
    m.add_argument("--limit", type=int, default=4000, help="images measured, evenly spread (%(default)s; 0 = all)")
    m.add_argument("--original-px", help="WIDTHxHEIGHT of the originals the training images were cut from, if any "
                   "(default: the record's source_framing)")
    m.add_argument("--crop-of-original", type=float, help="the centre crop of those originals the training images "
                   "are (default: the record's)")
    m.add_argument("--holdout-class", default=None, help="a class the models were trained without "
                   "(train-variant --holdout-class): its images are left out")
    m.set_defaults(func=cmd_measure)

    v = s.add_parser("show", help="frame images for a model and write them with framing.csv and a contact sheet")
    v.add_argument("--model", default=None, help="model folder (default: the bundled data/models/cpu-32)")
    v.add_argument("--data", required=True, help="a folder of images, class folders, a manifest, or one image")
    v.add_argument("--split", default=None)
    v.add_argument("--limit", type=int, help="only the first N images")
    v.add_argument("--size", type=int, help="output size in pixels (default: the model's resolution)")
    v.add_argument("--out", required=True, help="output folder")
    add_intake_args(v)
    v.set_defaults(func=cmd_show)
