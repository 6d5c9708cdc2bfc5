"""Does confidence track correctness? Model-free metacognition of experts and model: type-2 AUROC and ROC,
calibration (ECE, Brier, reliability), confident-error rates.  No sampling."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import metrics, prepare
from ..figstyle import EXPERT, GREY, MODEL, new_figure, save_figure
from ..markdown import md_table
from ..prepare import ConfidenceMap
from .base import Context, Step, StepResult

TASKS = ("authenticity", "classification")


@dataclass
class ObservedMetacognition(StepResult):
    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    roc: dict[tuple[str, str], dict[str, tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)
    reliability: dict[tuple[str, str], pd.DataFrame] = field(default_factory=dict)
    confidence_maps: dict[str, ConfidenceMap] = field(default_factory=dict)


def needs_observed(ctx: Context) -> str | None:
    if not ctx.has_experts and ctx.model is None:
        return "the table has neither human answers nor model outputs"
    return None


def _expert_rows(ctx: Context, res: ObservedMetacognition) -> list[dict]:
    K, C, cfg = ctx.K, ctx.C, ctx.cfg
    da, dc = ctx.auth, ctx.cls
    # an export records the level alone (no raw column): read as it is; a table made elsewhere may carry raw values
    pa, res.confidence_maps["authenticity"] = prepare.confidence_probability(
        da.get("auth_confidence"), da["auth_confidence_level"], K, 0.5, cfg.confidence_scale)
    pc, res.confidence_maps["classification"] = prepare.confidence_probability(
        dc.get("class_confidence"), dc["class_confidence_level"], K, 1 / C, cfg.confidence_scale)
    rows = []
    for task, d, corr, lev, prob in (
            ("authenticity", da, (da["auth_response"] == da["source"]).to_numpy(),
             da["auth_confidence_level"].to_numpy(), pa),
            ("classification", dc, prepare.is_correct_class(dc), dc["class_confidence_level"].to_numpy(), pc)):
        if not len(d):
            continue
        res.roc[("experts", task)] = {}
        for pid in sorted(d["participant_id"].unique()):
            msk = (d["participant_id"] == pid).to_numpy()
            ce = metrics.confident_errors(corr[msk], lev[msk], K)
            cal = metrics.calibration(prob[msk], corr[msk], bins=sorted(np.unique(prob)))
            rows.append({"observer": pid, "group": "expert", "task": task, "n": int(msk.sum()),
                         "accuracy": float(corr[msk].mean()), "type2_auroc": metrics.type2_auroc(corr[msk], lev[msk]),
                         "ece": cal["ece"], "brier": cal["brier"], "confident_error_rate": ce["rate_all"],
                         "error_rate_at_top_conf": ce["rate_top"]})
            res.roc[("experts", task)][pid] = metrics.type2_roc(corr[msk], lev[msk], K)
        ce = metrics.confident_errors(corr, lev, K)
        cal = metrics.calibration(prob, corr, bins=sorted(np.unique(prob)))
        rows.append({"observer": "all experts", "group": "expert", "task": task, "n": len(corr),
                     "accuracy": float(corr.mean()), "type2_auroc": metrics.type2_auroc(corr, lev),
                     "ece": cal["ece"], "brier": cal["brier"], "confident_error_rate": ce["rate_all"],
                     "confident_error_rate_95": f"[{ce['rate_all_lo']:.4f}, {ce['rate_all_hi']:.4f}]",
                     "error_rate_at_top_conf": ce["rate_top"]})
        res.roc[("experts", task)]["pooled"] = metrics.type2_roc(corr, lev, K)
        res.reliability[("experts", task)] = cal["curve"]
    return rows


def _model_rows(ctx: Context, res: ObservedMetacognition) -> list[dict]:
    mod, K = ctx.model, ctx.K
    rows = []
    for task, corr, conf, lev_q, lev_top, prob in (
            ("authenticity", mod["auth_correct"].to_numpy(), mod["auth_conf"].to_numpy(),
             mod["auth_level_q"].to_numpy(), mod["auth_level_q"].to_numpy(), None),
            ("classification", mod["class_correct"].to_numpy(), mod["model_confidence"].to_numpy(),
             mod["class_level_q"].to_numpy(), mod["class_level_fixed"].to_numpy(), mod["model_confidence"].to_numpy())):
        ce = metrics.confident_errors(corr, lev_top, K)
        row = {"observer": "model", "group": "model", "task": task, "n": len(corr), "accuracy": float(corr.mean()),
               "type2_auroc": metrics.type2_auroc(corr, conf), "confident_error_rate": ce["rate_all"],
               "confident_error_rate_95": f"[{ce['rate_all_lo']:.4f}, {ce['rate_all_hi']:.4f}]",
               "error_rate_at_top_conf": ce["rate_top"], "confident_errors": ce["confident_errors"],
               "confident_error_upper95": ce["rate_all_upper95"]}
        if prob is not None:
            cal = metrics.calibration(prob, corr, bins=10)
            row.update({"ece": cal["ece"], "brier": cal["brier"]})
            res.reliability[("model", task)] = cal["curve"]
            P = mod[[f"model_prob_{k}" for k in ctx.all_classes]].to_numpy()
            Y = (mod["true_class"].to_numpy()[:, None] == np.asarray(ctx.all_classes)[None, :]).astype(float)
            row["brier_multiclass"] = float(np.mean(np.sum((P - Y) ** 2, axis=1)))
        rows.append(row)
        res.roc[("model", task)] = {"model": metrics.type2_roc(corr, lev_q, K)}
    return rows


def run_observed(ctx: Context) -> ObservedMetacognition:
    res = ObservedMetacognition("metacognition_observed")
    rows = (_expert_rows(ctx, res) if ctx.has_experts else []) + (_model_rows(ctx, res) if ctx.model is not None
                                                                    else [])
    res.table = pd.DataFrame(rows)
    res.tables = {"metacognition_observed": res.table}
    if not ctx.has_experts:
        res.notes.append("no human answers: the model's metrics only.")
    if ctx.model is None:
        res.notes.append("no model outputs: the experts' metrics only.")
    return res


def _label(ax, title: str, xlabel: str, ylabel: str, legend: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, loc="left", fontweight="bold")
    ax.set_aspect("equal")
    ax.legend(loc=legend, fontsize=5)


def figures_observed(res: ObservedMetacognition, out, meta) -> dict:
    figs = {}
    fig, axes = new_figure(1.8, ncols=2)
    for ax, task, letter in ((axes[0], "authenticity", "a"), (axes[1], "classification", "b")):
        ax.plot([0, 1], [0, 1], color=GREY, lw=0.6, ls="--")
        for pid, (f, h) in res.roc.get(("experts", task), {}).items():
            if pid != "pooled":
                ax.plot(np.r_[f, 1], np.r_[h, 1], color=EXPERT, lw=0.4, alpha=0.4)
        if ("experts", task) in res.roc:
            f, h = res.roc[("experts", task)]["pooled"]
            ax.plot(np.r_[f, 1], np.r_[h, 1], "o-", color=EXPERT, ms=2, label="experts (pooled)")
        if ("model", task) in res.roc:
            f, h = res.roc[("model", task)]["model"]
            ax.plot(np.r_[f, 1], np.r_[h, 1], "s-", color=MODEL, ms=2, label="model")
        _label(ax, f"{letter}  {task}", "P(conf ≥ k | error)", "P(conf ≥ k | correct)", "lower right")
    figs["type2_roc"] = save_figure(fig, out, "fig_type2_roc", meta)
    fig, axes = new_figure(1.8, ncols=2)
    for ax, task, letter in ((axes[0], "authenticity", "a"), (axes[1], "classification", "b")):
        ax.plot([0, 1], [0, 1], color=GREY, lw=0.6, ls="--")
        for who, color, mk in (("experts", EXPERT, "o"), ("model", MODEL, "s")):
            c = res.reliability.get((who, task))
            if c is None or c.empty:
                continue
            ax.errorbar(c["confidence"], c["accuracy"], yerr=[(c["accuracy"] - c["acc_lo"]).clip(lower=0),
                                                              (c["acc_hi"] - c["accuracy"]).clip(lower=0)],
                        fmt=mk + "-", color=color, ms=2.5, lw=0.8, elinewidth=0.5, capsize=0, label=who)
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.02)
        _label(ax, f"{letter}  {task}", "stated confidence", "accuracy", "upper left")
    figs["reliability"] = save_figure(fig, out, "fig_reliability", meta)
    return figs


def section_observed(res: ObservedMetacognition, figs: dict, cfg) -> list[str]:
    L = [f"Confidence → probability: {m.description} ({task})." for task, m in res.confidence_maps.items()]
    t = res.table
    pooled = t[t["observer"].isin(["all experts", "model"])]
    L += ["", md_table(pooled.drop(columns=[c for c in ("group",) if c in pooled])) + "\n"]
    if "model" in set(t["observer"]):
        m = t[(t["observer"] == "model") & (t["task"] == "classification")].iloc[0]
        L.append(f"The model was confidently wrong (top confidence level) on {int(m['confident_errors'])} of "
                 f"{int(m['n'])} stimuli; 95 % upper bound on its confident-error rate: "
                 f"{m['confident_error_upper95']:.4f}.\n")
    for name in ("type2_roc", "reliability"):
        if name in figs:
            L.append(f"![{name}](figures/fig_{name}.png)\n")
    return L


OBSERVED_STEP = Step("metacognition_observed", "Does confidence track correctness? (model-free)", None,
                     needs_observed, run_observed, figures_observed, section_observed)
