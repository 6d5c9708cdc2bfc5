"""Experts vs model on the same stimuli: agreement and confusion (model-free), and the accuracy difference with
shared stimulus difficulty (probit model)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cytocore.schema import CANNOT_TELL

from .. import metrics, prepare
from ..figstyle import GREY, new_figure, save_figure
from ..fitting import Fit, draws
from ..markdown import md_table
from ..models import build_difference_model
from .base import Context, Step, StepResult, dispersion_ppc, ppc_table, summary_table


@dataclass
class AgreementResult(StepResult):
    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    confusion: dict[str, pd.DataFrame] = field(default_factory=dict)   # "experts" / "model" → counts


@dataclass
class DifferenceResult(StepResult):
    fits_by_task: dict[str, Fit] = field(default_factory=dict)
    difference: dict[str, np.ndarray] = field(default_factory=dict)    # task → posterior draws model − experts


def needs_agreement(ctx: Context) -> str | None:
    if not ctx.has_experts and ctx.model is None:
        return "the table has neither human answers nor model outputs"
    return None


def run_agreement(ctx: Context) -> AgreementResult:
    mod, rows = ctx.model, []
    res = AgreementResult("agreement")
    for task in ("authenticity", "classification"):
        col, truth, mt = (("auth_response", "source", "auth_response") if task == "authenticity"
                          else ("class_response", "true_class", "model_pred_class"))
        if ctx.has_experts:
            d = ctx.auth if task == "authenticity" else ctx.cls
            m_ans = None
            if mod is not None:
                d = d[d["stimulus_id"].isin(mod["stimulus_id"])]
                m_ans = d["stimulus_id"].map(dict(zip(mod["stimulus_id"], mod[mt])))
            per = []
            for pid, g in d.groupby("participant_id"):
                per.append({"task": task, "observer": pid, "n": len(g), "accuracy": float((g[col] == g[truth]).mean()),
                            "kappa_vs_truth": metrics.cohen_kappa(g[col], g[truth]),
                            "kappa_vs_model": metrics.cohen_kappa(g[col], m_ans[g.index]) if m_ans is not None
                            else float("nan")})
            rows += per
            if per:
                p = pd.DataFrame(per)
                rows.append({"task": task, "observer": "experts (mean over raters)", "n": int(p["n"].sum()),
                             "accuracy": float(p["accuracy"].mean()), "kappa_vs_truth": float(p["kappa_vs_truth"].mean()),
                             "kappa_vs_model": float(p["kappa_vs_model"].mean())})
        if mod is not None:
            rows.append({"task": task, "observer": "model", "n": len(mod),
                         "accuracy": float((mod[mt] == mod[truth]).mean()),
                         "kappa_vs_truth": metrics.cohen_kappa(mod[mt], mod[truth]), "kappa_vs_model": 1.0})
    res.table = pd.DataFrame(rows)
    if ctx.has_experts:
        dc = ctx.cls
        res.confusion["experts"] = metrics.confusion(
            dc["true_class"], dc["class_response"], ctx.classes,
            extra=[CANNOT_TELL] if (dc["class_response"] == CANNOT_TELL).any() else [])
    if mod is not None:
        res.confusion["model"] = metrics.confusion(mod["true_class"], mod["model_pred_class"], ctx.classes)
    res.tables = {"agreement": res.table, **{f"confusion_{k}": v.reset_index() for k, v in res.confusion.items()}}
    return res


def figures_agreement(res: AgreementResult, out, meta) -> dict:
    keys = [k for k in ("experts", "model") if k in res.confusion]
    fig, axes = new_figure(2.0, ncols=len(keys), squeeze=False)
    for ax, key, letter in zip(axes[0], keys, "ab"):
        m = res.confusion[key]
        norm = m.div(m.sum(axis=1).replace(0, np.nan), axis=0).fillna(0)
        ax.imshow(norm.to_numpy(), cmap="Blues", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(m.shape[1]), [str(c)[:6] for c in m.columns], rotation=90, fontsize=5)
        ax.set_yticks(range(m.shape[0]), [str(c)[:6] for c in m.index], fontsize=5)
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                v = norm.iat[i, j]
                if v >= 0.005:
                    ax.text(j, i, f"{100 * v:.0f}", ha="center", va="center", fontsize=4,
                            color="white" if v > 0.6 else "black")
        ax.set_xlabel("answered")
        ax.set_ylabel("true class")
        ax.set_title(f"{letter}  {key}", loc="left", fontweight="bold")
        ax.spines[:].set_visible(False)
    return {"confusion": save_figure(fig, out, "fig_confusion", meta)}


def section_agreement(res: AgreementResult, figs: dict, cfg) -> list[str]:
    t = res.table
    L = [md_table(t[~t["observer"].astype(str).str.match(r"^r\d") | (t["observer"] == "model")]) + "\n",
         "Per-rater rows: `tables/agreement.csv`.\n"]
    if "confusion" in figs:
        L.append("![confusion](figures/fig_confusion.png)\n")
    return L


def needs_difference(ctx: Context) -> str | None:
    if ctx.model is None:
        return "the table has no model outputs (a human-only export): there is no model to compare with"
    if not ctx.has_experts:
        return "the table has no human answers: there are no experts to compare with"
    if not ctx.auth["stimulus_id"].isin(ctx.model["stimulus_id"]).any():
        return "no stimulus has both expert answers and model outputs"
    return None


def run_difference(ctx: Context) -> DifferenceResult:
    mod = ctx.model
    res = DifferenceResult("comparison")
    rows = []
    for task in ("authenticity", "classification"):
        d = ctx.auth if task == "authenticity" else ctx.cls
        d = d[d["stimulus_id"].isin(mod["stimulus_id"])]
        if task == "authenticity":
            y_h, y_m = (d["auth_response"] == d["source"]).to_numpy(int), mod["auth_correct"].to_numpy(int)
        else:
            y_h, y_m = prepare.is_correct_class(d).astype(int), mod["class_correct"].to_numpy(int)
        r_idx, raters = prepare._index(d["participant_id"])
        stimuli = list(mod["stimulus_id"])
        lut = {s: i for i, s in enumerate(stimuli)}
        model, meanings = build_difference_model(y_h, r_idx, d["stimulus_id"].map(lut).to_numpy(int), y_m,
                                                 np.arange(len(mod)), raters, stimuli,
                                                 obs_ids=prepare.response_ids(d), model_obs_ids=stimuli)
        fit = ctx.fit(f"difference_{task}", model, meanings)
        res.fits.append(fit)
        res.fits_by_task[task] = fit
        res.tables[f"ppc_difference_{task}"] = pd.concat(
            [ppc_table(fit, {"correct_experts": {"rater": np.asarray(raters)[r_idx]}}),
             dispersion_ppc(fit, "correct_experts", d["stimulus_id"].map(lut).to_numpy(int))], ignore_index=True)
        diff = draws(fit.idata, "difference")
        s = summary_table(fit, ["acc_experts", "acc_model", "difference", "delta", "sigma_rater", "sigma_stimulus"],
                          ctx.cfg.hdi_prob)
        s.insert(1, "task", task)
        s["P(model > experts)"] = np.where(s["parameter"] == "difference", float(np.mean(diff > 0)), np.nan)
        rows.append(s)
        res.difference[task] = diff
    res.tables["difference"] = pd.concat(rows, ignore_index=True)
    return res


def figures_difference(res: DifferenceResult, out, meta) -> dict:
    fig, ax = new_figure(1.5)
    for task, color in (("authenticity", "#009E73"), ("classification", "#CC79A7")):
        d = res.difference.get(task)
        if d is not None:
            ax.hist(d, bins=60, density=True, histtype="stepfilled", alpha=0.45, color=color,
                    label=f"{task}: P(model > experts) = {np.mean(d > 0):.2f}")
    ax.axvline(0, color=GREY, lw=0.6, ls="--")
    ax.set_xlabel("accuracy difference, model − experts (posterior)")
    ax.set_ylabel("density")
    ax.legend(fontsize=5)
    return {"difference": save_figure(fig, out, "fig_difference", meta)}


def section_difference(res: DifferenceResult, figs: dict, cfg) -> list[str]:
    t = res.tables["difference"]
    L = [md_table(t[t["parameter"].isin(["acc_experts", "acc_model", "difference"])][
        ["task", "parameter", "mean", "hdi_3%", "hdi_97%", "P(model > experts)", "r_hat"]]) + "\n"]
    if "difference" in figs:
        L.append("![difference](figures/fig_difference.png)\n")
    return L


AGREEMENT_STEP = Step("agreement", "Do experts and the model agree?", None, needs_agreement, run_agreement,
                      figures_agreement, section_agreement)
DIFFERENCE_STEP = Step("comparison", "Experts vs model: accuracy with shared stimulus difficulty", "comparison",
                       needs_difference, run_difference, figures_difference, section_difference, group="comparison")
