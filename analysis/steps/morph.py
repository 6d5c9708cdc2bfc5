"""How synthetic must an image be before experts notice? The morph curve P('synthetic' | strength).

Default: the yes/no SDT model (:func:`analysis.psychometric.build_morph_sdt_model`) — right for the
real-or-synthetic judgement; ``morph_model = "psi"`` keeps the ψ form for forced-choice designs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import prepare
from ..figstyle import EXPERT, new_figure, save_figure
from ..fitting import Fit, draws
from ..markdown import md_table
from ..metrics import beta_interval
from ..psychometric import (PsychometricSpec, build_morph_sdt_model, build_psychometric_model, morph_sdt_curve,
                            psychometric_curve)
from .base import Context, Step, StepResult, contraction, dispersion_ppc, ppc_table, summary_table
from .sdt import CRITERION_SIGN

SDT_TABLE = ("group_threshold", "group_width", "mu_dmax", "mu_c", "sigma_dmax", "sigma_c", "threshold", "width",
             "d_max", "c")
DISPERSION_TABLE = ("sigma_stimulus", "eta")
PSI_TABLE = ("group_threshold", "group_width", "mu_slope", "sigma_intercept", "sigma_slope", "gamma", "lapse",
             "threshold", "width", "slope")


@dataclass
class MorphResult(StepResult):
    fit: Fit | None = None
    form: str = "sdt"                    # "sdt" (yes/no) or "psi"
    family: str = "cumulative_normal"
    spec: PsychometricSpec | None = None  # ψ form only
    counts: pd.DataFrame = field(default_factory=pd.DataFrame)   # participant, strength, k, n
    weak: list[str] = field(default_factory=list)   # parameters the design does not identify (contraction < 0.5)


def needs_morph(ctx: Context) -> str | None:
    if not ctx.has_experts:
        return "the table has no human authenticity answers"
    ms = ctx.auth["morph_strength"]
    if not ((ms > 0) & (ms < 1)).any():
        return ("the study has no morphs (no image with a morph strength strictly between 0 and 1), so there is no "
                "curve between real and fully synthetic images to fit")
    if not (ms == 0).any():
        return "the study showed no real images (strength 0), which anchor each rater's criterion"
    return None


def run_morph(ctx: Context) -> MorphResult:
    cfg = ctx.cfg
    m = prepare.morph_arrays(ctx.auth)
    counts = pd.DataFrame({"participant_id": np.asarray(m["raters"])[m["rater_idx"]], "strength": m["x"],
                           "k": m["k"], "n": m["n"]})
    disp = cfg.morph_dispersion
    a = prepare.morph_trials(ctx.auth) if disp == "stimulus" else m
    extra = {"stimulus_idx": a["stimulus_idx"], "stimuli": a["stimuli"]} if disp == "stimulus" else {}
    if cfg.morph_model == "sdt":
        model, meanings = build_morph_sdt_model(a["x"], a["k"], a["n"], a["rater_idx"], a["raters"],
                                                family=cfg.morph_family, dispersion=disp, obs_ids=a["obs_ids"],
                                                **extra)
        fit = ctx.fit("psychometric_morph", model, meanings, {"form": "yes/no SDT", "family": cfg.morph_family,
                                                              "dispersion": disp})
        names, spec = SDT_TABLE + DISPERSION_TABLE, None
    else:
        spec = PsychometricSpec(cfg.morph_family, cfg.morph_gamma, cfg.lapse)
        model, meanings = build_psychometric_model(a["x"], a["k"], a["n"], a["rater_idx"], a["raters"], spec,
                                                   x_range=(0.0, 1.0), dispersion=disp, obs_ids=a["obs_ids"],
                                                   **extra)
        fit = ctx.fit("psychometric_morph", model, meanings, {"form": "psi", "spec": spec.describe(),
                                                              "dispersion": disp})
        names = PSI_TABLE + DISPERSION_TABLE
    table = summary_table(fit, names, cfg.hdi_prob)
    if cfg.morph_model == "sdt":
        table["note"] = np.where(table["parameter"].str.match(r"^(mu_c|c\[)"), CRITERION_SIGN, "")
    ident = contraction(fit, ["group_threshold", "group_width", "threshold", "width", "d_max", "c"])
    weak = list(ident.loc[ident["contraction"] < 0.5, "parameter"]) if len(ident) else []
    ppc = pd.concat([ppc_table(fit), dispersion_ppc(fit, "k", a.get("stimulus_idx"))], ignore_index=True)
    return MorphResult("morph", fits=[fit], tables={"psychometric_morph": table,
                                                     "ppc_psychometric_morph": ppc,
                                                     "identification_morph": ident},
                       fit=fit, form=cfg.morph_model, family=cfg.morph_family, spec=spec, counts=counts, weak=weak)


def _curves(res: MorphResult, xs: np.ndarray, sel: np.ndarray) -> np.ndarray:
    """(draws, raters, len(xs)) fitted P('synthetic') per rater."""
    f = res.fit.idata
    if res.form == "sdt":
        d, c, l, w = (draws(f, v)[sel] for v in ("d_max", "c", "location", "scale"))
        return np.stack([morph_sdt_curve(xs, d[:, r], c[:, r], l[:, r], w[:, r], res.family)
                         for r in range(d.shape[1])], axis=1)
    spec = res.spec
    post = f.posterior
    g = draws(f, "gamma")[sel] if "gamma" in post else np.full(len(sel), float(spec.gamma))
    lam = draws(f, "lapse")[sel] if "lapse" in post else np.full(len(sel), float(spec.lapse))
    t, w = draws(f, "threshold")[sel], draws(f, "width")[sel]
    return np.stack([psychometric_curve(xs, t[:, r], w[:, r], g, lam, spec.family) for r in range(t.shape[1])], axis=1)


def figures_morph(res: MorphResult, out, meta) -> dict:
    post = res.fit.idata.posterior
    nd = post.sizes["chain"] * post.sizes["draw"]
    sel = np.random.default_rng(0).choice(nd, min(400, nd), replace=False)
    xs = np.linspace(0, 1, 101)
    cur = _curves(res, xs, sel)                                # draws × raters × x
    raters = [str(r) for r in post["rater"].values]
    counts = res.counts
    # (a) the curve averaged over the raters (what the pooled proportions estimate), with 94 % band
    fig, ax = new_figure(2.0)
    avg = cur.mean(axis=1)
    lo, hi = np.quantile(avg, [0.03, 0.97], axis=0)
    ax.fill_between(xs, lo, hi, color=EXPERT, alpha=0.3, lw=0)
    ax.plot(xs, np.median(avg, 0), color=EXPERT, label="fitted, mean over raters (94 %)")
    pooled = counts.groupby("strength")[["k", "n"]].sum()
    iv = np.array([beta_interval(k, n) for k, n in zip(pooled["k"], pooled["n"])])
    ax.errorbar(pooled.index, pooled["k"] / pooled["n"], yerr=[pooled["k"] / pooled["n"] - iv[:, 0],
                                                              iv[:, 1] - pooled["k"] / pooled["n"]],
                fmt="o", color="k", ms=2.5, lw=0.7, label="observed, pooled (95 %)")
    ax.set_xlabel("SDEdit morph strength (0 = real, 1 = fully synthetic)")
    ax.set_ylabel("P(judged synthetic)")
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize=5)
    figs = {"psychometric": save_figure(fig, out, "fig_psychometric", meta)}
    # (b) each rater: fitted curve and interval over that rater's observed proportions
    ncol = min(5, len(raters))
    nrow = math.ceil(len(raters) / ncol)
    fig, axes = new_figure(1.1 * nrow + 0.4, ncols=ncol, nrows=nrow, sharex=True, sharey=True, squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        if i >= len(raters):
            ax.set_visible(False)
            continue
        lo, hi = np.quantile(cur[:, i], [0.03, 0.97], axis=0)
        ax.fill_between(xs, lo, hi, color=EXPERT, alpha=0.3, lw=0)
        ax.plot(xs, np.median(cur[:, i], 0), color=EXPERT, lw=0.8)
        c = counts[counts["participant_id"] == raters[i]]
        ax.plot(c["strength"], c["k"] / c["n"], "o", color="k", ms=1.8)
        ax.set_title(raters[i], fontsize=5, pad=1)
        ax.set_ylim(0, 1)
    fig.supxlabel("morph strength", fontsize=6)
    fig.supylabel("P(judged synthetic)", fontsize=6)
    figs["psychometric_raters"] = save_figure(fig, out, "fig_psychometric_raters", meta)
    return figs


def section_morph(res: MorphResult, figs: dict, cfg) -> list[str]:
    t = res.tables["psychometric_morph"]
    L = []
    if res.form == "sdt":
        L.append("Yes/no signal detection over morph strength s (0 = real image, 1 = fully synthetic): "
                 "P('synthetic' | s) = Φ(d′max·(g(s) − ½) − c) with d′(s) = d′max·g(s) growing from 0 at s = 0 to "
                 f"d′max at s = 1 (g: a rescaled {res.family.replace('_', ' ')} F), one criterion c per rater shared "
                 "by all strengths, real images included; hierarchical over raters. **threshold** = the strength at "
                 "which d′ reaches half of d′max; **width** = the strength from 25 % to 75 % of d′max; **d_max** = "
                 f"d′ for fully synthetic images. Sign convention: {CRITERION_SIGN}.\n")
    else:
        L.append(f"ψ form (for forced-choice designs): {res.spec.describe()}.\n")
    L.append(md_table(t[~t["parameter"].str.contains(r"\[")][["parameter", "mean", "sd", "hdi_3%", "hdi_97%",
                                                               "ess_bulk", "r_hat"]]) + "\n")
    per = t[t["parameter"].str.contains(r"\[")].copy()
    if len(per):
        per["rater"] = per["parameter"].str.extract(r"\[(.*)\]")[0]
        per["name"] = per["parameter"].str.replace(r"\[.*\]", "", regex=True)
        wide = per.pivot_table(index="rater", columns="name", values="mean", aggfunc="first")
        lo = per.pivot_table(index="rater", columns="name", values="hdi_3%", aggfunc="first")
        hi = per.pivot_table(index="rater", columns="name", values="hdi_97%", aggfunc="first")
        cols = [c for c in ("threshold", "width", "d_max", "c", "slope") if c in wide.columns]
        show = pd.DataFrame({c: [f"{m:.2f} [{a:.2f}, {b:.2f}]" for m, a, b in zip(wide[c], lo[c], hi[c])]
                             for c in cols}, index=wide.index).reset_index()
        L.append("Per rater (posterior mean [94 % HDI]):\n")
        L.append(md_table(show) + "\n")
    if res.weak:
        L.append(f"**Not identified by this design** (the data narrowed the prior by less than half, posterior "
                 f"contraction < 0.5): {', '.join(res.weak[:20])}{' …' if len(res.weak) > 20 else ''}. For a rater "
                 "with small d′max the curve is nearly flat, so its threshold and width come from the group prior, "
                 "and their intervals say so.\n")
    for name in ("psychometric", "psychometric_raters"):
        if name in figs:
            L.append(f"![{name}](figures/fig_{name}.png)\n")
    return L


MORPH_STEP = Step("morph", "How synthetic must an image be before experts notice? (morph curve)", "psychometric",
                  needs_morph, run_morph, figures_morph, section_morph, group="morph")
