"""The reader-study analysis reviewers of diagnostic-imaging papers ask for: reader-averaged empirical AUC with
readers and cases random (multi-reader multi-case, Obuchowski–Rockette with Hillis' ddf, :mod:`analysis.mrmc`),
for the experts and for experts − model on the same cases, and the readers × cases needed for a given AUC
difference.  Model-free (no sampling).

Authenticity: each answer and its confidence become one rating on a 2K-point scale from "surely real" to "surely
synthetic"; the AUC is P(a synthetic image is rated more synthetic than a real one).  The model's rating is its
anomaly score.  Classification: the AUC with which a reader's confidence separates that reader's correct from
incorrect class calls (a type-2 AUC; each reader has their own truth, so the covariances are jackknifed); the
model's confidence is its top probability.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import prepare
from ..figstyle import EXPERT, GREY, MODEL, new_figure, save_figure
from ..markdown import md_table
from ..mrmc import ReaderAUCs, reader_aucs, single_test, sizing
from .base import Context, Skipped, Step, StepResult

MIN_CASES = 10   # of each truth state, per reader


@dataclass
class MRMCResult(StepResult):
    summary: pd.DataFrame = field(default_factory=pd.DataFrame)
    readers: pd.DataFrame = field(default_factory=pd.DataFrame)
    sizing: pd.DataFrame = field(default_factory=pd.DataFrame)


def needs_mrmc(ctx: Context) -> str | None:
    if not ctx.has_experts:
        return "the table has no human answers: there are no readers"
    if ctx.auth["participant_id"].nunique() < 2:
        return "the random-reader analysis needs at least 2 readers"
    return None


def _crossed(d: pd.DataFrame, rating: pd.Series) -> pd.DataFrame:
    """(reader × case) ratings over the cases every reader rated (the OR analysis here is for a factorial design)."""
    wide = pd.DataFrame({"r": d["participant_id"].to_numpy(), "c": d["stimulus_id"].to_numpy(),
                         "x": rating.to_numpy()}).pivot_table(index="r", columns="c", values="x", aggfunc="first")
    return wide.dropna(axis=1)


def _auth_data(ctx: Context):
    """Ratings (J, N), truth (N,), the model's ratings (1, N) or None, case ids, dropped-case count."""
    K = ctx.K
    d = prepare.auth_subset(ctx.auth, ctx.cfg.sdt_synthetic)
    d = d[(d["source"] == "real") | (d["morph_strength"] >= 1.0)]
    lev = d["auth_confidence_level"].astype(int)
    rating = pd.Series(np.where(d["auth_response"] == "synthetic", K + lev, K + 1 - lev), index=d.index)
    wide = _crossed(d, rating)
    dropped = d["stimulus_id"].nunique() - wide.shape[1]
    mod = ctx.model
    if mod is not None:
        ms = mod.set_index("stimulus_id")
        keep = [c for c in wide.columns if c in ms.index and np.isfinite(ms.at[c, "model_anomaly"])]
        dropped += wide.shape[1] - len(keep)
        wide = wide[keep]
    src = d.drop_duplicates("stimulus_id").set_index("stimulus_id")["source"]
    truth = (src.loc[wide.columns] == "synthetic").to_numpy()
    model = None if mod is None else ms.loc[wide.columns, "model_anomaly"].to_numpy(float)[None, :]
    return wide, truth, model, dropped


def _class_data(ctx: Context):
    """Type-2: confidence (J, N), each reader's correctness (J, N), the model's, case ids, dropped cases."""
    d = ctx.cls
    wide = _crossed(d, d["class_confidence_level"].astype(float))
    corr = _crossed(d, pd.Series(prepare.is_correct_class(d).astype(float), index=d.index)).loc[wide.index,
                                                                                                 wide.columns]
    dropped = d["stimulus_id"].nunique() - wide.shape[1]
    mod = ctx.model
    model = mcorr = None
    if mod is not None:
        ms = mod.set_index("stimulus_id")
        keep = [c for c in wide.columns if c in ms.index]
        dropped += wide.shape[1] - len(keep)
        wide, corr = wide[keep], corr[keep]
        model = ms.loc[keep, "model_confidence"].to_numpy(float)[None, :]
        mcorr = ms.loc[keep, "class_correct"].to_numpy(bool)[None, :]
    return wide, corr.to_numpy(bool), model, mcorr, dropped


def _usable(truth: np.ndarray) -> np.ndarray:
    t = np.atleast_2d(truth)
    return (t.sum(axis=1) >= MIN_CASES) & ((~t).sum(axis=1) >= MIN_CASES)


def _rows(task: str, what: str, humans: ReaderAUCs, model: ReaderAUCs | None, alpha: float, cov: str,
          notes: list[str]) -> list[dict]:
    h = single_test(humans, alpha=alpha, null=0.5, cov=cov)
    rows = [{"task": task, "figure_of_merit": what, "comparison": "experts (reader mean)", **h}]
    if model is not None:
        v = float(model.cov("jackknife")[0, 0])
        from scipy import stats
        q = stats.norm.ppf(1 - alpha / 2)
        a = float(model.auc[0])
        rows.append({"task": task, "figure_of_merit": what, "comparison": "model (one fixed reader)", "estimate": a,
                     "se": v**0.5, "df": float("inf"), "lo": a - q * v**0.5, "hi": a + q * v**0.5,
                     "t": (a - 0.5) / v**0.5 if v > 0 else float("nan"),
                     "p": float(2 * stats.norm.sf(abs(a - 0.5) / v**0.5)) if v > 0 else float("nan"),
                     "readers": 1, "cases": h["cases"]})
        diff = single_test(humans - model, alpha=alpha, null=0.0, cov="jackknife")
        rows.append({"task": task, "figure_of_merit": what, "comparison": "experts − model", **diff})
    return rows


def run_mrmc(ctx: Context) -> MRMCResult:
    cfg = ctx.cfg
    res = MRMCResult("mrmc")
    rows, per = [], []
    wide, truth, model, dropped = _auth_data(ctx)
    if dropped:
        res.notes.append(f"authenticity: {dropped} images left out (not rated by every reader, or without a model "
                         "score): the analysis here is for a fully crossed design.")
    if _usable(truth).all() and wide.shape[0] >= 2:
        hum = reader_aucs(wide.to_numpy(float), truth)
        mod = reader_aucs(model, truth) if model is not None else None
        rows += _rows("authenticity", "AUC synthetic vs real (answer × confidence, 2K levels)", hum, mod,
                      cfg.mrmc_alpha, "jackknife", res.notes)
        per += [{"task": "authenticity", "reader": r, "auc": a} for r, a in zip(wide.index, hum.auc)]
        if mod is not None:
            per.append({"task": "authenticity", "reader": "model", "auc": float(mod.auc[0])})
            pilot = single_test(hum - mod, alpha=cfg.mrmc_alpha)
            res.sizing = sizing(pilot, cfg.mrmc_effect, cfg.mrmc_readers, cfg.mrmc_cases, alpha=cfg.mrmc_alpha)
    else:
        res.notes.append(f"authenticity: fewer than {MIN_CASES} real or synthetic images read by every reader; no "
                         "MRMC analysis.")
    if len(ctx.cls):
        cwide, corr, cmodel, mcorr, cdrop = _class_data(ctx)
        ok = _usable(corr)
        if (~ok).any():
            res.notes.append(f"classification: readers {', '.join(map(str, cwide.index[~ok]))} left out of the type-2 "
                             f"AUC (fewer than {MIN_CASES} correct or {MIN_CASES} incorrect calls).")
        if ok.sum() >= 2:
            hum = reader_aucs(cwide.to_numpy(float)[ok], corr[ok])
            mod = reader_aucs(cmodel, mcorr) if cmodel is not None and _usable(mcorr).all() else None
            rows += _rows("classification", "type-2 AUC: confidence, correct vs incorrect calls", hum, mod,
                          cfg.mrmc_alpha, "jackknife", res.notes)
            per += [{"task": "classification", "reader": r, "auc": a} for r, a in zip(cwide.index[ok], hum.auc)]
            if mod is not None:
                per.append({"task": "classification", "reader": "model", "auc": float(mod.auc[0])})
    if not rows:   # e.g. raters who saw different images: a fact of the design, not an error
        return Skipped("mrmc", reason="no task has enough images read by every reader (the MRMC analysis is for a "
                                      "fully crossed design): " + " ".join(res.notes))
    res.summary, res.readers = pd.DataFrame(rows), pd.DataFrame(per)
    res.tables = {"mrmc": res.summary, "mrmc_readers": res.readers}
    if not res.sizing.empty:
        res.tables["mrmc_sizing"] = res.sizing
    return res


def figures_mrmc(res: MRMCResult, out, meta) -> dict:
    tasks = list(dict.fromkeys(res.readers["task"]))
    fig, axes = new_figure(1.6, ncols=len(tasks), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        p = res.readers[res.readers["task"] == task]
        hum = p[p["reader"] != "model"]
        ax.plot(hum["auc"], np.zeros(len(hum)) + np.linspace(-0.15, 0.15, len(hum)), "o", color=EXPERT, ms=2.5,
                label="reader")
        s = res.summary[res.summary["task"] == task].set_index("comparison")
        e = s.loc["experts (reader mean)"]
        ax.plot([e["lo"], e["hi"]], [0.5, 0.5], color=EXPERT, lw=1.6)
        ax.plot(e["estimate"], 0.5, "D", color=EXPERT, ms=4, label="reader mean (95 %, OR/Hillis)")
        if "model (one fixed reader)" in s.index:
            m = s.loc["model (one fixed reader)"]
            ax.plot([m["lo"], m["hi"]], [1, 1], color=MODEL, lw=1.6)
            ax.plot(m["estimate"], 1, "s", color=MODEL, ms=4, label="model")
        ax.axvline(0.5, color=GREY, lw=0.6, ls="--")
        ax.set_yticks([])
        ax.set_xlabel("AUC" if task == "authenticity" else "type-2 AUC")
        ax.set_title(task, loc="left", fontweight="bold")
    axes[0][0].legend(fontsize=5, loc="lower left")
    return {"mrmc": save_figure(fig, out, "fig_mrmc", meta)}


def section_mrmc(res: MRMCResult, figs: dict, cfg) -> list[str]:
    s = res.summary.copy()
    show = s[["task", "comparison", "estimate", "se", "df", "lo", "hi", "p", "readers", "cases"]].rename(
        columns={"lo": f"{100 * (1 - cfg.mrmc_alpha):g} % lo", "hi": f"{100 * (1 - cfg.mrmc_alpha):g} % hi"})
    L = ["Readers and cases random (Obuchowski–Rockette, Hillis' denominator df; covariances by jackknifing cases). "
         "Authenticity: AUC of real vs synthetic from each answer and its confidence on one 2K-point scale (p: mean AUC "
         "= 0.5). Classification: type-2 AUC — how well confidence separates a reader's correct from incorrect class "
         "calls. *experts − model*: the mean over readers of AUC(reader) − AUC(model) on the same cases, the model "
         "one fixed reader (p: difference = 0).\n", md_table(show) + "\n"]
    L += [f"- {n}" for n in res.notes]
    if res.notes:
        L.append("")
    if not res.sizing.empty:
        z = res.sizing
        L.append(f"Sizing (experts − model, authenticity): power of the test at α = {cfg.mrmc_alpha:g} to detect an AUC "
                 f"difference of {z['effect'].iloc[0]:g}, from this study's variance components (case variances "
                 "scaled to the number of cases):\n")
        L.append(md_table(z.pivot_table(index="readers", columns="cases", values="power").round(2).reset_index()) + "\n")
    if "mrmc" in figs:
        L.append("![MRMC](figures/fig_mrmc.png)\n")
    L.append("Per-reader AUCs: `tables/mrmc_readers.csv`.\n")
    return L


MRMC_STEP = Step("mrmc", "Reader study: reader-averaged AUC, experts vs model (MRMC)", "mrmc", needs_mrmc, run_mrmc,
                 figures_mrmc, section_mrmc)
