"""How well does confidence use the evidence? Hierarchical meta-d′ (HMeta-d's group model) for the experts and
the model as one observer, per task: authenticity (two-choice) and classification (folded correct/incorrect)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import numpy as np
import pandas as pd

from .. import prepare
from ..figstyle import EXPERT, GREY, MODEL, forest, log_ticks, new_figure, save_figure
from ..fitting import Fit, draws, hdi_bounds
from ..markdown import md_table
from ..models import build_metad_model
from .base import Context, Step, StepResult, contraction, ppc_table, summary_table

WEAK_D = 1.0   # below this type-1 d′ the M-ratio is reported as not identified unless the data contract it


@dataclass
class MetadResult(StepResult):
    task: str = "authenticity"
    experts: Fit | None = None
    model: Fit | None = None
    identification: pd.DataFrame = field(default_factory=pd.DataFrame)
    weak: list[str] = field(default_factory=list)


def needs_metad(task: str, ctx: Context) -> str | None:
    if not ctx.has_experts and ctx.model is None:
        return "the table has neither human answers nor model outputs"
    return None


def _expert_counts(ctx: Context, task: str):
    K = ctx.K
    if task == "authenticity":
        sub = prepare.auth_subset(ctx.auth, ctx.cfg.sdt_synthetic)
        r_idx, raters = prepare._index(sub["participant_id"])
        if not (sub["source"] == "real").any() or not (sub["source"] == "synthetic").any():
            return None
        cS1, cS2 = prepare.metad_counts_auth(sub["source"].to_numpy(), sub["auth_response"].to_numpy(),
                                             sub["auth_confidence_level"].to_numpy(), r_idx, len(raters), K)
        return build_metad_model(cS1, cS2, raters, K)
    dc = ctx.cls
    r_idx, raters = prepare._index(dc["participant_id"])
    cc = prepare.folded_counts(prepare.is_correct_class(dc), dc["class_confidence_level"].to_numpy(), r_idx,
                               len(raters), K)
    return build_metad_model(None, cc, raters, K, folded=True)


def _model_counts(ctx: Context, task: str):
    mod, K = ctx.model, ctx.K
    if task == "authenticity":
        msub = mod[(mod["source"] == "real") | (mod["morph_strength"] >= 1.0)] if ctx.cfg.sdt_synthetic == "full" else mod
        if not (msub["source"] == "real").any() or not (msub["source"] == "synthetic").any():
            return None
        mS1, mS2 = prepare.metad_counts_auth(msub["source"].to_numpy(), msub["auth_response"].to_numpy(),
                                             msub["auth_level_q"].to_numpy(), np.zeros(len(msub), int), 1, K)
        return build_metad_model(mS1, mS2, ["model"], K, hierarchical=False)
    mc = prepare.folded_counts(mod["class_correct"].to_numpy(), mod["class_level_q"].to_numpy(),
                               np.zeros(len(mod), int), 1, K)
    return build_metad_model(None, mc, ["model"], K, hierarchical=False, folded=True)


def run_metad(task: str, ctx: Context) -> MetadResult:
    res = MetadResult(f"metad_{task}", task=task)
    rows, ident = [], []
    expert_rows = ctx.auth if task == "authenticity" else ctx.cls
    for who, build, ok in (("experts", _expert_counts, len(expert_rows) > 0),
                           ("model", _model_counts, ctx.model is not None)):
        if not ok:
            res.notes.append(f"no {who} data for meta-d′ ({task}): that part is skipped.")
            continue
        built = build(ctx, task)
        if built is None:
            res.notes.append(f"{who}: the {task} meta-d′ needs both real and synthetic images; skipped.")
            continue
        f = ctx.fit(f"metad_{task}_{who}", *built)
        setattr(res, who, f)
        res.fits.append(f)
        s = summary_table(f, ["d", "meta_d", "M"] + (["group_M"] if who == "experts" else []), ctx.cfg.hdi_prob)
        s.insert(1, "task", task)
        s.insert(2, "observer", who)
        rows.append(s)
        res.tables[f"ppc_metad_{task}_{who}"] = ppc_table(f)
        ident.append(_identification(f))
    if not rows:
        raise ValueError(f"no meta-d′ fit possible for {task}")
    res.tables[f"metad_{task}"] = pd.concat(rows, ignore_index=True)
    res.identification = pd.concat(ident, ignore_index=True)
    res.tables[f"identification_metad_{task}"] = res.identification
    res.weak = list(res.identification.loc[~res.identification["identified"], "parameter"])
    return res


def _identification(f: Fit) -> pd.DataFrame:
    """Per observer: type-1 d′ (fixed point estimate) and the posterior contraction of log M: an M-ratio is
    identified only where the data narrow its prior (contraction ≥ 0.5) — at d′ ≈ 0.5 they mostly do not."""
    d = draws(f.idata, "d")[0]
    c = contraction(f, ["M"])
    c["d_prime"] = d[: len(c)]
    c["identified"] = (c["contraction"] >= 0.5) & (c["d_prime"] >= WEAK_D) | (c["contraction"] >= 0.8)
    return c


def figures_metad(res: MetadResult, out, meta) -> dict:
    fe, fm = res.experts, res.model
    raters = [str(r) for r in fe.idata.posterior["rater"].values] if fe is not None else []
    fig, ax = new_figure(0.2 * len(raters) + 1.3)
    ax.axvline(1, color=GREY, lw=0.6, ls="--")
    vals = []
    labels = list(raters)
    if fe is not None:
        M = draws(fe.idata, "M")
        forest(ax, raters, M, EXPERT)
        g = draws(fe.idata, "group_M")
        ax.plot(hdi_bounds(g), [len(raters) + 0.6] * 2, color="k", lw=1.6)
        ax.plot(g.mean(), len(raters) + 0.6, "D", color="k", ms=4)
        vals += [hdi_bounds(M).ravel(), hdi_bounds(g)]
        labels.append("experts")
    if fm is not None:
        mm = draws(fm.idata, "M")[:, 0]
        y = len(raters) + (1.6 if fe is not None else 0)
        ax.plot(hdi_bounds(mm), [y] * 2, color=MODEL, lw=1.6)
        ax.plot(mm.mean(), y, "s", color=MODEL, ms=4)
        vals.append(hdi_bounds(mm))
        labels.append("model")
    ticks = list(range(len(raters))) + ([len(raters) + 0.6] if fe is not None else []) + (
        [len(raters) + (1.6 if fe is not None else 0)] if fm is not None else [])
    ax.set_yticks(ticks, labels)
    ax.set_xscale("log")
    allv = np.concatenate([np.ravel(v) for v in vals])
    lo, hi = float(np.nanmin(allv)), float(np.nanmax(allv))
    ax.set_xlim(lo / 1.15, hi * 1.15)
    log_ticks(ax.xaxis, lo / 1.15, hi * 1.15)
    ax.set_xlabel("M-ratio (meta-d′/d′), 94 % HDI")
    ax.set_title(res.task, loc="left", fontweight="bold")
    name = f"metad_{res.task}"
    return {name: save_figure(fig, out, f"fig_{name}", meta)}


def section_metad(res: MetadResult, figs: dict, cfg) -> list[str]:
    t = res.tables[f"metad_{res.task}"]
    L = [md_table(t[t["parameter"].str.startswith(("M", "group_M", "meta_d"))][
        ["observer", "parameter", "mean", "sd", "hdi_3%", "hdi_97%", "ess_bulk", "r_hat"]]) + "\n"]
    if res.weak:
        L.append(f"**What this design cannot identify:** the M-ratio of {', '.join(res.weak)} — their type-1 d′ is "
                 f"small (M-ratio = meta-d′/d′ is a ratio over a d′ near 0: at d′ ≈ 0.5 a few hundred trials "
                 "barely narrow its prior) or the data narrowed the prior of log M by less than half (posterior "
                 "contraction < 0.5, `tables/identification_metad_*.csv`). Read those intervals as the prior, not "
                 "as evidence about metacognition.\n")
    L.append("d′ and c1 are held at their type-1 point estimates (HMeta-d), so the M-ratio interval does not include "
             "d′'s uncertainty; the SDT model above estimates d′ with its interval.\n")
    name = f"metad_{res.task}"
    if name in figs:
        L.append(f"![{name}](figures/fig_{name}.png)\n")
    return L


METAD_AUTH_STEP = Step("metad_authenticity", "Meta-d′: authenticity", "metacognition",
                       partial(needs_metad, "authenticity"), partial(run_metad, "authenticity"), figures_metad,
                       section_metad, group="metad_authenticity")
METAD_CLASS_STEP = Step("metad_classification", "Meta-d′: classification (folded correct/incorrect)", "metacognition",
                        partial(needs_metad, "classification"), partial(run_metad, "classification"), figures_metad,
                        section_metad, group="metad_classification")
