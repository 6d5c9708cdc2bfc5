"""Can experts tell real from synthetic? Hierarchical SDT on real vs (fully) synthetic images, its headline
population accuracy with HDI + ROPE decision, and the design table (power by simulation)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import prepare
from ..figstyle import EXPERT, GREY, forest, new_figure, save_figure
from ..fitting import Fit, draws, hdi_bounds
from ..markdown import fmt_iv, md_table
from ..models import build_sdt_model
from ..power import decide, equivalence_power
from .base import Context, Step, StepResult, contraction, dispersion_ppc, ppc_table, summary_table

CRITERION_SIGN = ("criterion c > 0: a bias to answer 'real' (conservative about 'synthetic'; with 'synthetic' as the "
                  "signal this is Macmillan & Creelman's c); c < 0: a bias to answer 'synthetic'")


@dataclass
class Headline:
    accuracy_mean: float
    accuracy_median: float
    interval: tuple[float, float]
    hdi: tuple[float, float]
    prob: float
    rope: tuple[float, float]
    p_in_rope: float
    p_above_chance: float
    decision: str
    acc_typical_mean: float
    observed_accuracy: float
    n_raters: int
    n_trials: int


@dataclass
class SDTResult(StepResult):
    fit: Fit | None = None
    headline: Headline | None = None
    rater_observed_accuracy: pd.Series = field(default_factory=pd.Series)
    synthetic: str = "full"
    rope_halfwidth: float = 0.05


@dataclass
class PowerResult(StepResult):
    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    rope_halfwidth: float = 0.05


def needs_sdt(ctx: Context) -> str | None:
    if not ctx.has_experts:
        return "the table has no human authenticity answers"
    sub = prepare.auth_subset(ctx.auth, ctx.cfg.sdt_synthetic)
    if not (sub["source"] == "real").any() or not (sub["source"] == "synthetic").any():
        what = "fully synthetic" if ctx.cfg.sdt_synthetic == "full" else "synthetic"
        return f"it needs both real and {what} images; the study showed " + (
            "no real images" if not (sub["source"] == "real").any() else f"no {what} images")
    return None


def run_sdt(ctx: Context) -> SDTResult:
    cfg = ctx.cfg
    a = prepare.sdt_arrays(ctx.auth, cfg.sdt_synthetic)
    model, meanings = build_sdt_model(a["y"], a["s"], a["rater_idx"], a["stim_idx"], a["raters"], a["stimuli"],
                                      stimulus_effects=cfg.stimulus_effects, obs_ids=a["obs_ids"])
    fit = ctx.fit("sdt_authenticity", model, meanings, {"n_obs": len(a["y"]), "subset": cfg.sdt_synthetic})
    src = np.where(a["s"] > 0, "real", "synthetic")
    rat = np.asarray(a["raters"])[a["rater_idx"]]
    acc = draws(fit.idata, "acc_population")
    p = cfg.interval_prob
    lo, hi = np.quantile(acc, [(1 - p) / 2, (1 + p) / 2])
    hlo, hhi = (float(v) for v in hdi_bounds(acc, p))
    h = cfg.rope_halfwidth
    head = Headline(
        accuracy_mean=float(acc.mean()), accuracy_median=float(np.median(acc)), interval=(float(lo), float(hi)),
        hdi=(hlo, hhi), prob=p, rope=(0.5 - h, 0.5 + h), p_in_rope=float(np.mean(np.abs(acc - 0.5) <= h)),
        p_above_chance=float(np.mean(acc > 0.5)), decision=decide(hlo, hhi, h),
        acc_typical_mean=float(draws(fit.idata, "acc_typical").mean()),
        observed_accuracy=float(np.mean(a["y"] == (a["s"] > 0))), n_raters=len(a["raters"]), n_trials=len(a["y"]))
    table = summary_table(fit, ["mu_d", "mu_c", "sigma_d", "sigma_c"] + (["sigma_stimulus"] if cfg.stimulus_effects
                                                                          else [])
                          + ["acc_population", "acc_typical", "d", "c", "accuracy"], cfg.hdi_prob)
    table["note"] = np.where(table["parameter"].str.match(r"^(mu_c|c\[)"), CRITERION_SIGN, "")
    sub = prepare.auth_subset(ctx.auth, cfg.sdt_synthetic)
    obs = (sub["auth_response"] == sub["source"]).groupby(sub["participant_id"]).mean()
    ppc = ppc_table(fit, {"said_real": {"rater": rat, "source": src,
                                        "rater/source": np.char.add(np.char.add(rat.astype(str), "/"), src)}})
    ppc = pd.concat([ppc, dispersion_ppc(fit, "said_real", a["stim_idx"])], ignore_index=True)
    ident = contraction(fit, ["d", "c", "mu_d", "mu_c"])
    return SDTResult("sdt", fits=[fit], tables={"sdt": table, "ppc_sdt": ppc, "identification_sdt": ident},
                     fit=fit, headline=head, rater_observed_accuracy=obs, synthetic=cfg.sdt_synthetic,
                     rope_halfwidth=h)


def run_power(ctx: Context) -> PowerResult:
    cfg = ctx.cfg
    fit = ctx.result(SDTResult).fit
    post = {k: float(draws(fit.idata, k).mean()) for k in ("mu_d", "mu_c", "sigma_d", "sigma_c")}
    post["sigma_u"] = float(draws(fit.idata, "sigma_stimulus").mean()) if cfg.stimulus_effects else 0.0
    h = cfg.rope_halfwidth
    pw_obs = equivalence_power(**post, rope_halfwidth=h, n_raters=cfg.power_raters, n_trials=cfg.power_trials,
                               n_sims=cfg.power_sims, seed=cfg.sampler.seed)
    pw_obs.insert(0, "scenario", "posterior mean (observed effect)")
    pw_null = equivalence_power(**{**post, "mu_d": 0.0, "mu_c": 0.0}, rope_halfwidth=h, n_raters=cfg.power_raters,
                                n_trials=cfg.power_trials, n_sims=cfg.power_sims, seed=cfg.sampler.seed + 1)
    pw_null.insert(0, "scenario", "exactly at chance (d′ = 0, c = 0)")
    table = pd.concat([pw_obs, pw_null], ignore_index=True)
    return PowerResult("power", tables={"power": table}, table=table, rope_halfwidth=h)


# --------------------------------------------------------------------------------------------- figures
def figures_sdt(res: SDTResult, out, meta) -> dict:
    fit = res.fit
    raters = [str(r) for r in fit.idata.posterior["rater"].values]
    figs = {}
    # per-rater and population accuracy against the ROPE
    acc, pop, h = draws(fit.idata, "accuracy"), draws(fit.idata, "acc_population"), res.rope_halfwidth
    fig, ax = new_figure(0.25 * len(raters) + 1.0)
    ax.axvspan(0.5 - h, 0.5 + h, color=GREY, alpha=0.25, lw=0, label=f"ROPE 0.5 ± {h:g}")
    ax.axvline(0.5, color=GREY, lw=0.6, ls="--")
    forest(ax, raters, acc, EXPERT, label="rater posterior (94 % HDI)")
    obs = res.rater_observed_accuracy
    ax.plot([obs.get(r, np.nan) for r in raters], range(len(raters)), "x", color="k", ms=3, label="observed")
    lo, hi = hdi_bounds(pop, res.headline.prob)
    ax.plot([lo, hi], [len(raters) + 0.6] * 2, color="k", lw=1.6)
    ax.plot(pop.mean(), len(raters) + 0.6, "D", color="k", ms=4,
            label=f"population ({int(res.headline.prob * 100)} % HDI)")
    ax.set_yticks(list(range(len(raters))) + [len(raters) + 0.6], raters + ["population"])
    ax.set_xlabel("authenticity accuracy (real vs synthetic)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncols=2, fontsize=5)
    figs["auth_accuracy"] = save_figure(fig, out, "fig_auth_accuracy", meta)
    # d′ and criterion per rater
    fig, axes = new_figure(0.22 * len(raters) + 1.0, ncols=2, sharey=True)
    for ax, var, mu, lab in ((axes[0], "d", "mu_d", "d′"), (axes[1], "c", "mu_c", "criterion c (> 0: bias to 'real')")):
        ax.axvline(0, color=GREY, lw=0.6, ls="--")
        forest(ax, raters, draws(fit.idata, var), EXPERT)
        g = draws(fit.idata, mu)
        ax.plot(hdi_bounds(g), [len(raters) + 0.6] * 2, color="k", lw=1.6)
        ax.plot(g.mean(), len(raters) + 0.6, "D", color="k", ms=4)
        ax.set_xlabel(lab)
    axes[0].set_yticks(list(range(len(raters))) + [len(raters) + 0.6], raters + ["group"])
    figs["sdt_rater"] = save_figure(fig, out, "fig_sdt_rater", meta)
    # posterior predictive check per rater and source
    t = res.tables.get("ppc_sdt")
    if t is not None and not t.empty:
        t = t[t["statistic"].str.contains("rater/source=")]
        fig, ax = new_figure(0.12 * len(t) + 0.8)
        y = np.arange(len(t))
        ax.errorbar(t["replicated_mean"], y, xerr=[t["replicated_mean"] - t["rep_lo94"],
                                                   t["rep_hi94"] - t["replicated_mean"]],
                    fmt="o", color=EXPERT, ms=2, lw=0.8, label="posterior predictive (94 %)")
        ax.plot(t["observed"], y, "x", color="k", ms=3, label="observed")
        ax.set_yticks(y, [s.split("=")[1].rstrip(")").replace("/", " ") for s in t["statistic"]], fontsize=5)
        ax.set_xlabel("P(answer 'real') per rater and image source")
        ax.legend(fontsize=5)
        figs["ppc_sdt"] = save_figure(fig, out, "fig_ppc_sdt", meta)
    return figs


# --------------------------------------------------------------------------------------------- report
def section_sdt(res: SDTResult, figs: dict, cfg) -> list[str]:
    h = res.headline
    p = int(h.prob * 100)
    what = "fully synthetic" if res.synthetic == "full" else "all synthetic incl. morphs"
    L = [f"Population accuracy (a random expert on a random image; real vs {what}): posterior mean "
         f"**{h.accuracy_mean:.3f}**, {p} % equal-tailed interval **{fmt_iv(h.interval)}**, {p} % HDI {fmt_iv(h.hdi)} "
         f"(observed proportion correct {h.observed_accuracy:.3f}, {h.n_raters} raters, {h.n_trials} trials).  \n"
         f"P(accuracy > 0.5) = {h.p_above_chance:.3f}. ROPE {fmt_iv(h.rope)}: P(accuracy in ROPE) = "
         f"**{h.p_in_rope:.3f}**; HDI+ROPE decision: **{h.decision}** (equivalent = the HDI lies inside the ROPE; "
         "different = entirely outside; otherwise undecided).\n"]
    if "auth_accuracy" in figs:
        L.append("![authenticity accuracy](figures/fig_auth_accuracy.png)\n")
    L.append("### Signal detection per rater (real vs synthetic)\n")
    L.append(f"Sign convention: {CRITERION_SIGN}.\n")
    t = res.tables["sdt"]
    L.append(md_table(t[~t["parameter"].str.contains(r"\[")][["parameter", "mean", "sd", "hdi_3%", "hdi_97%",
                                                               "ess_bulk", "r_hat"]]) + "\n")
    if "sdt_rater" in figs:
        L.append("![SDT per rater](figures/fig_sdt_rater.png)\n")
    L.append("Per-rater d′, c and accuracy: `tables/sdt.csv`.\n")
    if "ppc_sdt" in figs:
        L.append("Posterior predictive check, P(answer 'real') per rater and source:\n")
        L.append("![PPC](figures/fig_ppc_sdt.png)\n")
    return L


def section_power(res: PowerResult, figs: dict, cfg) -> list[str]:
    pw = res.table
    L = [f"P(decision) per design with ROPE half-width {res.rope_halfwidth:g}, {int(pw['n_sims'].iloc[0])} simulated "
         "studies per cell, fast interval approximation (see `analysis.power`; `benchmarks/analysis_power.py` checks "
         "it against full Bayesian fits). Trials are per rater, half real and half fully synthetic; simulated under "
         "the posterior-mean group parameters and at chance.\n", md_table(pw.drop(columns=["n_sims", "method"])) + "\n"]
    for scen, g in pw.groupby("scenario", sort=False):
        col = "p_equivalent" if "chance" in scen else "p_different"
        word = "equivalence" if col == "p_equivalent" else "difference"
        hit = g[g[col] >= 0.8]
        if len(hit):
            r = hit.assign(N=hit.n_raters * hit.n_trials).sort_values("N").iloc[0]
            L.append(f"- {scen}: smallest design in the grid with ≥ 80 % {word} decisions: "
                     f"{int(r.n_raters)} raters × {int(r.n_trials)} trials.")
        else:
            L.append(f"- {scen}: no design in the grid reaches 80 % {word} decisions (best {g[col].max():.2f}).")
    L.append("")
    return L


SDT_STEP = Step("sdt", "Can experts tell real from synthetic images?", "sdt", needs_sdt, run_sdt, figures_sdt,
                section_sdt, group="sdt")
def needs_power(ctx: Context) -> str | None:
    return "power_sims = 0 (no simulated studies asked for)" if ctx.cfg.power_sims == 0 else None


POWER_STEP = Step("power", "Data needed for a decision (power by simulation)", "power", needs_power, run_power,
                  None, section_power, group="sdt", after="sdt")
