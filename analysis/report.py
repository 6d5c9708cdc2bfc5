"""Write the report folder: tables (CSV + Markdown), netCDF fits, figures and one Markdown report."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cytocore.provenance import code_version

from .figures import make_figures
from .fitting import log
from .pipeline import AnalysisResult

__all__ = ["write_report", "provenance"]


def provenance(res: AnalysisResult, input_path: str | None = None, input_sha256: str | None = None) -> dict:
    import arviz
    import pymc
    import pytensor
    return {
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "code_version": code_version(),
        "input": input_path,
        "input_file_sha256": input_sha256,
        "data_sha256": res.validation.data_sha256,
        "config": res.config.to_dict(),
        "versions": {"python": platform.python_version(), "pymc": pymc.__version__, "pytensor": pytensor.__version__,
                     "arviz": arviz.__version__, "numpy": np.__version__, "pandas": pd.__version__},
        "analysis_seconds": res.seconds,
    }


def _md_table(df: pd.DataFrame, floatfmt: str = ".3f") -> str:
    df = df.copy()
    for c in df.columns:
        if pd.api.types.is_float_dtype(df[c]):
            df[c] = df[c].map(lambda v: "" if pd.isna(v) else format(v, floatfmt))
    df = df.map(lambda v: "" if (not isinstance(v, str) and pd.isna(v)) else str(v))
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in df.to_numpy().tolist()]
    return "\n".join(lines)


def _write_table(df: pd.DataFrame, out: Path, name: str, prov_line: str) -> str:
    df.to_csv(out / f"{name}.csv", index=False)
    (out / f"{name}.md").write_text(f"<!-- {prov_line} -->\n\n" + _md_table(df) + "\n")
    return name


def write_report(res: AnalysisResult, out_dir: str | Path, *, input_path: str | None = None,
                 input_sha256: str | None = None) -> Path:
    """Write everything to ``out_dir``; returns the path of ``report.md``."""
    out = Path(out_dir)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    (out / "fits").mkdir(exist_ok=True)
    (out / "figures").mkdir(exist_ok=True)
    prov = provenance(res, input_path, input_sha256)
    (out / "provenance.json").write_text(json.dumps(prov, indent=2, default=str))
    prov_line = f"code {prov['code_version']} · data sha256 {prov['data_sha256'][:16]} · {prov['created_utc']}"
    log(f"writing report to {out}")
    # fits
    for name, f in res.fits.items():
        idata = f.idata
        for g in idata.groups():
            getattr(idata, g).attrs.update({"data_sha256": prov["data_sha256"], "code_version": prov["code_version"],
                                            "analysis_config": json.dumps(prov["config"], default=str)})
        idata.to_netcdf(str(out / "fits" / f"{name}.nc"))
    # tables
    for name, t in res.tables.items():
        if t is not None and not t.empty:
            _write_table(t, out / "tables", name, prov_line)
    meta = {"Subject": prov_line}
    figs = make_figures(res, out / "figures", meta)
    md = _markdown(res, prov, figs, out)
    p = out / "report.md"
    p.write_text(md)
    log(f"report: {p}")
    return p


def _fmt_iv(v) -> str:
    return f"[{v[0]:.3f}, {v[1]:.3f}]"


def _markdown(res: AnalysisResult, prov: dict, figs: dict, out: Path) -> str:
    cfg = res.config
    T = res.tables
    L: list[str] = []
    ok = res.diagnostics_ok
    L.append("# Human vs machine on blood-cell images — Bayesian psychometrics and metacognition\n")
    if not ok:
        bad = [f.name for f in res.fits.values() if not f.diagnostics.ok]
        L.append("> **⚠ DIAGNOSTIC FAILURE — do not interpret these fits without fixing them:** "
                 + ", ".join(bad) + ". See *Diagnostics* below (R-hat, ESS, divergences).\n")
    L.append(f"Code `{prov['code_version']}` · data SHA-256 `{prov['data_sha256']}` · "
             f"created {prov['created_utc']} · analysis time {res.seconds:.0f} s. "
             "Full configuration and package versions: `provenance.json`.\n")
    L.append("## Data and exclusions\n")
    L.append(res.validation.to_markdown() + "\n")

    h = res.headline
    if h:
        p = int(cfg.interval_prob * 100)
        L.append("## Can experts tell real from synthetic images?\n")
        L.append(
            f"Population accuracy (a random expert on a random image; real vs "
            f"{'fully synthetic' if cfg.sdt_synthetic == 'full' else 'all synthetic incl. morphs'}): "
            f"posterior mean **{h['accuracy_mean']:.3f}**, {p} % equal-tailed interval "
            f"**{_fmt_iv(h[f'interval_{p}'])}**, {p} % HDI {_fmt_iv(h[f'hdi_{p}'])} "
            f"(observed proportion correct {h['observed_accuracy']:.3f}, {h['n_raters']} raters, {h['n_trials']} trials).  \n"
            f"P(accuracy > 0.5) = {h['p_above_chance']:.3f}. ROPE {_fmt_iv(h['rope'])}: "
            f"P(accuracy in ROPE) = **{h['p_in_rope']:.3f}**; HDI+ROPE decision: **{h['decision']}** "
            "(equivalent = the HDI lies inside the ROPE; different = entirely outside; otherwise undecided).\n")
        if "auth_accuracy" in figs:
            L.append(f"![authenticity accuracy](figures/fig_auth_accuracy.png)\n")
        if "power" in T:
            pw = T["power"]
            L.append("### Data needed for a decision (power by simulation)\n")
            L.append(f"P(decision) per design with ROPE half-width {cfg.rope_halfwidth:g}, {int(pw['n_sims'].iloc[0])} "
                     "simulated studies per cell, fast interval approximation (see `analysis.power`; "
                     "`benchmarks/analysis_power.py` checks it against full Bayesian fits). Trials are per rater, half real "
                     "and half fully synthetic; simulated under the posterior-mean group parameters and at chance.\n")
            L.append(_md_table(pw.drop(columns=["n_sims", "method"])) + "\n")
            for scen, g in pw.groupby("scenario", sort=False):
                col = "p_equivalent" if "chance" in scen else "p_different"
                hit = g[g[col] >= 0.8]
                if len(hit):
                    r = hit.assign(N=hit.n_raters * hit.n_trials).sort_values("N").iloc[0]
                    L.append(f"- {scen}: smallest design in the grid with ≥ 80 % "
                             f"{'equivalence' if col == 'p_equivalent' else 'difference'} decisions: "
                             f"{int(r.n_raters)} raters × {int(r.n_trials)} trials.")
                else:
                    L.append(f"- {scen}: no design in the grid reaches 80 % "
                             f"{'equivalence' if col == 'p_equivalent' else 'difference'} decisions "
                             f"(best {g[col].max():.2f}).")
            L.append("")
    if "sdt" in T:
        L.append("## Signal detection (authenticity)\n")
        L.append("Model: P(answer 'real') = Φ(c_r + d_r·s + u_i), s = ±½ for real/synthetic; rater and stimulus "
                 "random effects. Estimates with 94 % HDIs:\n")
        L.append(_md_table(T["sdt"][["parameter", "mean", "sd", "hdi_3%", "hdi_97%", "r_hat", "ess_bulk"]]) + "\n")
        if "sdt_rater" in figs:
            L.append("![SDT per rater](figures/fig_sdt_rater.png)\n")
    if "psychometric_morph" in T:
        L.append("## Psychometric functions\n")
        L.append("ψ(x) = γ + (1 − γ − λ)·F((x − threshold)/width), hierarchical over raters; sampled as "
                 "F(intercept + slope·z) on the standardised axis z, so a slope near 0 means an observer at chance "
                 "(whose threshold and width are then unbounded, with very wide intervals). "
                 f"(a) morph strength → P('synthetic'): {res.fits['psychometric_morph'].info['spec']}. "
                 f"(b) {cfg.class_evidence} → P(correct class), experts and the model on the same axis: "
                 f"{res.fits['psychometric_class_experts'].info['spec']}.\n")
        L.append("![psychometric functions](figures/fig_psychometric.png)\n")
        L.append(_md_table(T["psychometric_morph"][["model", "parameter", "mean", "hdi_3%", "hdi_97%", "r_hat"]]) + "\n")
        L.append(_md_table(T["psychometric_class"][["model", "parameter", "mean", "hdi_3%", "hdi_97%", "r_hat"]]) + "\n")
    if "metacognition_observed" in T:
        L.append("## Metacognition\n")
        cm = res.plots.get("confidence_maps", {})
        for task, m in cm.items():
            L.append(f"- confidence → probability ({task}): {m.description}")
        L.append("- the model's authenticity answer: 'synthetic' when its anomaly score exceeds "
                 f"{res.plots['model_answers'].attrs.get('anomaly_threshold', float('nan')):.3f} "
                 f"({'median over stimuli' if cfg.anomaly_threshold is None else 'given'}); its confidence is the "
                 "distance from that threshold (no probability, so no calibration for it).")
        L.append("- confident error = an error at the top confidence level (model: probability in the top of K "
                 "equal-width bins on [1/C, 1]); rates are per answer, with Beta(1, 1) 95 % intervals.\n")
        cols = [c for c in ["observer", "task", "n", "accuracy", "type2_auroc", "ece", "brier",
                            "confident_error_rate", "confident_error_rate_95", "error_rate_at_top_conf",
                            "confident_errors", "confident_error_upper95"] if c in T["metacognition_observed"]]
        mo = T["metacognition_observed"]
        L.append(_md_table(mo[mo["observer"].isin(["all experts", "model"])][cols]) + "\n")
        L.append("Per-rater values: `tables/metacognition_observed.csv`.\n")
        if "metad" in T:
            L.append("Meta-d′ and M-ratio (hierarchical over log M as in HMeta-d: d′ and c1 held at each observer's "
                     "type-1 point estimate, type-2 criteria beyond c1; classification uses the folded "
                     "correct/incorrect model with the two-choice-equivalent d′ = 2Φ⁻¹(accuracy)). d′ here has no "
                     "interval (the SDT section gives it one). M-ratio is only interpretable where d′ is clearly "
                     "above 0. The folded model "
                     "assumes one d′ per observer: when difficulty varies across images and confidence tracks it "
                     "(as the model's probability does), M-ratio can exceed 1 without 'super-optimal' metacognition.\n")
            md = T["metad"]
            keep = md["parameter"].str.match(r"^(group_M|d\[model\]|meta_d\[model\]|M\[model\])")
            L.append(_md_table(md[keep][["task", "observer", "parameter", "mean", "hdi_3%", "hdi_97%", "r_hat"]]) + "\n")
        for f in ("type2_roc", "reliability", "metad"):
            if f in figs:
                L.append(f"![{f}](figures/fig_{f}.png)\n")
    if "difference" in T:
        L.append("## Experts vs model on the same stimuli\n")
        L.append(_md_table(T["difference"][["task", "parameter", "mean", "hdi_3%", "hdi_97%", "r_hat",
                                            "P(model > experts)"]]) + "\n")
    if "agreement" in T:
        if "difference" not in T:
            L.append("## Experts vs model on the same stimuli\n")
        ag = T["agreement"]
        L.append(_md_table(ag[ag["observer"].isin(["experts (mean over raters)", "model"])]) + "\n")
        L.append("Per-rater accuracy and Cohen's κ (vs truth, vs the model's answers): `tables/agreement.csv`.\n")
        for f in ("difference", "confusion"):
            if f in figs:
                L.append(f"![{f}](figures/fig_{f}.png)\n")
    L.append("## Diagnostics\n")
    L.append(f"Thresholds: R-hat ≤ {cfg.sampler.rhat_max}, bulk and tail ESS ≥ {cfg.sampler.ess_min:g}, "
             f"divergences ≤ {cfg.sampler.max_divergences}. Sampler: {cfg.sampler.sampler}, {cfg.sampler.chains} "
             f"chains × {cfg.sampler.draws} draws (+{cfg.sampler.tune} tune), target_accept "
             f"{cfg.sampler.target_accept}, seed {cfg.sampler.seed}.\n")
    d = T["diagnostics"].copy()
    if d.empty:
        L.append("No models were fitted (model-free metrics only).\n")
    else:
        d["ok"] = d["ok"].map({True: "ok", False: "**FAILED**"})
        L.append(_md_table(d) + "\n")
    ppc = [t for k, t in T.items() if k.startswith("ppc_") and not t.empty]
    if ppc:
        allp = pd.concat(ppc, ignore_index=True)
        n_flag = int(allp["flag"].sum())
        L.append("### Posterior predictive checks\n")
        reps = (f"up to {cfg.sampler.ppc_draws} posterior draws (thinned evenly)" if cfg.sampler.ppc_draws > 0
                else "all posterior draws")
        L.append(f"{len(allp)} statistics (means of each observed variable, overall and per rater/source/bin), each "
                 f"over replicated data sets from {reps}; "
                 f"posterior predictive p outside [0.01, 0.99]: **{n_flag}** "
                 f"(≈ {0.02 * len(allp):.1f} expected by chance if the models fit). Full table: `tables/ppc_*.csv`.\n")
        if n_flag:
            L.append(_md_table(allp[allp["flag"]][["model", "variable", "statistic", "observed", "replicated_mean",
                                                  "rep_lo94", "rep_hi94", "ppp"]]) + "\n")
        if "ppc_sdt" in figs:
            L.append("![PPC](figures/fig_ppc_sdt.png)\n")
    L.append("## Priors\n")
    L.append((_md_table(T["priors"]) if not T["priors"].empty else "(no models fitted)") + "\n")
    L.append("## Files\n")
    L.append("`tables/*.csv|md` (94 % HDIs), `fits/*.nc` (ArviZ InferenceData, netCDF), `figures/*.pdf|svg|png` "
             "(300 dpi), `provenance.json`.\n")
    return "\n".join(L)
