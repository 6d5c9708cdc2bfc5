"""Are the cells the model finds hard also hard for experts? P(correct class) against the model's evidence (ψ form,
γ = 1/C: a many-choice correctness design), experts hierarchically and the model as one observer on the same axis."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import prepare
from ..figstyle import EXPERT, MODEL, new_figure, save_figure
from ..fitting import Fit, draws
from ..markdown import md_table
from ..psychometric import PsychometricSpec, build_psychometric_model, psychometric_curve
from .base import Context, Step, StepResult, dispersion_ppc, ppc_table, summary_table
from .morph import PSI_TABLE


@dataclass
class ClassEvidenceResult(StepResult):
    experts: Fit | None = None
    model: Fit | None = None
    spec: PsychometricSpec | None = None
    evidence: str = "model_margin"
    x_range: tuple[float, float] = (0.0, 1.0)
    expert_points: pd.DataFrame = field(default_factory=pd.DataFrame)   # x, k, n
    model_points: pd.DataFrame = field(default_factory=pd.DataFrame)


def needs_class_evidence(ctx: Context) -> str | None:
    if ctx.model is None:
        return "the table has no model outputs (a human-only export), so there is no model evidence axis"
    if not len(ctx.cls):
        return "the table has no human class answers"
    if ctx.cls[ctx.cfg.class_evidence].notna().sum() == 0:
        return f"no expert trial has a value of {ctx.cfg.class_evidence}"
    return None


def run_class_evidence(ctx: Context) -> ClassEvidenceResult:
    cfg, mod = ctx.cfg, ctx.model
    ev = cfg.class_evidence
    gamma = 1.0 / ctx.C if cfg.class_gamma == "chance" else cfg.class_gamma
    spec = PsychometricSpec(cfg.class_family, gamma, cfg.lapse)
    c = prepare.class_psychometric_arrays(ctx.cls, ev)
    xr = (float(min(c["x"].min(), mod[ev].min())), float(max(c["x"].max(), mod[ev].max())))
    disp = cfg.class_dispersion
    extra = {"stimulus_idx": c["stimulus_idx"], "stimuli": c["stimuli"]} if disp == "stimulus" else {}
    model, meanings = build_psychometric_model(c["x"], c["k"], c["n"], c["rater_idx"], c["raters"], spec, x_range=xr,
                                               dispersion=disp, obs_ids=c["obs_ids"], **extra)
    fe = ctx.fit("psychometric_class_experts", model, meanings, {"spec": spec.describe(), "evidence": ev,
                                                                 "dispersion": disp})
    mx = mod[mod[ev].notna()]
    model, meanings = build_psychometric_model(mx[ev].to_numpy(float), mx["class_correct"].to_numpy(int),
                                               np.ones(len(mx), int), None, ["model"], spec, hierarchical=False,
                                               x_range=xr, obs_ids=mx["stimulus_id"].tolist())
    fm = ctx.fit("psychometric_class_model", model, meanings, {"spec": spec.describe(), "evidence": ev})
    table = pd.concat([summary_table(fe, PSI_TABLE + ("sigma_stimulus",), cfg.hdi_prob),
                       summary_table(fm, PSI_TABLE, cfg.hdi_prob)], ignore_index=True)
    return ClassEvidenceResult(
        "class_evidence", fits=[fe, fm],
        tables={"psychometric_class": table,
                "ppc_psychometric_class_experts": pd.concat([ppc_table(fe), dispersion_ppc(fe, "k", c["stimulus_idx"])],
                                                            ignore_index=True),
                "ppc_psychometric_class_model": ppc_table(fm)},
        experts=fe, model=fm, spec=spec, evidence=ev, x_range=xr,
        expert_points=pd.DataFrame({"x": c["x"], "k": c["k"], "n": c["n"]}),
        model_points=pd.DataFrame({"x": mx[ev].to_numpy(float), "k": mx["class_correct"].to_numpy(int), "n": 1}))


def _binned(p: pd.DataFrame, bins):
    b = np.digitize(p["x"], bins[1:-1])
    return np.array([(np.average(p["x"][b == j], weights=p["n"][b == j]), p["k"][b == j].sum() / p["n"][b == j].sum())
                     for j in np.unique(b)])


def figures_class_evidence(res: ClassEvidenceResult, out, meta) -> dict:
    spec = res.spec
    xs = np.linspace(res.x_range[0], res.x_range[1], 101)
    fig, ax = new_figure(2.0)
    for f, color, lab, hier in ((res.experts, EXPERT, "experts (group)", True), (res.model, MODEL, "model", False)):
        post = f.idata.posterior
        nd = post.sizes["chain"] * post.sizes["draw"]
        sel = np.random.default_rng(1).choice(nd, min(400, nd), replace=False)
        t = draws(f.idata, "group_threshold" if hier else "threshold")[sel]
        w = draws(f.idata, "group_width" if hier else "width")[sel]
        g = draws(f.idata, "gamma")[sel] if "gamma" in post else np.full(len(sel), float(spec.gamma))
        lam = draws(f.idata, "lapse")[sel] if "lapse" in post else np.full(len(sel), float(spec.lapse))
        curves = psychometric_curve(xs, t, w, g, lam, spec.family)
        lo, hi = np.quantile(curves, [0.03, 0.97], axis=0)
        ax.fill_between(xs, lo, hi, color=color, alpha=0.3, lw=0)
        ax.plot(xs, np.median(curves, 0), color=color, label=lab)
    bins = np.unique(np.quantile(np.r_[res.expert_points["x"], res.model_points["x"]], np.linspace(0, 1, 9)))
    be, bm = _binned(res.expert_points, bins), _binned(res.model_points, bins)
    ax.plot(be[:, 0], be[:, 1], "o", color=EXPERT, ms=2.5, mfc="white", label="experts, observed")
    ax.plot(bm[:, 0], bm[:, 1], "s", color=MODEL, ms=2.5, mfc="white", label="model, observed")
    ax.set_xlabel(f"model evidence ({res.evidence.replace('model_', '')})")
    ax.set_ylabel("P(correct class)")
    ax.set_ylim(0, 1)
    ax.legend(loc="lower right", fontsize=5)
    return {"class_evidence": save_figure(fig, out, "fig_class_evidence", meta)}


def section_class_evidence(res: ClassEvidenceResult, figs: dict, cfg) -> list[str]:
    t = res.tables["psychometric_class"]
    L = [f"ψ form (a many-choice correctness design: γ = guess rate), {res.spec.describe()}, against "
         f"`{res.evidence}`.\n",
         md_table(t[~t["parameter"].str.contains(r"\[")][["model", "parameter", "mean", "sd", "hdi_3%", "hdi_97%",
                                                           "ess_bulk", "r_hat"]]) + "\n"]
    if "class_evidence" in figs:
        L.append("![class evidence](figures/fig_class_evidence.png)\n")
    return L


CLASS_EVIDENCE_STEP = Step("class_evidence", "Are the cells the model finds hard also hard for experts?",
                           "psychometric", needs_class_evidence, run_class_evidence, figures_class_evidence,
                           section_class_evidence, group="class_evidence")
