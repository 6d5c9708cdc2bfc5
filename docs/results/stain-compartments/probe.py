"""Probe (issue 23): a stain map that the set's mix of cells does not move. The product's optical-density map
(`cytomodel.data.stain`) carries the set's second moment of OD over *all* stained pixels onto the training images'.
That moment is a mix: PBC's 128-px fields are mostly red cells, BCCD's tight crops mostly the white cell, and one
class alone moves it (platelets 0.25× the trace, basophils 1.4×). Here the second moment is taken per compartment —
nucleus, the white cell's cytoplasm, red cells and other stained pixels — and the compartments are weighted equally
on both sides, so a set whose crops hold more white cell (or more of one class) is not mapped towards another stain.

Cells are framed at 128 px by the product's intake (stain none), measured there, mapped, then resized to the
classifier's 32 px (Lanczos). Treatments: none; `od-linear` (the product's moment over all stained pixels, measured
here the same way); `od-compartments` (nucleus, cytoplasm, red cells equally weighted); `od-nuc-rbc` (nucleus and red
cells only: the compartments whose colour depends least on the cell type); `od-reweighted` (each compartment's
moment weighted by the training images' share of stained pixels in it, on both sides: on the training images the
all-pixel moment, on another set that set's compartments in the training proportions). Targets: PBC train, 60 cells a class.
Sets: tecom, BCCD, PBC val (60 a class) and each PBC val class alone (the mix test: normalising a one-class set
should change nothing).

    python docs/results/stain-compartments/probe.py none,od-linear,od-compartments,od-nuc-rbc tecom,bccd,pbc_val,pbc_val_per_class OUT.json
"""
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from skimage.filters import threshold_multiotsu

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from cross_lab import datasets  # noqa: E402
from cytomodel.classify import ClassifierConfig  # noqa: E402
from cytomodel.classify.batch import classify_arrays  # noqa: E402
from cytomodel.data import framed_arrays  # noqa: E402
from cytomodel.data.cell_mask import cell_region as _cell_diameter, optical_density  # noqa: E402
from cytomodel.data.intake import Intake  # noqa: E402
from cytomodel.data.stain import STAINED_OD, _sqrtm, channel_od, image_background  # noqa: E402
from cytomodel.evaluate import balanced_items  # noqa: E402
from cytomodel.models.loading import load_model  # noqa: E402

SH = REPO.parent / "shared" / "data"
model = load_model(REPO / "data/models/cpu-32-lab")
intake128 = Intake.for_record(model.metadata, 128, stain="none")


def framed128(items):
    arr, keep = framed_arrays(intake128.frame([p for p, _ in items]), 128)
    return arr, keep


def compartments(img: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean masks of one framed 128-px cell: nucleus, cytoplasm (the white cell less its nucleus), other stained."""
    od = optical_density(img.astype(np.float64))
    t_lo, t_hi = threshold_multiotsu(od, classes=3)
    H, W = od.shape
    yy, xx = np.mgrid[:H, :W]
    central = np.hypot(yy - (H - 1) / 2, xx - (W - 1) / 2) < 0.3 * min(H, W)
    dark = ndi.binary_opening(od > t_hi, iterations=1)
    lab, n = ndi.label(ndi.binary_dilation(dark, iterations=max(1, int(0.06 * min(H, W)))))
    ids = np.unique(lab[central & dark])
    nucleus = np.isin(lab, ids[ids > 0]) & dark
    if not nucleus.any():
        nucleus = dark & central
    _, cell = _cell_diameter(od, t_lo, nucleus)
    return {"nucleus": nucleus, "cytoplasm": cell & ~nucleus, "other": ~ndi.binary_dilation(cell, iterations=2)}


class Stats:
    """A set's background and the per-compartment second moments of OD over its stained pixels (at 128 px)."""

    def __init__(self, arr: np.ndarray):
        self.bg = np.median([image_background(a) for a in arr], 0)
        sums = {k: np.zeros((3, 3)) for k in ("all", "nucleus", "cytoplasm", "other")}
        counts = dict.fromkeys(sums, 0)
        for a in arr:
            od = channel_od(a, self.bg)
            stained = od.sum(-1) > STAINED_OD
            masks = {"all": stained, **{k: m & stained for k, m in compartments(a).items()}}
            for k, m in masks.items():
                v = od[m]
                sums[k] += v.T @ v
                counts[k] += len(v)
        self.moment = {k: sums[k] / max(counts[k], 1) for k in sums}
        self.share = {k: counts[k] / max(counts["all"], 1) for k in counts}

    def mixed(self, kind: str, weights: dict[str, float] | None = None) -> np.ndarray:
        if kind == "od-reweighted":   # the compartments in the training images' proportions (weights: the target's)
            w = weights or {k: self.share[k] for k in ("nucleus", "cytoplasm", "other")}
            total = sum(w.values())
            return sum(w[k] / total * self.moment[k] for k in w)
        parts = {"od-linear": ["all"], "od-compartments": ["nucleus", "cytoplasm", "other"],
                 "od-nuc-rbc": ["nucleus", "other"]}[kind]
        return sum(self.moment[k] for k in parts) / len(parts)


def transform(kind: str, arr128: np.ndarray, target: Stats) -> np.ndarray:
    if kind != "none":
        src = Stats(arr128)
        w = {k: target.share[k] for k in ("nucleus", "cytoplasm", "other")}
        m = _sqrtm(target.mixed(kind, w)) @ _sqrtm(src.mixed(kind, w), inverse=True)
        out = []
        for a in arr128:
            od = channel_od(a, src.bg) @ m.T
            out.append(np.clip((target.bg + 1.0) * np.exp(-od) - 1.0 + 0.5, 0, 255).astype(np.uint8))
        arr128 = np.stack(out)
    return np.stack([np.asarray(Image.fromarray(a).resize((model.resolution,) * 2, Image.Resampling.LANCZOS))
                     for a in arr128])


def main() -> None:
    kinds, names, out = sys.argv[1].split(","), sys.argv[2].split(","), Path(sys.argv[3])
    res = json.loads(out.read_text()) if out.is_file() else {}
    t_arr, _ = framed128(balanced_items(SH / "pbc", "train", 60, None, seed=1))
    target = Stats(t_arr)
    res["target"] = {"share": target.share, "trace": {k: float(np.trace(v)) for k, v in target.moment.items()}}
    ds = datasets(SH)
    sets = []
    for name in names:
        if name == "pbc_val_per_class":
            items, _ = ds["pbc_val"]
            sets += [(f"pbc_val_{c}", [it for it in items if it[1] == c], None) for c in model.class_names]
        else:
            sets.append((name, *ds[name]))
    for name, items, classes in sets:
        arr, keep = framed128(items)
        labels = np.array([items[i][1] for i in keep])
        st = Stats(arr)
        w = {k: target.share[k] for k in ("nucleus", "cytoplasm", "other")}
        res[f"{name}/stats"] = {"share": st.share,
                                **{f"trace_ratio_{k}": float(np.trace(st.mixed(k, w)) / np.trace(target.mixed(k, w)))
                                   for k in ("od-linear", "od-compartments", "od-nuc-rbc", "od-reweighted")}}
        for kind in kinds:
            key = f"{name}/{kind}"
            if key in res:
                continue
            t0 = time.time()
            x = transform(kind, arr, target)
            pred = classify_arrays(model, x, ClassifierConfig(), classes=classes)["pred_class"].to_numpy()
            cls = classes or model.class_names
            rec = {c: float(np.mean(pred[labels == c] == c)) for c in cls if (labels == c).any()}
            res[key] = {"bal": round(float(np.mean(list(rec.values()))), 4),
                        "recall": {k: round(v, 3) for k, v in rec.items()}, "n": int(len(labels)),
                        "seconds": round(time.time() - t0, 1)}
            print(key, json.dumps(res[key]), flush=True)
            out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
