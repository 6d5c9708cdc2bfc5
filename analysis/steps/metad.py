"""How well does confidence use the evidence? Meta-d′ (HMeta-d's group model; by default the M-ratio without its
population level) for the experts and the model as one observer, per task: authenticity (two-choice) and
classification (folded correct/incorrect)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import numpy as np
import pandas as pd

from .. import metrics, prepare
from ..figstyle import EXPERT, GREY, MODEL, forest, log_ticks, new_figure, save_figure
from ..fitting import Fit, draws, hdi_bounds
from ..markdown import md_table
from ..models import build_metad_model
from .base import Context, Step, StepResult, contraction, ppc_table, summary_table

WEAK_D = 1.0   # below this type-1 d′ the M-ratio is reported as not identified unless the data contract it


@dataclass
class MetadResult(StepResult):
    task: str = "authenticity"
    fit: Fit | None = None
    with_M: list[str] = field(default_factory=list)
    identification: pd.DataFrame = field(default_factory=pd.DataFrame)
    observers: pd.DataFrame = field(default_factory=pd.DataFrame)
    weak: list[str] = field(default_factory=list)


def needs_metad(task: str, ctx: Context) -> str | None:
    if not ctx.has_experts and ctx.model is None:
        return "the table has neither human answers nor model outputs"
    return None


def _expert_counts(ctx: Context, task: str):
    """(counts_S1 or None, counts_S2, raters, correct, level, rater index) of the experts for ``task``."""
    K = ctx.K
    if task == "authenticity":
        sub = prepare.auth_subset(ctx.auth, ctx.cfg.sdt_synthetic)
        if not (sub["source"] == "real").any() or not (sub["source"] == "synthetic").any():
            return None
        r_idx, raters = prepare._index(sub["participant_id"])
        lev = sub["auth_confidence_level"].to_numpy()
        cS1, cS2 = prepare.metad_counts_auth(sub["source"].to_numpy(), sub["auth_response"].to_numpy(), lev, r_idx,
                                             len(raters), K)
        return cS1, cS2, raters, (sub["auth_response"] == sub["source"]).to_numpy(), lev, r_idx
    dc = ctx.cls
    r_idx, raters = prepare._index(dc["participant_id"])
    corr, lev = prepare.is_correct_class(dc), dc["class_confidence_level"].to_numpy()
    return None, prepare.folded_counts(corr, lev, r_idx, len(raters), K), raters, corr, lev, r_idx


def _model_counts(ctx: Context, task: str):
    mod, K = ctx.model, ctx.K
    if task == "authenticity":
        msub = mod[(mod["source"] == "real") | (mod["morph_strength"] >= 1.0)] if ctx.cfg.sdt_synthetic == "full" else mod
        if not (msub["source"] == "real").any() or not (msub["source"] == "synthetic").any():
            return None
        lev, zero = msub["auth_level_q"].to_numpy(), np.zeros(len(msub), int)
        mS1, mS2 = prepare.metad_counts_auth(msub["source"].to_numpy(), msub["auth_response"].to_numpy(), lev, zero,
                                             1, K)
        return mS1, mS2, ["model"], msub["auth_correct"].to_numpy(), msub["auth_conf"].to_numpy(), zero
    corr, lev, zero = mod["class_correct"].to_numpy(), mod["class_level_q"].to_numpy(), np.zeros(len(mod), int)
    return None, prepare.folded_counts(corr, lev, zero, 1, K), ["model"], corr, mod["model_confidence"].to_numpy(), zero


def _observer_table(f: Fit, info: dict, task: str, correct: dict, conf: dict) -> pd.DataFrame:
    """Per observer: type-1 d′ (posterior median), P(d′ > floor), type-2 AUROC (model-free), and why there is
    or is not an M-ratio."""
    obs = [str(r) for r in f.idata.posterior["observer"].values]
    d = np.asarray(f.idata.posterior["d"].median(("chain", "draw")))
    rows = []
    for i, r in enumerate(obs):
        no_m = r in info["no_M_raters"]
        p, fl = info["P(d′ > floor)"][r], info["d_floor"]
        rows.append({"task": task, "observer": r, "d_prime": float(d[i]), "P(d′>floor)": float(p), "d_floor": fl,
                     "type2_auroc": metrics.type2_auroc(correct[r], conf[r]),
                     "M_ratio": "not estimated" if no_m else "estimated",
                     "reason": (f"d′ not credibly above {fl:g} (P(d′ > {fl:g}) = {p:.3f} < {info['credible']}): "
                                "M = meta-d′/d′ would be a ratio over a d′ that may be near 0; meta-d′ and the type-2 "
                                "AUROC are reported" if no_m else "")})
    return pd.DataFrame(rows)


def run_metad(task: str, ctx: Context) -> MetadResult:
    """One fit per task: the experts (pooled, HMeta-d's group model) and the model (one unpooled observer) in the
    same PyMC model, so one compiled graph serves both."""
    res = MetadResult(f"metad_{task}", task=task)
    expert_rows = ctx.auth if task == "authenticity" else ctx.cls
    parts = []
    for who, counts, ok in (("experts", _expert_counts, len(expert_rows) > 0),
                            ("model", _model_counts, ctx.model is not None)):
        if not ok:
            res.notes.append(f"no {who} data for meta-d′ ({task}): that part is skipped.")
            continue
        got = counts(ctx, task)
        if got is None:
            res.notes.append(f"{who}: the {task} meta-d′ needs both real and synthetic images; skipped.")
            continue
        parts.append((who, got))
    if not parts:
        raise ValueError(f"no meta-d′ fit possible for {task}")
    folded = task != "authenticity"
    cS2 = np.concatenate([g[1] for _, g in parts])
    cS1 = None if folded else np.concatenate([g[0] for _, g in parts])
    observers = [r for _, g in parts for r in g[2]]
    pooled = [who == "experts" for who, g in parts for _ in g[2]]
    correct, conf = {}, {}
    for who, (_, _, names, corr, cf, r_idx) in parts:
        for i, r in enumerate(names):
            m = np.asarray(r_idx) == i
            correct[r], conf[r] = np.asarray(corr)[m], np.asarray(cf)[m]
    model, meanings = build_metad_model(cS1, cS2, observers, ctx.K, pooled=pooled, folded=folded,
                                        credible=ctx.cfg.metad_credible, d_floor=ctx.cfg.metad_d_floor,
                                        group=ctx.cfg.metad_group)
    f = ctx.fit(f"metad_{task}", model, meanings, {k: v for k, v in model.metad_info.items()})
    res.fit = f
    res.fits.append(f)
    res.observers = _observer_table(f, model.metad_info, task, correct, conf)
    res.tables[f"metad_observers_{task}"] = res.observers
    with_M = [o for o in observers if o not in model.metad_info["no_M_raters"]]
    s = summary_table(f, ["meta_d", "M"] + (["group_M"] if model.metad_info["group_M"]
                                             else []), ctx.cfg.hdi_prob)
    s = s[~s["parameter"].isin([f"M[{o}]" for o in model.metad_info["no_M_raters"]])]
    s.insert(1, "task", task)
    res.tables[f"metad_{task}"] = s.reset_index(drop=True)
    res.tables[f"ppc_metad_{task}"] = ppc_table(f)
    res.identification = _identification(f, with_M)
    res.tables[f"identification_metad_{task}"] = res.identification
    res.weak = list(res.identification.loc[~res.identification["identified"], "parameter"])
    res.with_M = with_M
    return res


def _identification(f: Fit, with_M: list[str]) -> pd.DataFrame:
    """Per observer with an M-ratio: type-1 d′ (posterior median) and the posterior contraction of M: an M-ratio
    is identified only where the data narrow its prior (contraction ≥ 0.5 with d′ ≥ 1, or ≥ 0.8)."""
    c = contraction(f, ["M"])
    keep = c["parameter"].isin([f"M[{o}]" for o in with_M])
    c = c[keep].reset_index(drop=True)
    d = dict(zip([str(r) for r in f.idata.posterior["observer"].values],
                 np.asarray(f.idata.posterior["d"].median(("chain", "draw")))))
    c["d_prime"] = [d.get(p.split("[", 1)[1].rstrip("]"), np.nan) for p in c["parameter"]]
    c["identified"] = (c["contraction"] >= 0.5) & (c["d_prime"] >= WEAK_D) | (c["contraction"] >= 0.8)
    return c


def figures_metad(res: MetadResult, out, meta) -> dict:
    f = res.fit
    obs = [str(o) for o in f.idata.posterior["observer"].values]
    use_M = bool(res.with_M)
    var, xlabel = ("M", "M-ratio (meta-d′/d′), 94 % HDI") if use_M else ("meta_d", "meta-d′, 94 % HDI")
    show = [o for o in obs if not use_M or o in res.with_M]
    x = draws(f.idata, var)[:, [obs.index(o) for o in show]]
    fig, ax = new_figure(0.2 * len(show) + 1.3)
    ax.axvline(1 if use_M else 0, color=GREY, lw=0.6, ls="--")
    hum = [i for i, o in enumerate(show) if o != "model"]
    if hum:
        forest(ax, [show[i] for i in hum], x[:, hum], EXPERT)
    labels = [show[i] for i in hum]
    vals = [hdi_bounds(x).ravel()]
    y = len(hum)
    if use_M and "group_M" in res.tables[f"metad_{res.task}"]["parameter"].values:
        g = draws(f.idata, "group_M")
        ax.plot(hdi_bounds(g), [y] * 2, color="k", lw=1.6)
        ax.plot(g.mean(), y, "D", color="k", ms=4)
        vals.append(hdi_bounds(g))
        labels.append("experts")
        y += 1
    if "model" in show:
        mm = x[:, show.index("model")]
        ax.plot(hdi_bounds(mm), [y] * 2, color=MODEL, lw=1.6)
        ax.plot(mm.mean(), y, "s", color=MODEL, ms=4)
        labels.append("model")
    ax.set_yticks(range(len(labels)), labels)
    allv = np.concatenate([np.ravel(v) for v in vals])
    lo, hi = float(np.nanmin(allv)), float(np.nanmax(allv))
    if use_M:
        ax.set_xscale("log")
        ax.set_xlim(lo / 1.15, hi * 1.15)
        log_ticks(ax.xaxis, lo / 1.15, hi * 1.15)
    ax.set_xlabel(xlabel)
    ax.set_title(res.task, loc="left", fontweight="bold")
    name = f"metad_{res.task}"
    return {name: save_figure(fig, out, f"fig_{name}", meta)}


def section_metad(res: MetadResult, figs: dict, cfg) -> list[str]:
    t = res.tables[f"metad_{res.task}"]
    L = [md_table(t[t["parameter"].str.startswith(("M", "group_M", "meta_d"))][
        ["parameter", "mean", "sd", "hdi_3%", "hdi_97%", "ess_bulk", "r_hat"]]) + "\n"]
    o = res.observers
    no_m = o[o["M_ratio"] == "not estimated"]
    if len(no_m):
        fl = cfg.metad_d_floor
        L.append(f"**No M-ratio for {', '.join(map(str, no_m['observer']))}:** their type-1 d′ is not credibly above "
                 f"{fl:g} (P(d′ > {fl:g}) < {cfg.metad_credible:g} from the hit and false-alarm rates), so M = "
                 "meta-d′/d′ would be a ratio over a number that may be near 0; their meta-d′ (above) and type-2 AUROC "
                 "(below) say how well confidence tracks correctness.\n")
    L.append(md_table(o[["observer", "d_prime", "P(d′>floor)", "type2_auroc", "M_ratio"]]) + "\n")
    if res.weak:
        L.append(f"**What this design cannot identify:** the M-ratio of {', '.join(res.weak)} — the data narrowed the "
                 "prior of M by less than half (posterior contraction < 0.5, or < 0.8 where d′ < 1; "
                 "`tables/identification_metad_*.csv`). Read those intervals as the prior, not as evidence about "
                 "metacognition.\n")
    group = ("`group_M` is the geometric mean of these raters' M-ratios (each rater's estimated on its own): it "
             "describes the experts of this study, and its interval is their estimation uncertainty, not the spread of "
             "experts at large" if cfg.metad_group == "raters" else
             "`group_M` is exp(μ) of HMeta-d's hierarchical log M-ratio: the population of experts")
    L.append("d′ and c1 are estimated with meta-d′, so the M-ratio intervals include d′'s uncertainty. The type-2 "
             f"criteria are pooled across raters as in HMeta-d's group model. {group}.\n")
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
