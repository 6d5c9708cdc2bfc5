"""Probe (issue 23, 2026-12-07): cells cut to their own bounding boxes have lost their size — a lymphocyte fills its
crop as a monocyte does — so no set-wide scale can restore it. Two ideas, measured side by side:

- *class-scale hypotheses*: classify each cell framed as a cell **of class c** would be (window = its diameter ×
  the record's white-cell window × exp(−class c's offset)), read the probability of c from that framing, take the
  class whose own framing supports it most (4 framings per cell);
- *the window's margin*: where the window runs past the image, a reflection (the framing before) or the image's
  background colour (``--fill``; this probe's own estimate, the palest fifth; the library uses the brightest tenth).

Sets (the 4 classes BCCD shares): ``pbc-bbox`` (PBC val, 60 per class, each cell cut to the bounding box of a
purple-pixel mask — a detector of its own, not the framing's — padded by 5–30 %, 128 px), ``pbc-zoom`` (the same
cells, the centre 70 % of each copy enlarged to 128 px: another magnification, with red cells around), ``bccd``.
"today" is ``classify_folder`` with the code of the day; "all_as_set" the set's scale with this probe's margin.
Results: ``probe-{reflected,background}-<sets>.json`` here; the library's own runs: ``beyond-the-border.csv``.

    python probe.py --out RUNS/class-scale --sets pbc-bbox bccd [--fill]
    python probe.py --out RUNS/class-scale --sets pbc-zoom --set-only [--fill]
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))
from PIL import Image
from scipy import ndimage


CLASSES = ["eosinophil", "lymphocyte", "monocyte", "neutrophil"]


def bbox_crop(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The cell's bounding box from a purple-pixel mask (HSV: hue 200–330°, saturation > 0.25), the component
    nearest the centre with its touching neighbours closed in, padded 5–30 %, square, 128 px."""
    hsv = np.asarray(img.convert("HSV"), dtype=np.float64) / 255.0
    hue, sat = hsv[..., 0] * 360, hsv[..., 1]
    mask = ndimage.binary_closing((hue > 200) & (hue < 330) & (sat > 0.25), iterations=3)
    mask = ndimage.binary_fill_holes(mask)
    lab, n = ndimage.label(mask)
    h, w = mask.shape
    if n == 0:
        return img
    sizes = ndimage.sum(mask, lab, range(1, n + 1))
    centre = lab[h // 2 - 8:h // 2 + 8, w // 2 - 8:w // 2 + 8]
    ids = [i for i in np.unique(centre) if i > 0]
    k = max(ids, key=lambda i: sizes[i - 1]) if ids else int(np.argmax(sizes)) + 1
    ys, xs = np.nonzero(lab == k)
    side = max(ys.max() - ys.min(), xs.max() - xs.min()) * rng.uniform(1.05, 1.3)
    cy, cx = (ys.max() + ys.min()) / 2, (xs.max() + xs.min()) / 2
    return reflected_window(img, (cx, cy), side, 128)


def reflected_window(img: Image.Image, centre, side: float, out_px: int) -> Image.Image:
    """A square of ``side`` px about ``centre``, the image reflected where it runs past the border (how the crops
    of the measured set were made: the framing's cutter of that day)."""
    arr = np.asarray(img)
    cx, cy = centre
    while True:   # np.pad's reflect needs a pad smaller than the image
        h, w = arr.shape[:2]
        need = math.ceil(max(0.0, side / 2 - cx, side / 2 - cy, cx + side / 2 - (w - 1), cy + side / 2 - (h - 1))) + 2
        if need <= 2:
            break
        step = min(need, h - 1, w - 1)
        arr = np.pad(arr, ((step, step), (step, step), (0, 0)), mode="reflect")
        cx, cy = cx + step, cy + step
    box = (cx + 0.5 - side / 2, cy + 0.5 - side / 2, cx + 0.5 + side / 2, cy + 0.5 + side / 2)
    return Image.fromarray(arr).resize((out_px, out_px), Image.Resampling.LANCZOS, box=box)


def items_of(name: str, shared: Path, tmp: Path) -> list[tuple[Path, str]]:
    from cytomodel.data import scan_dataset
    from cytomodel.evaluate import balanced_items

    if name == "bccd":
        return [(r.path, r.label) for r in scan_dataset(shared / "bccd_wbc") if r.label in CLASSES]
    if name == "pbc-zoom":   # another magnification: the centre 70 % of each cell's 128-px copy, enlarged to 128 px
        folder = tmp / name
        folder.mkdir(parents=True, exist_ok=True)
        out = []
        for p, lab in balanced_items(shared / "pbc", "val", 60, None, seed=0):
            if lab in CLASSES:
                dst = folder / f"{lab}__{Path(p).stem}.png"
                if not dst.exists():
                    Image.open(p).convert("RGB").resize((128, 128), Image.Resampling.LANCZOS,
                                                        box=(19.2, 19.2, 108.8, 108.8)).save(dst)
                out.append((dst, lab))
        return out
    if name == "pbc-val":
        return [(p, lab) for p, lab in balanced_items(shared / "pbc", "val", 60, None, seed=0) if lab in CLASSES]
    rng = np.random.default_rng(0)
    out = []
    folder = tmp / name
    folder.mkdir(parents=True, exist_ok=True)
    for p, lab in balanced_items(shared / "pbc", "val", 60, None, seed=0):
        if lab in CLASSES:
            dst = folder / f"{lab}__{Path(p).stem}.png"
            if not dst.exists():
                bbox_crop(Image.open(p).convert("RGB"), rng).save(dst)
            out.append((dst, lab))
    return out


def background_colour(img: Image.Image) -> np.ndarray:
    """The image's background: the median colour of its palest fifth (lowest optical density)."""
    rgb = np.asarray(img, dtype=np.float64).reshape(-1, 3)
    od = -np.log(np.clip(rgb, 1, 255) / 255.0).sum(1)
    return np.median(rgb[od <= np.quantile(od, 0.2)], axis=0)


def fill_window(img: Image.Image, centre, side: float, out_px: int) -> np.ndarray:
    """A square of ``side`` px about ``centre``; beyond the image, its background colour (not a reflection: in a
    crop cut to the cell, a reflection is the cell itself, mirrored around it)."""
    w, h = img.size
    pad = int(math.ceil(side)) + 2
    canvas = Image.new("RGB", (w + 2 * pad, h + 2 * pad), tuple(int(v) for v in background_colour(img)))
    canvas.paste(img, (pad, pad))
    cx, cy = centre[0] + pad, centre[1] + pad
    box = (cx + 0.5 - side / 2, cy + 0.5 - side / 2, cx + 0.5 + side / 2, cy + 0.5 + side / 2)
    return np.asarray(canvas.resize((out_px, out_px), Image.Resampling.LANCZOS, box=box), dtype=np.uint8)


def class_scale_arrays(intake, items, offsets: dict[str, float], fill: bool
                       ) -> tuple[dict[str, np.ndarray], list[int], list]:
    """For each hypothesis class, every image framed as a cell of that class would be, and ("set") at the set's
    planned scale (stain as the set's)."""
    from cytomodel.data.framing import Scale, frame_image, measure_cell
    from cytomodel.data.stain import normalise_stain

    intake.plan([p for p, _ in items])
    c = intake.contract
    arrays = {k: [] for k in [*offsets, "set"]}
    keep, notes = [], []
    for i, (p, _) in enumerate(items):
        img = Image.open(p).convert("RGB")
        m = measure_cell(img)
        if not m.cell_diameter or m.status not in ("ok", "cut_by_border"):
            notes.append((i, m.status))
            continue
        keep.append(i)
        plan = intake.plans[img.size]
        sides = {k: c.window_cell * m.cell_diameter * math.exp(-off) for k, off in offsets.items()}
        sides["set"] = plan.window_fraction * min(img.size)
        for k, side in sides.items():
            if fill:
                im = fill_window(img, m.centre, side, intake.out_px)
            else:
                im = frame_image(img, c, intake.out_px, intake.crop_fraction, Scale(side / min(img.size), "c", 1),
                                 m).image
            if intake._normalises(img.size):
                im = normalise_stain(im, intake.stains[img.size], c.stain_statistics)
            arrays[k].append(im)
    return {k: np.stack(v) for k, v in arrays.items()}, keep, notes


def balanced(labels, pred) -> float:
    labels, pred = np.asarray(labels), np.asarray(pred)
    return float(np.mean([(pred[labels == c] == c).mean() for c in CLASSES if (labels == c).any()]))


def main() -> None:
    from cytomodel import load_model
    from cytomodel.classify import ClassifierConfig, classify_arrays, classify_folder
    from cytomodel.runtime import configure_runtime

    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--model", default=str(REPO / "data" / "models" / "cpu-32-lab"))
    p.add_argument("--sets", nargs="+", default=["pbc-bbox", "bccd"])
    p.add_argument("--shared", default=str(REPO.parent / "shared" / "data"), type=Path)
    p.add_argument("--fill", action="store_true", help="pad with the background colour, not a reflection")
    p.add_argument("--set-only", action="store_true", help="no class hypotheses: the set's scale alone")
    args = p.parse_args()
    configure_runtime()
    args.out.mkdir(parents=True, exist_ok=True)
    model = load_model(args.model)
    offsets = {k: v for k, v in model.metadata["framing"]["cell_class_offsets"].items() if k in CLASSES}
    cfg = ClassifierConfig()
    result = {}
    for name in args.sets:
        items = items_of(name, args.shared, args.out)
        labels = [lab for _, lab in items]
        today = classify_folder(model, None, args.out / f"{name}-today.csv", cfg, items=items, classes=CLASSES,
                                progress=True, intake=model.intake(stain="auto"))
        done = today[today.pred_class.notna()]
        res = {"n": len(items), "today": round(balanced(done.label, done.pred_class), 4),
               "today_rule": today.framing_rule.value_counts().to_dict()}
        arrays, keep, notes = class_scale_arrays(model.intake(stain="auto"), items,
                                                 {} if args.set_only else offsets, args.fill)
        tag = "fill-" if args.fill else ""
        probs = {}
        for k, arr in arrays.items():
            path = args.out / f"{name}-{tag}as-{k}.csv"
            if path.is_file():
                t = pd.read_csv(path)
            else:
                t = classify_arrays(model, arr, cfg, progress=True, classes=CLASSES)
                t.insert(0, "label", [labels[i] for i in keep])
                t.to_csv(path, index=False)
            probs[k] = t
        lab_kept = [labels[i] for i in keep]
        for k in probs:   # every cell framed at one class's scale, or the set's, for comparison
            res[f"all_as_{k}"] = round(balanced(lab_kept, probs[k].pred_class.to_numpy()), 4)
        if args.set_only:
            result[name] = res
            print(name, json.dumps(res))
            continue
        support = np.stack([probs[k][f"prob_{k}"].to_numpy() for k in CLASSES], axis=1)
        res["class_scale"] = round(balanced(lab_kept, np.array(CLASSES)[support.argmax(1)]), 4)
        res["not_measured"] = len(notes)
        res["confusion_class_scale"] = pd.crosstab(pd.Series(lab_kept, name="label"),
                                                   pd.Series(np.array(CLASSES)[support.argmax(1)], name="pred")
                                                   ).to_dict()
        result[name] = res
        print(name, json.dumps(res))
    kind = "background" if args.fill else "reflected"
    (args.out / f"probe-{kind}-{'-'.join(args.sets)}.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
