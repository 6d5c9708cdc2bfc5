"""Model-free metrics: type-2 ROC/AUROC, calibration, confident errors, agreement, confusion matrices."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
    "beta_interval",
    "calibration",
    "cohen_kappa",
    "confident_errors",
    "confusion",
    "type2_auroc",
    "type2_roc",
]


def type2_auroc(correct: np.ndarray, confidence: np.ndarray) -> float:
    """Area under the type-2 ROC: P(confidence on a random correct trial > on a random error), ties count ½.

    NaN when there are no errors or no correct trials.
    """
    correct = np.asarray(correct, bool)
    conf = np.asarray(confidence, float)
    n1, n0 = correct.sum(), (~correct).sum()
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = stats.rankdata(conf)
    return float((ranks[correct].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def type2_roc(correct: np.ndarray, level: np.ndarray, K: int) -> tuple[np.ndarray, np.ndarray]:
    """Type-2 ROC points (false-alarm rate, hit rate) for criteria 'confidence ≥ k', k = K..1, from (0, 0)."""
    correct = np.asarray(correct, bool)
    level = np.asarray(level, int)
    n1, n0 = max(correct.sum(), 1), max((~correct).sum(), 1)
    h = [0.0] + [float(((level >= k) & correct).sum() / n1) for k in range(K, 0, -1)]
    f = [0.0] + [float(((level >= k) & ~correct).sum() / n0) for k in range(K, 0, -1)]
    return np.array(f), np.array(h)


def brier(prob: np.ndarray, correct: np.ndarray) -> float:
    return float(np.mean((np.asarray(prob, float) - np.asarray(correct, float)) ** 2))


def calibration(prob: np.ndarray, correct: np.ndarray, bins: int | Sequence[float] = 10) -> dict:
    """ECE (|accuracy − confidence| weighted by bin size), top-label Brier score and the reliability curve.

    ``bins``: number of equal-width bins on [0, 1] or explicit bin *values* (each distinct value its own bin,
    used for ordinal confidence levels).
    """
    prob = np.asarray(prob, float)
    correct = np.asarray(correct, float)
    if isinstance(bins, (int, np.integer)):
        edges = np.linspace(0, 1, int(bins) + 1)
        b = np.clip(np.digitize(prob, edges[1:-1]), 0, int(bins) - 1)
    else:
        vals = np.asarray(sorted(bins), float)
        b = np.searchsorted(vals, prob)
    rows = []
    for j in np.unique(b):
        m = b == j
        k, n = correct[m].sum(), m.sum()
        lo, hi = beta_interval(k, n, 0.95)
        rows.append({"bin": int(j), "n": int(n), "confidence": float(prob[m].mean()), "accuracy": float(k / n),
                     "acc_lo": lo, "acc_hi": hi})
    curve = pd.DataFrame(rows)
    ece = float(np.sum(curve["n"] * (curve["accuracy"] - curve["confidence"]).abs()) / len(prob)) if len(prob) else np.nan
    return {"ece": ece, "brier": brier(prob, correct), "curve": curve, "n": int(len(prob))}


def beta_interval(k: float, n: float, prob: float = 0.95, a: float = 1.0, b: float = 1.0) -> tuple[float, float]:
    """Equal-tailed interval of the Beta(a + k, b + n − k) posterior of a rate (uniform prior by default)."""
    if n == 0:
        return float("nan"), float("nan")
    lo, hi = stats.beta.ppf([(1 - prob) / 2, (1 + prob) / 2], a + k, b + n - k)
    return float(lo), float(hi)


def confident_errors(correct: np.ndarray, level: np.ndarray, K: int) -> dict:
    """Errors at the top confidence level K.

    ``rate_all`` = confident errors / all answers (with a Beta(1, 1) 95 % interval and upper bound);
    ``rate_top`` = errors among top-confidence answers.
    """
    correct = np.asarray(correct, bool)
    top = np.asarray(level, int) == K
    k = int((top & ~correct).sum())
    n = int(len(correct))
    nt = int(top.sum())
    lo, hi = beta_interval(k, n)
    upper95 = float(stats.beta.ppf(0.95, 1 + k, 1 + n - k)) if n else float("nan")
    lo_t, hi_t = beta_interval(k, nt)
    return {"confident_errors": k, "n": n, "rate_all": k / n if n else np.nan, "rate_all_lo": lo,
            "rate_all_hi": hi, "rate_all_upper95": upper95, "n_top": nt, "rate_top": k / nt if nt else np.nan,
            "rate_top_lo": lo_t, "rate_top_hi": hi_t}


def cohen_kappa(a: Sequence, b: Sequence) -> float:
    """Cohen's κ between two label sequences (NaN if undefined)."""
    a = np.asarray(a, dtype=object)
    b = np.asarray(b, dtype=object)
    if len(a) == 0:
        return float("nan")
    labels = sorted(set(a) | set(b), key=str)
    idx = {l: i for i, l in enumerate(labels)}
    m = np.zeros((len(labels), len(labels)))
    np.add.at(m, ([idx[x] for x in a], [idx[x] for x in b]), 1)
    n = m.sum()
    po = np.trace(m) / n
    pe = float((m.sum(0) * m.sum(1)).sum()) / n**2
    return float((po - pe) / (1 - pe)) if pe < 1 else float("nan")


def confusion(true: Sequence, pred: Sequence, classes: Sequence[str], extra: Sequence[str] = ()) -> pd.DataFrame:
    """Counts: rows true class, columns answered class (+ ``extra`` columns such as 'cannot_tell')."""
    cols = list(classes) + [e for e in extra]
    m = pd.crosstab(pd.Categorical(list(true), categories=list(classes)),
                    pd.Categorical(list(pred), categories=cols), dropna=False)
    m.index.name, m.columns.name = "true", "answered"
    return m.reindex(index=list(classes), columns=cols, fill_value=0)
