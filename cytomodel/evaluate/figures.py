"""The figures of ``cytomodel evaluate``: confusion matrices, reliability diagrams and anomaly ROC curves (PNG)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .metrics import ece_score, reliability_bins


def _pyplot():
    """matplotlib's pyplot on the headless backend, imported when a figure is drawn (~1 s: evaluate's other work
    does not need it)."""
    # matplotlib: ~1 s to import, only when a figure is drawn
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def fig_confusion(conf: np.ndarray, names: Sequence[str], title: str, path: Path) -> None:
    plt = _pyplot()
    conf = np.asarray(conf)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    norm = conf / np.maximum(conf.sum(1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(names)):
        for j in range(len(names)):
            if conf[i, j]:
                ax.text(j, i, str(conf[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def fig_reliability(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, bins: int = 15) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    for name, (probs, labels) in curves.items():
        kept = [(conf, acc) for n, conf, acc in reliability_bins(probs, labels, bins) if n >= 3]
        xs, ys = [c for c, _ in kept], [a for _, a in kept]
        ax.plot(xs, ys, "o-", label=f"{name} (ECE {ece_score(probs, labels):.3f})")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=8)
    ax.set_title("reliability (bins with >= 3 images)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def fig_roc(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path) -> None:
    from sklearn.metrics import roc_auc_score, roc_curve  # scikit-learn: ~1 s to import, only for this figure

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    for name, (scores, anom) in curves.items():
        fpr, tpr, _ = roc_curve(anom.astype(int), scores)
        ax.plot(fpr, tpr, label=f"{name} (AUROC {roc_auc_score(anom.astype(int), scores):.3f})")
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
