"""Run every analysis on a validated response table: the fits, the model-free metrics and the tables."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import arviz as az
import numpy as np
import pandas as pd

from . import metrics, prepare
from .fitting import Fit, SamplerConfig, available_cpus, draws, fit_model, hdi, log
from .models import (PsychometricSpec, build_difference_model, build_metad_model, build_psychometric_model,
                     build_sdt_model)
from .power import decide, equivalence_power
from cytocore.schema import CANNOT_TELL, ValidationReport, validate_responses

__all__ = ["ALL_ANALYSES", "AnalysisConfig", "AnalysisResult", "analysis_jobs", "run_analysis"]

ALL_ANALYSES = ("sdt", "psychometric", "metacognition", "comparison", "power")
# psychometric parameters in the tables: thresholds/widths first, then the slope (≈ 0: at chance), asymptotes
PSYCHOMETRIC_TABLE = ("group_threshold", "group_width", "mu_slope", "sigma_intercept", "sigma_slope", "gamma",
                      "lapse", "threshold", "width", "slope")


@dataclass
class AnalysisConfig:
    """Everything that determines the analysis (recorded in every output)."""

    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    analyses: tuple[str, ...] = ALL_ANALYSES
    rope_halfwidth: float = 0.05        # ROPE around chance accuracy 0.5
    interval_prob: float = 0.95         # headline interval for the group accuracy
    hdi_prob: float = 0.94              # tables
    sdt_synthetic: str = "full"         # "full": real vs fully synthetic; "all": morphs count as synthetic
    stimulus_effects: bool = True
    morph_family: str = "cumulative_normal"
    morph_gamma: float | str = "free"
    class_family: str = "logistic"
    class_gamma: float | str = "chance"  # "chance" = 1/n_classes, "free", or a number
    class_evidence: str = "model_margin"
    lapse: float | str = "free"
    anomaly_threshold: float | None = None
    confidence_scale: str = "auto"
    power_raters: tuple[int, ...] = (5, 10, 20, 40)
    power_trials: tuple[int, ...] = (100, 300, 600)
    power_sims: int = 300
    min_attention_accuracy: float | None = 0.5
    # analyses whose fits run side by side in separate processes (each fit's chains then one after the other):
    # None = one process per CPU; 1 = one fit after another, each fit's chains in parallel (SamplerConfig.cores)
    jobs: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class AnalysisResult:
    config: AnalysisConfig
    validation: ValidationReport
    fits: dict[str, Fit] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    headline: dict[str, Any] = field(default_factory=dict)
    plots: dict[str, Any] = field(default_factory=dict)     # data the figures need
    seconds: float = 0.0

    @property
    def diagnostics_ok(self) -> bool:
        return all(f.diagnostics.ok for f in self.fits.values())


# every fit, in report order; its position fixes its seed offset, so a fit draws the same samples whichever
# analyses run and in whichever process
FIT_ORDER = ("sdt_authenticity", "psychometric_morph", "psychometric_class_experts", "psychometric_class_model",
             "metad_authenticity_experts", "metad_classification_experts", "metad_authenticity_model",
             "metad_classification_model", "difference_authenticity", "difference_classification")


def _fit(name: str, model, cfg: SamplerConfig, **kw) -> Fit:
    return fit_model(name, model, cfg, seed_offset=FIT_ORDER.index(name) + 1, **kw)


def _summ(fit: Fit, var_names, hdi_prob: float) -> pd.DataFrame:
    s = az.summary(fit.idata, var_names=list(var_names), hdi_prob=hdi_prob, round_to="none")
    s.insert(0, "model", fit.name)
    s.index.name = "parameter"
    return s.reset_index()


def _ppc_table(fit: Fit, groups: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
    """Posterior predictive checks: observed vs replicated mean of each observed variable (overall and per group).

    p = P(T_rep ≥ T_obs) (ties count ½); values near 0 or 1 flag misfit.
    """
    rows = []
    idata = fit.idata
    if "posterior_predictive" not in idata.groups():
        return pd.DataFrame()
    for var in idata.observed_data.data_vars:
        obs = np.asarray(idata.observed_data[var], float)
        rep = np.asarray(idata.posterior_predictive[var], float)
        rep = rep.reshape((-1,) + rep.shape[2:])
        if obs.ndim == 2:  # counts (rater, bin): statistic = share of each bin, pooled over raters
            o = obs.sum(0) / obs.sum()
            r = rep.sum(1) / rep.sum(axis=(1, 2))[:, None]
            for j in range(obs.shape[1]):
                rows.append(_ppc_row(fit.name, var, f"bin {j}", o[j], r[:, j]))
            continue
        rows.append(_ppc_row(fit.name, var, "all", obs.mean(), rep.mean(1)))
        for gname, g in (groups or {}).get(var, {}).items():
            for key in np.unique(g):
                m = g == key
                rows.append(_ppc_row(fit.name, var, f"{gname}={key}", obs[m].mean(), rep[:, m].mean(1)))
    return pd.DataFrame(rows)


def _ppc_row(model, var, group, t_obs, t_rep) -> dict:
    p = float(np.mean(t_rep > t_obs) + 0.5 * np.mean(t_rep == t_obs))
    lo, hi = np.quantile(t_rep, [0.03, 0.97])
    return {"model": model, "variable": var, "statistic": f"mean ({group})", "observed": float(t_obs),
            "replicated_mean": float(np.mean(t_rep)), "rep_lo94": float(lo), "rep_hi94": float(hi),
            "ppp": p, "flag": bool(p < 0.01 or p > 0.99)}


def run_analysis(data: pd.DataFrame | ValidationReport, config: AnalysisConfig | None = None) -> AnalysisResult:
    """Validate (if needed) and run the configured analyses.  Never raises on diagnostic failure — it is recorded
    in ``result.fits[*].diagnostics`` and ``result.diagnostics_ok``."""
    cfg = config or AnalysisConfig()
    t0 = time.perf_counter()
    rep = data if isinstance(data, ValidationReport) else validate_responses(
        data, min_attention_accuracy=cfg.min_attention_accuracy)
    groups = _process_groups(cfg.analyses)
    jobs = analysis_jobs(cfg, len(groups))
    if jobs > 1:
        return _run_in_processes(rep, cfg, groups, jobs, t0)
    res = AnalysisResult(config=cfg, validation=rep)
    K = rep.confidence_levels
    classes = [c for c in rep.classes if c not in rep.excluded_ids("class", "classification")]
    C = len(rep.classes)
    scfg = cfg.sampler
    hp = cfg.hdi_prob
    da = rep.for_task("authenticity")
    dc = rep.for_task("classification")
    dm = rep.for_task("model")
    mod = prepare.model_answers(dm, rep.classes, K, anomaly_threshold=cfg.anomaly_threshold)
    res.plots["model_answers"] = mod
    res.plots["classes"] = classes
    res.plots["K"] = K
    res.plots["auth_data"] = da
    res.plots["class_data"] = dc
    tables = res.tables

    def step(name):
        log(f"[{time.perf_counter() - t0:6.1f} s] {name}")

    # ---------------------------------------------------------------- 1. SDT
    if "sdt" in cfg.analyses:
        step("authenticity: hierarchical SDT")
        a = prepare.sdt_arrays(da, cfg.sdt_synthetic)
        model, priors = build_sdt_model(a["y"], a["s"], a["rater_idx"], a["stim_idx"], a["raters"], a["stimuli"],
                                        stimulus_effects=cfg.stimulus_effects)
        fit = _fit("sdt_authenticity", model, scfg, priors=priors,
                   info={"n_obs": len(a["y"]), "subset": cfg.sdt_synthetic})
        res.fits[fit.name] = fit
        src = np.where(a["s"] > 0, "real", "synthetic")
        rat = np.asarray(a["raters"])[a["rater_idx"]]
        tables["ppc_sdt"] = _ppc_table(fit, {"said_real": {
            "rater": rat, "source": src, "rater/source": np.char.add(np.char.add(rat.astype(str), "/"), src)}})
        acc = draws(fit.idata, "acc_population")
        p = cfg.interval_prob
        lo, hi = np.quantile(acc, [(1 - p) / 2, (1 + p) / 2])
        hlo, hhi = hdi(acc, p)
        h = cfg.rope_halfwidth
        res.headline = {
            "accuracy_mean": float(acc.mean()), "accuracy_median": float(np.median(acc)),
            f"interval_{int(p * 100)}": [float(lo), float(hi)], f"hdi_{int(p * 100)}": [hlo, hhi],
            "rope": [0.5 - h, 0.5 + h], "p_in_rope": float(np.mean(np.abs(acc - 0.5) <= h)),
            "p_above_chance": float(np.mean(acc > 0.5)), "decision": decide(hlo, hhi, h),
            "acc_typical_mean": float(draws(fit.idata, "acc_typical").mean()),
            "observed_accuracy": float(np.mean(a["y"] == (a["s"] > 0))),
            "n_raters": len(a["raters"]), "n_trials": len(a["y"]),
        }
        tables["sdt"] = _summ(fit, ["mu_d", "mu_c", "sigma_d", "sigma_c"] +
                              (["sigma_stimulus"] if cfg.stimulus_effects else []) +
                              ["acc_population", "acc_typical", "d", "c", "accuracy"], hp)
        # per-rater observed accuracy for the figure
        sub = prepare.auth_subset(da, cfg.sdt_synthetic)
        res.plots["rater_obs_acc"] = (sub["auth_response"] == sub["source"]).groupby(sub["participant_id"]).mean()
        if "power" in cfg.analyses:
            step("power by simulation (approximate interval; see analysis.power)")
            post = {k: float(draws(fit.idata, k).mean()) for k in ("mu_d", "mu_c", "sigma_d", "sigma_c")}
            post["sigma_u"] = float(draws(fit.idata, "sigma_stimulus").mean()) if cfg.stimulus_effects else 0.0
            pw_obs = equivalence_power(**post, rope_halfwidth=h, n_raters=cfg.power_raters,
                                       n_trials=cfg.power_trials, n_sims=cfg.power_sims, seed=scfg.seed)
            pw_obs.insert(0, "scenario", "posterior mean (observed effect)")
            pw_null = equivalence_power(**{**post, "mu_d": 0.0, "mu_c": 0.0}, rope_halfwidth=h,
                                        n_raters=cfg.power_raters, n_trials=cfg.power_trials,
                                        n_sims=cfg.power_sims, seed=scfg.seed + 1)
            pw_null.insert(0, "scenario", "exactly at chance (d′ = 0, c = 0)")
            tables["power"] = pd.concat([pw_obs, pw_null], ignore_index=True)

    # ---------------------------------------------------------------- 2. psychometric functions
    if "psychometric" in cfg.analyses:
        step("psychometric: morph strength → P('synthetic')")
        m = prepare.morph_arrays(da)
        spec = PsychometricSpec(cfg.morph_family, cfg.morph_gamma, cfg.lapse)
        model, priors = build_psychometric_model(m["x"], m["k"], m["n"], m["rater_idx"], m["raters"], spec,
                                                 x_range=(0.0, 1.0))
        fit = _fit("psychometric_morph", model, scfg, priors=priors,
                   info={"spec": spec.describe()})
        res.fits[fit.name] = fit
        tables["ppc_psychometric_morph"] = _ppc_table(fit)
        tables["psychometric_morph"] = _summ(fit, [v for v in PSYCHOMETRIC_TABLE if v in fit.idata.posterior], hp)
        res.plots["morph"] = {"spec": spec, "data": m}

        step(f"psychometric: {cfg.class_evidence} → P(correct class), experts")
        gamma = 1.0 / C if cfg.class_gamma == "chance" else cfg.class_gamma
        spec_c = PsychometricSpec(cfg.class_family, gamma, cfg.lapse)
        c = prepare.class_psychometric_arrays(dc, cfg.class_evidence)
        xr = (float(min(c["x"].min(), mod[cfg.class_evidence].min())),
              float(max(c["x"].max(), mod[cfg.class_evidence].max())))
        model, priors = build_psychometric_model(c["x"], c["k"], c["n"], c["rater_idx"], c["raters"], spec_c,
                                                 x_range=xr)
        fit = _fit("psychometric_class_experts", model, scfg, priors=priors,
                   info={"spec": spec_c.describe(), "evidence": cfg.class_evidence})
        res.fits[fit.name] = fit
        tables["ppc_psychometric_class_experts"] = _ppc_table(fit)
        step(f"psychometric: {cfg.class_evidence} → P(correct class), model")
        mx = mod[mod[cfg.class_evidence].notna()]
        model, priors = build_psychometric_model(mx[cfg.class_evidence].to_numpy(float),
                                                 mx["class_correct"].to_numpy(int), np.ones(len(mx), int), None,
                                                 ["model"], spec_c, hierarchical=False, x_range=xr)
        fitm = _fit("psychometric_class_model", model, scfg, priors=priors,
                    info={"spec": spec_c.describe(), "evidence": cfg.class_evidence})
        res.fits[fitm.name] = fitm
        tables["ppc_psychometric_class_model"] = _ppc_table(fitm)
        tables["psychometric_class"] = pd.concat([
            _summ(fit, [v for v in PSYCHOMETRIC_TABLE if v in fit.idata.posterior], hp),
            _summ(fitm, [v for v in PSYCHOMETRIC_TABLE if v in fitm.idata.posterior], hp)], ignore_index=True)
        res.plots["class_psych"] = {"spec": spec_c, "data": c, "model_x": mx[cfg.class_evidence].to_numpy(float),
                                    "model_y": mx["class_correct"].to_numpy(int), "x_range": xr}

    # ---------------------------------------------------------------- 3. metacognition
    if True:  # model-free metacognition: always (cheap, no sampling)
        step("metacognition: model-free (type-2 AUROC, calibration, confident errors)")
        rows = []
        roc = {}
        rel = {}
        sub = prepare.auth_subset(da, cfg.sdt_synthetic)
        pa, cmap_a = prepare.confidence_probability(da["auth_confidence"], da["auth_confidence_level"], K, 0.5,
                                                    cfg.confidence_scale)
        pc, cmap_c = prepare.confidence_probability(dc["class_confidence"], dc["class_confidence_level"], K, 1 / C,
                                                    cfg.confidence_scale)
        res.plots["confidence_maps"] = {"authenticity": cmap_a, "classification": cmap_c}
        corr_a = (da["auth_response"] == da["source"]).to_numpy()
        corr_c = prepare.is_correct_class(dc)
        for task, d, corr, lev, prob in (("authenticity", da, corr_a, da["auth_confidence_level"].to_numpy(), pa),
                                         ("classification", dc, corr_c, dc["class_confidence_level"].to_numpy(), pc)):
            roc[("experts", task)] = {}
            for pid in sorted(d["participant_id"].unique()):
                msk = (d["participant_id"] == pid).to_numpy()
                ce = metrics.confident_errors(corr[msk], lev[msk], K)
                cal = metrics.calibration(prob[msk], corr[msk], bins=sorted(np.unique(prob)))
                rows.append({"observer": pid, "group": "expert", "task": task, "n": int(msk.sum()),
                             "accuracy": float(corr[msk].mean()),
                             "type2_auroc": metrics.type2_auroc(corr[msk], lev[msk]),
                             "ece": cal["ece"], "brier": cal["brier"],
                             "confident_error_rate": ce["rate_all"], "error_rate_at_top_conf": ce["rate_top"]})
                roc[("experts", task)][pid] = metrics.type2_roc(corr[msk], lev[msk], K)
            ce = metrics.confident_errors(corr, lev, K)
            cal = metrics.calibration(prob, corr, bins=sorted(np.unique(prob)))
            rows.append({"observer": "all experts", "group": "expert", "task": task, "n": len(corr),
                         "accuracy": float(corr.mean()), "type2_auroc": metrics.type2_auroc(corr, lev),
                         "ece": cal["ece"], "brier": cal["brier"], "confident_error_rate": ce["rate_all"],
                         "confident_error_rate_95": f"[{ce['rate_all_lo']:.4f}, {ce['rate_all_hi']:.4f}]",
                         "error_rate_at_top_conf": ce["rate_top"]})
            roc[("experts", task)]["pooled"] = metrics.type2_roc(corr, lev, K)
            rel[("experts", task)] = cal["curve"]
        # the model
        for task, corr, conf, lev_q, lev_top, prob in (
                ("authenticity", mod["auth_correct"].to_numpy(), mod["auth_conf"].to_numpy(),
                 mod["auth_level_q"].to_numpy(), mod["auth_level_q"].to_numpy(), None),
                ("classification", mod["class_correct"].to_numpy(), mod["model_confidence"].to_numpy(),
                 mod["class_level_q"].to_numpy(), mod["class_level_fixed"].to_numpy(),
                 mod["model_confidence"].to_numpy())):
            ce = metrics.confident_errors(corr, lev_top, K)
            row = {"observer": "model", "group": "model", "task": task, "n": len(corr),
                   "accuracy": float(corr.mean()), "type2_auroc": metrics.type2_auroc(corr, conf),
                   "confident_error_rate": ce["rate_all"],
                   "confident_error_rate_95": f"[{ce['rate_all_lo']:.4f}, {ce['rate_all_hi']:.4f}]",
                   "error_rate_at_top_conf": ce["rate_top"], "confident_errors": ce["confident_errors"],
                   "confident_error_upper95": ce["rate_all_upper95"]}
            if prob is not None:
                cal = metrics.calibration(prob, corr, bins=10)
                row.update({"ece": cal["ece"], "brier": cal["brier"]})
                rel[("model", task)] = cal["curve"]
                P = mod[[f"model_prob_{k}" for k in rep.classes]].to_numpy()
                Y = (mod["true_class"].to_numpy()[:, None] == np.asarray(rep.classes)[None, :]).astype(float)
                row["brier_multiclass"] = float(np.mean(np.sum((P - Y) ** 2, axis=1)))
            rows.append(row)
            roc[("model", task)] = {"model": metrics.type2_roc(corr, lev_q, K)}
        # experts' confident-error counts for the pooled rows
        tables["metacognition_observed"] = pd.DataFrame(rows)
        res.plots["type2_roc"] = roc
        res.plots["reliability"] = rel

    if "metacognition" in cfg.analyses:
        step("metacognition: hierarchical meta-d′, authenticity (experts)")
        r_idx, raters = prepare._index(sub["participant_id"])
        cS1, cS2 = prepare.metad_counts_auth(sub["source"].to_numpy(), sub["auth_response"].to_numpy(),
                                             sub["auth_confidence_level"].to_numpy(), r_idx, len(raters), K)
        model, priors = build_metad_model(cS1, cS2, raters, K)
        fa = _fit("metad_authenticity_experts", model, scfg, priors=priors)
        res.fits[fa.name] = fa
        tables["ppc_metad_authenticity_experts"] = _ppc_table(fa)
        step("metacognition: hierarchical meta-d′, classification (experts, folded correct/incorrect)")
        r_idx, raters_c = prepare._index(dc["participant_id"])
        cc = prepare.folded_counts(corr_c, dc["class_confidence_level"].to_numpy(), r_idx, len(raters_c), K)
        model, priors = build_metad_model(None, cc, raters_c, K, folded=True)
        fc = _fit("metad_classification_experts", model, scfg, priors=priors)
        res.fits[fc.name] = fc
        tables["ppc_metad_classification_experts"] = _ppc_table(fc)
        step("metacognition: meta-d′ of the model (authenticity and classification)")
        msub = mod[(mod["source"] == "real") | (mod["morph_strength"] >= 1.0)] if cfg.sdt_synthetic == "full" else mod
        mS1, mS2 = prepare.metad_counts_auth(msub["source"].to_numpy(), msub["auth_response"].to_numpy(),
                                             msub["auth_level_q"].to_numpy(), np.zeros(len(msub), int), 1, K)
        model, priors = build_metad_model(mS1, mS2, ["model"], K, hierarchical=False)
        fma = _fit("metad_authenticity_model", model, scfg, priors=priors)
        res.fits[fma.name] = fma
        mc = prepare.folded_counts(mod["class_correct"].to_numpy(), mod["class_level_q"].to_numpy(),
                                   np.zeros(len(mod), int), 1, K)
        model, priors = build_metad_model(None, mc, ["model"], K, hierarchical=False, folded=True)
        fmc = _fit("metad_classification_model", model, scfg, priors=priors)
        res.fits[fmc.name] = fmc
        mrows = []
        for f, task, grp in ((fa, "authenticity", "experts"), (fc, "classification", "experts"),
                             (fma, "authenticity", "model"), (fmc, "classification", "model")):
            vn = ["d", "meta_d", "M"] + (["group_M"] if grp == "experts" else [])
            s = _summ(f, vn, hp)
            s.insert(1, "task", task)
            s.insert(2, "observer", grp)
            mrows.append(s)
        tables["metad"] = pd.concat(mrows, ignore_index=True)
        res.plots["metad"] = {"authenticity": fa, "classification": fc, "model_authenticity": fma,
                              "model_classification": fmc}

    # ---------------------------------------------------------------- 4. human vs model
    # agreement and confusion: model-free, always
    rows = []
    for task in ("authenticity", "classification"):
        d = (da if task == "authenticity" else dc)
        d = d[d["stimulus_id"].isin(mod["stimulus_id"])]
        col, truth, mt = (("auth_response", "source", "auth_response") if task == "authenticity"
                          else ("class_response", "true_class", "model_pred_class"))
        m_ans = d["stimulus_id"].map(dict(zip(mod["stimulus_id"], mod[mt])))
        for pid, g in d.groupby("participant_id"):
            rows.append({"task": task, "observer": pid, "n": len(g), "accuracy": float((g[col] == g[truth]).mean()),
                         "kappa_vs_truth": metrics.cohen_kappa(g[col], g[truth]),
                         "kappa_vs_model": metrics.cohen_kappa(g[col], m_ans[g.index])})
        per = pd.DataFrame(rows)
        per = per[per["task"] == task]
        rows.append({"task": task, "observer": "experts (mean over raters)", "n": int(per["n"].sum()),
                     "accuracy": float(per["accuracy"].mean()), "kappa_vs_truth": float(per["kappa_vs_truth"].mean()),
                     "kappa_vs_model": float(per["kappa_vs_model"].mean())})
        rows.append({"task": task, "observer": "model", "n": len(mod), "accuracy": float((mod[mt] == mod[truth]).mean()),
                     "kappa_vs_truth": metrics.cohen_kappa(mod[mt], mod[truth]), "kappa_vs_model": 1.0})
    tables["agreement"] = pd.DataFrame(rows)
    res.plots["confusion_experts"] = metrics.confusion(
        dc["true_class"], dc["class_response"], classes,
        extra=[CANNOT_TELL] if (dc["class_response"] == CANNOT_TELL).any() else [])
    res.plots["confusion_model"] = metrics.confusion(mod["true_class"], mod["model_pred_class"], classes)
    tables["confusion_experts"] = res.plots["confusion_experts"].reset_index()
    tables["confusion_model"] = res.plots["confusion_model"].reset_index()

    if "comparison" in cfg.analyses:
        diff_rows = []
        for task in ("authenticity", "classification"):
            step(f"human vs model ({task}): accuracy difference with shared stimulus difficulty")
            d = da if task == "authenticity" else dc
            d = d[d["stimulus_id"].isin(mod["stimulus_id"])]
            if task == "authenticity":
                y_h = (d["auth_response"] == d["source"]).to_numpy(int)
                y_m = mod["auth_correct"].to_numpy(int)
            else:
                y_h = prepare.is_correct_class(d).astype(int)
                y_m = mod["class_correct"].to_numpy(int)
            r_idx, raters = prepare._index(d["participant_id"])
            stimuli = list(mod["stimulus_id"])
            lut = {s: i for i, s in enumerate(stimuli)}
            model, priors = build_difference_model(y_h, r_idx, d["stimulus_id"].map(lut).to_numpy(int), y_m,
                                                   np.arange(len(mod)), raters, stimuli)
            fit = _fit(f"difference_{task}", model, scfg, priors=priors)
            res.fits[fit.name] = fit
            tables[f"ppc_difference_{task}"] = _ppc_table(
                fit, {"correct_experts": {"rater": np.asarray(raters)[r_idx]}})
            diff = draws(fit.idata, "difference")
            s = _summ(fit, ["acc_experts", "acc_model", "difference", "delta", "sigma_rater", "sigma_stimulus"], hp)
            s.insert(1, "task", task)
            s["P(model > experts)"] = np.where(s["parameter"] == "difference", float(np.mean(diff > 0)), np.nan)
            diff_rows.append(s)
            res.plots[f"difference_{task}"] = diff
        tables["difference"] = pd.concat(diff_rows, ignore_index=True)

    _fit_tables(res)
    res.seconds = time.perf_counter() - t0
    step("analysis done")
    return res


def _fit_tables(res: AnalysisResult) -> None:
    """Diagnostics and priors of every fit (the report's honesty tables)."""
    res.tables["diagnostics"] = pd.DataFrame([{
        "model": f.name, "ok": f.diagnostics.ok, "rhat_max": f.diagnostics.rhat_max,
        "ess_bulk_min": f.diagnostics.ess_bulk_min, "ess_tail_min": f.diagnostics.ess_tail_min,
        "divergences": f.diagnostics.divergences, "draws": f.diagnostics.n_draws, "seconds": f.seconds,
        "problems": "; ".join(f.diagnostics.problems)} for f in res.fits.values()])
    res.tables["priors"] = pd.DataFrame([{"model": f.name, "parameter": k, "prior": v}
                                         for f in res.fits.values() for k, v in f.priors.items()])


# ---------------------------------------------------------------------------------------------------------------
# fits side by side: 2 CPUs run one fit's sampling while the other compiles, draws the posterior predictive and
# computes diagnostics (serial work that parallel chains leave on one core)
# ---------------------------------------------------------------------------------------------------------------
def _process_groups(analyses: tuple[str, ...]) -> list[tuple[str, ...]]:
    """The analyses that sample, split into independent groups, costliest first (so the schedule ends evenly)."""
    groups = [(a,) for a in ("metacognition", "comparison", "psychometric") if a in analyses]
    if "sdt" in analyses:
        groups.append(("sdt", "power") if "power" in analyses else ("sdt",))
    return groups


def analysis_jobs(cfg: AnalysisConfig, n_groups: int) -> int:
    """Processes that run groups of fits at once: ``cfg.jobs`` (or one per CPU), at most one per group."""
    if cfg.jobs is not None and cfg.jobs < 1:
        raise ValueError(f"jobs must be ≥ 1 (got {cfg.jobs}); leave it unset to use one per CPU")
    return max(1, min(cfg.jobs or available_cpus(), n_groups))


def _run_group(args) -> AnalysisResult:
    rep, cfg = args
    res = run_analysis(rep, cfg)
    for f in res.fits.values():
        f.model = None  # a pm.Model does not pickle reliably; nothing downstream of the fit needs it
    return res


def _run_in_processes(rep: ValidationReport, cfg: AnalysisConfig, groups, jobs: int, t0: float) -> AnalysisResult:
    import multiprocessing as mp

    log(f"[{time.perf_counter() - t0:6.1f} s] {len(groups)} groups of fits ({', '.join('+'.join(g) for g in groups)}) "
        f"in {jobs} processes, chains one after the other in each")
    sub = [dataclasses.replace(cfg, analyses=g, jobs=1, sampler=dataclasses.replace(cfg.sampler, cores=1))
           for g in groups]
    # fork: the workers inherit the imported PyMC/PyTensor instead of importing them again
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    with ctx.Pool(jobs, maxtasksperchild=1) as pool:
        parts = pool.map(_run_group, [(rep, c) for c in sub], chunksize=1)
    res = AnalysisResult(config=cfg, validation=rep)
    for part in parts:
        res.fits.update(part.fits)
        res.tables.update(part.tables)
        res.plots.update(part.plots)
        res.headline = res.headline or part.headline
    res.fits = {n: res.fits[n] for n in FIT_ORDER if n in res.fits}
    _fit_tables(res)
    res.seconds = time.perf_counter() - t0
    log(f"[{res.seconds:6.1f} s] analysis done")
    return res
