"""Triage with a guarantee: accept a cell with its class, send it to review, or flag it as unlike any trained class.

Works on classification tables (``cytomodel classify`` or ``cytomodel baseline predict`` output), so the expensive
classification is done once, resumably, and triage is refitted in milliseconds.

Two thresholds are fitted on labelled calibration cells (e.g. the val split), in this order:

* **flag** — split conformal (Vovk et al. 2005): the anomaly threshold is the ⌈(n+1)(1−α_flag)⌉-th smallest
  calibration score, so a new cell exchangeable with the calibration cells is flagged with probability at most
  α_flag (the false-flag rate on cells of the trained classes; no guarantee is possible about how many truly abnormal
  cells are flagged — that is measured, e.g. on a held-out class).
* **accept** — selective classification with a PAC guarantee, as Learn-then-Test (Angelopoulos et al. 2021,
  *Learn then Test*) with fixed-sequence testing, in the spirit of Geifman & El-Yaniv (2017)'s SGR: for confidence
  thresholds from strictest to loosest, test H₀: "error among accepted > target" with the exact binomial tail of the
  errors among the calibration cells accepted there; stop at the first threshold that cannot reject at level δ. The
  loosest rejected threshold is used. With probability ≥ 1−δ over the draw of calibration cells, the error rate among
  accepted cells (of the population the calibration cells were drawn from) is at most the target.

What this assumes: calibration and new cells are exchangeable (same lab, stain, scanner, class mix) and the classifier
and its settings are fixed between calibration and use. Under a domain shift (another lab) the guarantee does not
hold; recalibrate on labelled cells of the new domain.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from cytocore import classification as ct
from cytocore.provenance import atomic_output, provenance_record, write_json

from ..data.framing import FRAMED_STATUSES

__all__ = ["DECISIONS", "TriageRule", "fit_triage", "apply_triage", "selective_risk_curve", "summarise_triage",
           "read_classification_table", "run_triage", "plot_risk_coverage"]

DECISIONS = ("accept", "review", "flag")
_ID_COLUMNS = ("image", "path")
_PRED_COLUMNS = ("pred_class", "predicted")
_PROB_PREFIXES = ("prob_", "p_")


@dataclass
class TriageRule:
    """Fitted thresholds and what they promise. ``accept_threshold`` is ``inf`` when no threshold met the target
    (every unflagged cell then goes to review)."""
    accept_threshold: float
    flag_threshold: float
    target_error: float
    target_flag_rate: float
    delta: float
    n_calibration: int
    anomaly_source: str
    calibration: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["accept_threshold"] = None if not math.isfinite(self.accept_threshold) else self.accept_threshold
        d["flag_threshold"] = None if not math.isfinite(self.flag_threshold) else self.flag_threshold
        return d

    @property
    def guarantee(self) -> str:
        return (f"with probability ≥ {1 - self.delta:g} over the {self.n_calibration} calibration cells, the error "
                f"rate among accepted cells is ≤ {self.target_error:g}; a cell of a trained class is flagged with "
                f"probability ≤ {self.target_flag_rate:g}; both assume new cells exchangeable with the calibration "
                "cells")


def read_classification_table(table: pd.DataFrame, *, name: str = "table") -> pd.DataFrame:
    """The columns triage needs, from either classifier's output: ``id``, ``predicted``, ``confidence``,
    ``anomaly`` (the diffusion classifier's ``anomaly_score``; otherwise the predictive entropy of the probability
    columns), ``anomaly_source`` in ``attrs``, and ``label`` if present."""
    cols = set(table.columns)
    ident = next((c for c in _ID_COLUMNS if c in cols), None)
    pred = next((c for c in _PRED_COLUMNS if c in cols), None)
    missing = [what for what, c in (("'pred_class' or 'predicted'", pred), ("'confidence'", "confidence" if
                                                                             "confidence" in cols else None)) if c is None]
    if missing:
        raise ValueError(f"{name}: no column {' or '.join(missing)}; give the CSV/Parquet written by "
                         "`cytomodel classify` or `cytomodel baseline predict`")
    out = pd.DataFrame({"id": table[ident].astype(str) if ident else np.arange(len(table)).astype(str),
                        "predicted": table[pred].astype(str).where(table[pred].notna(), ""),
                        "confidence": pd.to_numeric(table["confidence"], errors="coerce")})
    if "anomaly_score" in cols:
        out["anomaly"] = pd.to_numeric(table["anomaly_score"], errors="coerce")
        source = ("anomaly_score (the classifier's own: the diffusion classifier's −ζ, best-error, class-gain or a "
                  "texture score, or "
                  "a distilled student's: the entropy of its probabilities or its estimate of its teacher's)")
    else:
        probs = [c for c in table.columns if c.startswith(_PROB_PREFIXES)]
        if not probs:
            raise ValueError(f"{name}: no 'anomaly_score' and no probability columns (prob_<class> or p_<class>) "
                             "to score abnormality from")
        out["anomaly"] = ct.predictive_entropy(table[probs].to_numpy(dtype=np.float64))
        source = "predictive entropy of the class probabilities"
    if "label" in cols:
        out["label"] = table["label"].astype(str)
    # a cell the classifier could not frame (two cells, no cell, …) keeps its row without a prediction; it is
    # nobody's answer, so triage sends it to review with its reason (and calibration leaves it out)
    status = table["framing_status"].astype(str) if "framing_status" in cols else pd.Series("ok", index=table.index)
    unframed = (table[pred].isna() & ~status.isin(FRAMED_STATUSES)).to_numpy()
    out["unclassified"] = np.where(unframed, "not framed: " + status, "")
    bad = out[["confidence", "anomaly"]].isna().any(axis=1) & ~unframed
    if bad.any():
        raise ValueError(f"{name}: {int(bad.sum())} row(s) have no numeric confidence/anomaly (first: "
                         f"{out['id'][bad].iloc[0]}); re-run the classifier on them")
    out.attrs["anomaly_source"] = source
    return out


def _conformal_upper(scores: np.ndarray, alpha: float) -> float:
    """The split-conformal threshold: a new exchangeable score exceeds it with probability ≤ alpha."""
    n = len(scores)
    k = math.ceil((n + 1) * (1 - alpha))
    if k > n:   # too few calibration cells for this alpha: never flag
        return math.inf
    return float(np.sort(scores)[k - 1])


def _binomial_p_value(errors: int, accepted: int, target: float) -> float:
    """P(Binomial(accepted, target) ≤ errors): small when the error rate among accepted is below the target."""
    from scipy.stats import binom  # scipy: triage runs from tables, without the model's imports; load on use
    return float(binom.cdf(errors, accepted, target)) if accepted else 1.0


def fit_triage(calibration: pd.DataFrame, *, target_error: float = 0.01, target_flag_rate: float = 0.02,
               delta: float = 0.1, name: str = "calibration table") -> TriageRule:
    """Fit the flag and accept thresholds on labelled calibration cells (see the module docstring)."""
    for what, v, lo, hi in (("target_error", target_error, 0, 1), ("target_flag_rate", target_flag_rate, 0, 1),
                            ("delta", delta, 0, 1)):
        if not lo < v < hi:
            raise ValueError(f"{what} must be in ({lo}, {hi}), got {v}")
    cal = read_classification_table(calibration, name=name)
    n_unframed = int((cal["unclassified"] != "").sum())
    cal = cal[cal["unclassified"] == ""]
    if "label" not in cal:
        raise ValueError(f"{name}: no 'label' column; calibration needs labelled cells (classify a split of a "
                         "dataset with a manifest, e.g. --split val)")
    if len(cal) < 10:
        raise ValueError(f"{name}: {len(cal)} labelled cells are too few to calibrate on (use the val split)")
    flag_t = _conformal_upper(cal["anomaly"].to_numpy(), target_flag_rate)
    kept = cal[~(cal["anomaly"] > flag_t)]
    wrong = (kept["predicted"] != kept["label"]).to_numpy()
    conf = kept["confidence"].to_numpy()
    order = np.argsort(-conf, kind="stable")
    conf_sorted, wrong_sorted = conf[order], wrong[order]
    # candidate thresholds: each distinct confidence, strictest first; at threshold t every cell with conf ≥ t is in
    distinct = np.unique(conf_sorted)[::-1]
    n_at = np.searchsorted(-conf_sorted, -distinct, side="right")      # cells with conf ≥ t
    err_at = np.concatenate([[0], np.cumsum(wrong_sorted)])[n_at]
    # thresholds accepting fewer cells than could ever reject H0 (even with no error) are not tested; the order
    # and the starting point depend on the confidences only, not on the labels, so the test stays valid given them
    m_min = math.ceil(math.log(delta) / math.log1p(-target_error))
    accept_t, tested = math.inf, 0
    for t, m, k in zip(distinct, n_at, err_at):
        if m < m_min:
            continue
        tested += 1
        if _binomial_p_value(int(k), int(m), target_error) > delta:
            break
        accept_t = float(t)
    acc = kept["confidence"] >= accept_t
    info = {"n_flagged": int((cal["anomaly"] > flag_t).sum()), "n_accepted": int(acc.sum()),
            "coverage": float(acc.mean() * len(kept) / len(cal)),
            "error_among_accepted": float(wrong[acc.to_numpy()].mean()) if acc.any() else None,
            "thresholds_tested": tested, "min_accepted_to_test": m_min,
            "n_not_framed_left_out": n_unframed}
    return TriageRule(accept_t, flag_t, target_error, target_flag_rate, delta, len(cal),
                      cal.attrs["anomaly_source"], info)


def apply_triage(table: pd.DataFrame, rule: TriageRule, *, name: str = "table") -> pd.DataFrame:
    """One row per cell: id, decision (accept / review / flag), class (the accepted class, else empty), confidence,
    anomaly score, why; plus label and correct where the table is labelled."""
    t = read_classification_table(table, name=name)
    unframed = (t["unclassified"] != "").to_numpy()
    flag = (t["anomaly"] > rule.flag_threshold).to_numpy() & ~unframed
    accept = ~flag & ~unframed & (t["confidence"] >= rule.accept_threshold).to_numpy()
    decision = np.where(flag, "flag", np.where(accept, "accept", "review"))
    why = np.where(
        flag, [f"anomaly {a:.3g} > {rule.flag_threshold:.3g}: unlike the trained classes" for a in t["anomaly"]],
        np.where(accept, [f"confidence {c:.3f} ≥ {rule.accept_threshold:.3f}" for c in t["confidence"]],
                 np.where(unframed, t["unclassified"] + " (no prediction)",
                          [f"confidence {c:.3f} < {rule.accept_threshold:.3f}: uncertain between {p} and others"
                           for c, p in zip(t["confidence"], t["predicted"])])))
    out = pd.DataFrame({"id": t["id"], "decision": decision, "class": np.where(accept, t["predicted"], ""),
                        "predicted": t["predicted"], "confidence": t["confidence"], "anomaly_score": t["anomaly"],
                        "why": why})
    if "label" in t:
        out["label"] = t["label"]
        out["correct"] = t["predicted"] == t["label"]
    return out


def summarise_triage(decisions: pd.DataFrame, *, classes: Sequence[str] | None = None) -> dict[str, Any]:
    """Coverage, flag and review rates; with labels, the error among accepted (with a Clopper–Pearson 95 % CI) and,
    for ``classes`` (e.g. a held-out class), where those cells went."""
    from scipy.stats import beta  # scipy: loaded on use (see _binomial_p_value)

    n = len(decisions)
    share = {d: float((decisions["decision"] == d).mean()) if n else 0.0 for d in DECISIONS}
    out: dict[str, Any] = {"n": n, "coverage": share["accept"], "review_rate": share["review"],
                           "flag_rate": share["flag"]}
    if "correct" in decisions:
        acc = decisions[decisions["decision"] == "accept"]
        k, m = int((~acc["correct"]).sum()), len(acc)
        lo = float(beta.ppf(0.025, k, m - k + 1)) if k > 0 else 0.0
        hi = float(beta.ppf(0.975, k + 1, m - k)) if k < m else 1.0
        out.update({"n_accepted": m, "errors_among_accepted": k,
                    "error_among_accepted": k / m if m else None, "error_ci95": [lo, hi] if m else None,
                    "accuracy_all": float(decisions["correct"].mean()) if n else None})
        if classes:
            for c in classes:
                sub = decisions[decisions["label"] == c]
                out.setdefault("by_label", {})[c] = {
                    "n": len(sub), **{d: float((sub["decision"] == d).mean()) if len(sub) else None
                                      for d in DECISIONS}}
            known, dropped = without_labels(decisions, classes)
            if dropped:  # what the guarantees are about: cells of the trained classes
                out["trained_classes"] = summarise_triage(known)
    return out


def without_labels(table: pd.DataFrame, labels: Sequence[str]) -> tuple[pd.DataFrame, int]:
    """``table`` without the cells labelled one of ``labels``, and how many were dropped.

    Why: a calibration split holds cells of a class the model never saw (a held-out class); they are what flagging is
    for, not what its false-flag rate or the error bound is calibrated on."""
    if not labels or "label" not in table.columns:
        return table, 0
    keep = ~table["label"].astype(str).isin([str(x) for x in labels]).to_numpy()
    return table[keep], int((~keep).sum())


def selective_risk_curve(table: pd.DataFrame, *, name: str = "table") -> pd.DataFrame:
    """Coverage and error among accepted as the confidence threshold loosens (labelled table; no flagging)."""
    t = read_classification_table(table, name=name)
    if "label" not in t:
        raise ValueError(f"{name}: a risk–coverage curve needs a 'label' column")
    n_all = len(t)
    t = t[t["unclassified"] == ""]        # cells that could not be framed are never accepted (coverage of all cells)
    order = np.argsort(-t["confidence"].to_numpy(), kind="stable")
    wrong = (t["predicted"] != t["label"]).to_numpy()[order]
    m = np.arange(1, len(t) + 1)
    return pd.DataFrame({"threshold": t["confidence"].to_numpy()[order], "coverage": m / max(n_all, 1),
                         "selective_risk": np.cumsum(wrong) / m})


def plot_risk_coverage(curves: Mapping[str, pd.DataFrame], points: Mapping[str, Mapping[str, float]] | None = None,
                       targets: Sequence[float] = ()):
    """The risk–coverage figure: one line per classifier, its triage operating point as a marker."""
    # matplotlib (headless): only for the figure, ~1 s to import
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3.6, 2.8), constrained_layout=True)
    for i, (label, c) in enumerate(curves.items()):
        line, = ax.plot(c["coverage"], c["selective_risk"] * 100, lw=1.2, label=label)
        if points and label in points:
            p = points[label]
            ax.plot([p["coverage"]], [p["error"] * 100], "o", color=line.get_color(), ms=4)
    for t in targets:
        ax.axhline(t * 100, color="grey", lw=0.6, ls="--")
    ax.set_xlabel("coverage (share of cells accepted)")
    ax.set_ylabel("error among accepted (%)")
    ax.set_xlim(0, 1)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7, frameon=False)
    return fig


def run_triage(out: str | Path, tables: Mapping[str, tuple[pd.DataFrame, pd.DataFrame]], *,
               target_error: float = 0.01, target_flag_rate: float = 0.02, delta: float = 0.1,
               report_targets: Sequence[float] = (0.01, 0.02), held_out: Sequence[str] = (),
               sources: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Fit on each classifier's calibration table, triage its cells table and write, into ``out``:
    ``decisions_<name>.csv`` (one row per cell), ``triage.json`` (rules, guarantees, summaries, the coverage each
    classifier reaches at every target in ``report_targets``, provenance) and ``risk_coverage.pdf|png``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    curves, points = {}, {}
    for name, (cal, cells) in tables.items():
        cal, dropped = without_labels(cal, held_out)
        rule = fit_triage(cal, target_error=target_error, target_flag_rate=target_flag_rate, delta=delta,
                          name=f"{name} calibration table")
        dec = apply_triage(cells, rule, name=f"{name} cells table")
        with atomic_output(out / f"decisions_{name}.csv") as tmp:
            dec.to_csv(tmp, index=False)
        summary = summarise_triage(dec, classes=held_out)
        at_targets = {}
        for t in report_targets:
            r = fit_triage(cal, target_error=t, target_flag_rate=target_flag_rate, delta=delta)
            at_targets[f"{t:g}"] = summarise_triage(apply_triage(cells, r), classes=held_out)
        results[name] = {"rule": rule.to_dict(), "guarantee": rule.guarantee, "summary": summary,
                         "at_targets": at_targets, "calibration_cells_of_held_out_classes_left_out": dropped}
        if "correct" in dec:
            curves[name] = selective_risk_curve(cells, name=f"{name} cells table")
            points[name] = {"coverage": summary["coverage"], "error": summary["error_among_accepted"] or 0.0}
    if curves:
        fig = plot_risk_coverage(curves, points, targets=[target_error])
        for ext in ("pdf", "png"):
            with atomic_output(out / f"risk_coverage.{ext}") as tmp:
                fig.savefig(tmp, format=ext, dpi=300)
    record = {"target_error": target_error, "target_flag_rate": target_flag_rate, "delta": delta,
              "held_out": list(held_out), "classifiers": results, "sources": dict(sources or {}),
              **provenance_record()}
    write_json(out / "triage.json", record)
    return record
