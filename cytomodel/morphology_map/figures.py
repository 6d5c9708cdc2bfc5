"""The map's static figures (PDF and PNG, matplotlib) and contact sheets of candidate clusters (PNG, Pillow)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from ..data import DataError, load_image

TAB10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
         "#17becf"]


def _pyplot():
    """matplotlib's pyplot on the headless backend, imported when a figure is drawn."""
    # matplotlib: ~1 s to import, only when a figure is drawn
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def colour_of(names: Sequence[str]) -> dict[str, str]:
    return {n: TAB10[i % len(TAB10)] for i, n in enumerate(names)}


def _save(fig, stem: Path) -> list[Path]:
    out = [stem.with_suffix(".pdf"), stem.with_suffix(".png")]
    for p in out:
        fig.savefig(p, dpi=130, bbox_inches="tight")
    return out


def fig_map(coords: dict[str, np.ndarray], cells: pd.DataFrame, stem: Path,
            added: dict[str, np.ndarray] | None = None, subtype_classes: Sequence[str] = ()) -> list[Path]:
    """One row per representation: all cells coloured by class (added cells as black crosses), then one panel per
    class with subtypes, its cells coloured by subtype over the others in grey."""
    plt = _pyplot()
    reps = list(coords)
    classes = list(dict.fromkeys(cells["label"]))
    col = colour_of(classes)
    ncol = 1 + len(subtype_classes)
    fig, axes = plt.subplots(len(reps), ncol, figsize=(4.2 * ncol, 3.8 * len(reps)), squeeze=False)
    labels = cells["label"].to_numpy()
    subtypes = cells["subtype"].to_numpy()
    for r, rep in enumerate(reps):
        xy = coords[rep]
        ax = axes[r, 0]
        for c in classes:
            m = labels == c
            ax.scatter(xy[m, 0], xy[m, 1], s=5, c=col[c], label=c, linewidths=0)
        if added and rep in added and len(added[rep]):
            ax.scatter(added[rep][:, 0], added[rep][:, 1], s=28, c="black", marker="x", label="added", linewidths=1)
        ax.set_title(f"{rep}: trained classes", fontsize=9)
        if r == 0:
            ax.legend(fontsize=6, markerscale=2, loc="best", frameon=False)
        for j, cls in enumerate(subtype_classes, start=1):
            ax = axes[r, j]
            ax.scatter(xy[:, 0], xy[:, 1], s=3, c="#dddddd", linewidths=0)
            m = (labels == cls) & pd.notna(subtypes)
            names = sorted(set(subtypes[m]))
            sc = colour_of(names)
            for s in names:
                k = m & (subtypes == s)
                ax.scatter(xy[k, 0], xy[k, 1], s=7, c=sc[s], label=s, linewidths=0)
            ax.set_title(f"{rep}: {cls} subtypes", fontsize=9)
            ax.legend(fontsize=6, markerscale=2, loc="best", frameon=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("UMAP of each representation (seeded); subtypes were never a training label", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    out = _save(fig, stem)
    plt.close(fig)
    return out


def fig_check(table: pd.DataFrame, stem: Path) -> list[Path]:
    """Per class with subtypes: AMI of the clusters (HDBSCAN, k-means with k told) and the k-NN probe's balanced
    accuracy against its chance level, per representation."""
    plt = _pyplot()
    classes = list(dict.fromkeys(table["class"]))
    reps = list(dict.fromkeys(table["representation"]))
    fig, axes = plt.subplots(1, 2 * max(1, len(classes)), figsize=(4.2 * 2 * max(1, len(classes)), 3.6),
                             squeeze=False)
    value = table.set_index(["representation", "class", "metric"])["value"]
    for i, cls in enumerate(classes):
        ax = axes[0, 2 * i]
        w = 0.38
        x = np.arange(len(reps))
        h = [value.get((r, cls, "ami_hdbscan_mean"), value.get((r, cls, "ami_hdbscan"), np.nan)) for r in reps]
        e = [value.get((r, cls, "ami_hdbscan_sd"), 0.0) for r in reps]
        ax.bar(x - w / 2, h, w, yerr=e, label="HDBSCAN (mean ± sd over runs)", color="#4c72b0")
        ax.bar(x + w / 2, [value.get((r, cls, "ami_kmeans"), np.nan) for r in reps], w, label="k-means, k told",
               color="#dd8452")
        ax.set_xticks(x, reps, rotation=30, ha="right", fontsize=7)
        ax.set_ylabel("AMI clusters vs subtypes")
        ax.set_title(f"{cls}: clusters", fontsize=9)
        ax.axhline(0, color="k", lw=0.8)
        ax.legend(fontsize=6, frameon=False)
        ax = axes[0, 2 * i + 1]
        ax.bar(x, [value.get((r, cls, "knn_balanced_accuracy"), np.nan) for r in reps], 0.6, color="#55a868")
        chance = value.get((reps[0], cls, "knn_chance"), np.nan)
        ax.axhline(chance, color="k", ls="--", lw=1, label=f"chance {chance:.2f}")
        ax.set_ylim(0, 1)
        ax.set_xticks(x, reps, rotation=30, ha="right", fontsize=7)
        ax.set_ylabel("balanced accuracy (CV)")
        ax.set_title(f"{cls}: k-NN subtype probe", fontsize=9)
        ax.legend(fontsize=6, frameon=False)
    fig.tight_layout()
    out = _save(fig, stem)
    plt.close(fig)
    return out


def contact_sheet(paths: Sequence[str | Path], out: Path, title: str, size: int = 96, cols: int = 6) -> Path:
    """A grid of the cells' images (their original files, ``size`` px), ``title`` above: what an expert looks at."""
    tiles = []
    for p in paths:
        try:
            tiles.append(load_image(p).resize((size, size), Image.Resampling.LANCZOS))
        except (OSError, DataError):
            tiles.append(Image.new("RGB", (size, size), "white"))   # unreadable since it was framed: leave a gap
    cols = max(1, min(cols, len(tiles)))
    rows = max(1, int(np.ceil(len(tiles) / cols)))
    pad, head = 3, 18
    sheet = Image.new("RGB", (cols * (size + pad) + pad, rows * (size + pad) + pad + head), "white")
    ImageDraw.Draw(sheet).text((pad, 3), title, fill="black")
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        sheet.paste(t, (pad + c * (size + pad), head + pad + r * (size + pad)))
    sheet.save(out)
    return out
