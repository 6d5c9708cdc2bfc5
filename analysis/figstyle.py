"""One figure style for every analysis: journal single-column width (89 mm), Okabe–Ito colours, saved as PDF, SVG
and 300-dpi PNG with the provenance line in each file's metadata."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .fitting import hdi_bounds  # noqa: E402

__all__ = ["COLUMN_IN", "EXPERT", "GREY", "MODEL", "STYLE", "forest", "log_ticks", "new_figure", "save_figure"]

COLUMN_IN = 89 / 25.4  # single journal column
EXPERT = "#0072B2"     # Okabe–Ito colour-blind-safe palette
MODEL = "#D55E00"
GREY = "#999999"
STYLE = {
    "font.size": 7, "axes.titlesize": 7, "axes.labelsize": 7, "xtick.labelsize": 6, "ytick.labelsize": 6,
    "legend.fontsize": 6, "axes.linewidth": 0.6, "lines.linewidth": 1.0, "xtick.major.width": 0.6,
    "ytick.major.width": 0.6, "axes.spines.top": False, "axes.spines.right": False, "savefig.bbox": "tight",
    "savefig.pad_inches": 0.02, "pdf.fonttype": 42, "svg.fonttype": "none", "font.family": "DejaVu Sans",
    "legend.frameon": False,
}


def save_figure(fig, out_dir: Path, name: str, metadata: dict[str, str] | None = None) -> dict[str, str]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for ext in ("pdf", "svg", "png"):
        p = out_dir / f"{name}.{ext}"
        md = None
        if metadata:
            md = ({"Title": name, "Subject": metadata.get("Subject", "")} if ext == "pdf" else
                  {"Title": name, "Description": metadata.get("Subject", "")})
        fig.savefig(p, dpi=300 if ext == "png" else None, metadata=md)
        paths[ext] = str(p)
    plt.close(fig)
    return paths


def new_figure(h_in: float, ncols: int = 1, nrows: int = 1, **kw):
    """A figure one journal column wide (draw inside ``plt.rc_context(STYLE)``, as ``OutputFolder.draw`` does)."""
    return plt.subplots(nrows, ncols, figsize=(COLUMN_IN, h_in), constrained_layout=True, **kw)


def forest(ax, names, d: np.ndarray, color, prob=0.94, y0=0.0, marker="o", label=None):
    """Per-entry HDI bars (ArviZ's ``hdi``) and posterior means of draws ``d`` (n_draws, len(names))."""
    iv = hdi_bounds(d, prob).reshape(-1, 2)
    for i, _ in enumerate(names):
        ax.plot(iv[i], [y0 + i] * 2, color=color, lw=1)
        ax.plot(np.mean(d[:, i]), y0 + i, marker, color=color, ms=3, label=label if i == 0 else None)


def log_ticks(axis, lo: float, hi: float) -> None:
    """Readable ticks on a log axis whatever its span: 1-2-5 steps (0.2, 0.5, 1, 2, 5 …) inside [lo, hi]."""
    lo, hi = max(lo, 1e-6), max(hi, lo * 1.01)
    cands = [m * 10.0 ** e for e in range(int(np.floor(np.log10(lo))) - 1, int(np.ceil(np.log10(hi))) + 1)
             for m in (1, 2, 5)]
    ticks = [t for t in cands if lo <= t <= hi]
    if len(ticks) < 3:  # a narrow span: finer steps
        cands = [m * 10.0 ** e for e in range(int(np.floor(np.log10(lo))) - 1, int(np.ceil(np.log10(hi))) + 1)
                 for m in (1, 1.5, 2, 3, 5, 7)]
        ticks = [t for t in cands if lo <= t <= hi] or [lo, hi]
    axis.set_major_locator(matplotlib.ticker.FixedLocator(ticks))
    axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
