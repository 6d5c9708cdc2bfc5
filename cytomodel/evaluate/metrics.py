"""Classification, calibration and anomaly metrics (numpy and scikit-learn; no torch). The one implementation of
accuracy / balanced accuracy / recall / confusion (:func:`classification_metrics`) and of the equal-width-bin
reliability curve and ECE (:func:`reliability_bins`, :func:`ece_score`), used by the baseline and ``evaluate``."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def classification_metrics(labels: np.ndarray, pred: np.ndarray, class_names: Sequence[Any]) -> dict[str, Any]:
    """Accuracy, balanced accuracy (mean recall over the classes present), per-class recall (None for a class with
    no images), confusion matrix (a nested list, JSON-ready). Labels and predictions index ``class_names``."""
    labels, pred = np.asarray(labels), np.asarray(pred)
    k = len(class_names)
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (labels, pred), 1)
    support = cm.sum(1)
    recall = {c: (float(cm[i, i] / support[i]) if support[i] else None) for i, c in enumerate(class_names)}
    present = [r for r in recall.values() if r is not None]
    return {"n": int(len(labels)), "accuracy": float((labels == pred).mean()) if len(labels) else float("nan"),
            "balanced_accuracy": float(np.mean(present)) if present else float("nan"),
            "recall": recall, "confusion": cm.tolist()}


def classification_summary(labels: np.ndarray, pred: np.ndarray, n_classes: int) -> dict[str, Any]:
    """:func:`classification_metrics` over classes 0..n_classes-1, as ``evaluate`` tabulates it: recall keyed by
    class index for the classes present only, the confusion matrix as an array."""
    m = classification_metrics(labels, pred, list(range(n_classes)))
    return {"n": m["n"], "accuracy": m["accuracy"], "balanced_accuracy": m["balanced_accuracy"],
            "recall": {c: r for c, r in m["recall"].items() if r is not None},
            "confusion": np.asarray(m["confusion"], dtype=np.int64)}


def reliability_bins(probs: np.ndarray, labels: np.ndarray, bins: int = 15
                     ) -> list[tuple[int, float, float]]:
    """(images, mean confidence, accuracy) of the top-class confidence in each non-empty equal-width bin of
    [0, 1] (right-closed: a confidence of exactly 0.7 falls in (0.6, 0.7])."""
    conf = probs.max(1)
    correct = probs.argmax(1) == labels
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    out = []
    for b in range(bins):
        m = idx == b
        if m.any():
            out.append((int(m.sum()), conf[m].mean(), correct[m].mean()))
    return out


def ece_score(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error of the top-class confidence, equal-width bins."""
    n = len(probs)
    return float(sum(k / n * abs(acc - conf) for k, conf, acc in reliability_bins(probs, labels, bins)))


def brier_score(probs: np.ndarray, labels: np.ndarray) -> float:
    onehot = np.eye(probs.shape[1])[labels]
    return float(((probs - onehot) ** 2).sum(1).mean())


def nll_score(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1)).mean())


def confident_errors(probs: np.ndarray, labels: np.ndarray, top: float = 0.10) -> tuple[float, float]:
    """(error rate among the ``top`` most confident predictions, share of all errors that fall among them)."""
    conf = probs.max(1)
    wrong = probs.argmax(1) != labels
    k = max(1, int(round(top * len(conf))))
    sel = np.argsort(-conf, kind="stable")[:k]
    return float(wrong[sel].mean()), float(wrong[sel].sum() / max(1, wrong.sum()))


def calibration_summary(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    rate, share = confident_errors(probs, labels)
    return {"ece": ece_score(probs, labels), "brier": brier_score(probs, labels), "nll": nll_score(probs, labels),
            "top10_error_rate": rate, "top10_error_share": share}


def youden_threshold(scores: np.ndarray, is_anomaly: np.ndarray) -> float:
    """The score threshold (flag if score >= threshold) maximising sensitivity + specificity − 1."""
    from sklearn.metrics import roc_curve  # scikit-learn: ~1 s to import; the other metrics are numpy only

    fpr, tpr, thr = roc_curve(is_anomaly.astype(int), scores)
    j = int(np.argmax(tpr - fpr))
    return float(thr[j]) if np.isfinite(thr[j]) else float(np.max(scores))


def anomaly_summary(val_scores, val_anom, test_scores, test_anom) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score  # scikit-learn: loaded on use (see youden_threshold)

    thr = youden_threshold(np.asarray(val_scores), np.asarray(val_anom, bool))
    s, a = np.asarray(test_scores), np.asarray(test_anom, bool)
    return {"auroc": float(roc_auc_score(a.astype(int), s)), "threshold": thr,
            "sensitivity": float(np.mean(s[a] >= thr)), "specificity": float(np.mean(s[~a] < thr)),
            "n_anomalous": int(a.sum()), "n_normal": int((~a).sum())}
