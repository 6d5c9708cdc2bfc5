"""Parameter recovery: coverage of 90 % central posterior intervals over repeated simulated studies.

Scenarios (each simulated with analysis.simulate and fitted with the model the report uses):
  sdt        hierarchical probit SDT (d′, criterion, population accuracy)
  metad_auth hierarchical meta-d′ on authenticity (M-ratio, meta-d′; d′ is a fixed point estimate there)
  metad_cls  folded meta-d′ on classification (constant accuracy, so the folded model is exact)
  morph_yesno  the yes/no SDT morph model (analysis.psychometric.build_morph_sdt_model), fitted to data from a
             generator written here, independently of the fitting code: a Weibull-shaped d′(s) (not the fitted
             rescaled cumulative normal) set so that d′ reaches half its maximum at each rater's threshold, trials
             simulated one by one as an evidence sample against a criterion on the noise axis; criteria ≠ 0,
             d′ 0.3–1.5, thresholds 0.3–0.8; targets: coverage ≥ 0.85 for threshold and criterion per rater,
             |mean group-threshold bias| ≤ 0.05
  morph_dispersion  stimulus difficulty: the same independent generator with stimulus effects (uniform, SD 0.5,
             shared by the raters) fitted per answer with and without a stimulus effect and per cell binomial and
             beta-binomial; LOO between forms fitted to the same observations, coverage for each
  morph      (ψ form) hierarchical cumulative-normal psychometric function over morph strength (γ, λ free)
  cls_psych  hierarchical logistic psychometric function over the model margin (γ = 1/C fixed, λ free)

Target: every parameter's coverage ≥ 0.85.  Prints one line per parameter: coverage, number of intervals,
its binomial standard error, and PASS/BELOW.

    nice -n 10 python benchmarks/analysis_recovery.py --reps 20 [--scenarios sdt,metad_auth] [--out results.csv]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings

import numpy as np
import pandas as pd
from scipy.stats import norm

warnings.filterwarnings("ignore")

from analysis import prepare  # noqa: E402
from analysis.fitting import SamplerConfig, draws, fit_model, set_quiet  # noqa: E402
from analysis.models import build_metad_model, build_sdt_model  # noqa: E402
from analysis.psychometric import PsychometricSpec, build_morph_sdt_model, build_psychometric_model  # noqa: E402
from cytocore.validation import validate_responses  # noqa: E402
from analysis.simulate import RaterProfile, simulate_study  # noqa: E402

CLASSES = ("a", "b", "c", "d", "e", "f")


def interval(x, p=0.90):
    return np.quantile(x, [(1 - p) / 2, (1 + p) / 2], axis=0)


def cover(rows, scen, rep, name, post, truth):
    lo, hi = interval(post)
    lo, hi, truth = np.atleast_1d(lo), np.atleast_1d(hi), np.atleast_1d(truth)
    for l, h, t in zip(lo, hi, truth):
        if not (np.isfinite(l) and np.isfinite(h)):   # not estimated (an M-ratio where d′ is not credibly > 0)
            continue
        rows.append({"scenario": scen, "rep": rep, "parameter": name, "truth": float(t), "lo": float(l),
                     "hi": float(h), "covered": bool(l <= t <= h)})


def run_sdt(rep, cfg, R, T, rows):
    prof = RaterProfile(d_prime=1.0, criterion=0.2, lapse=0.0)
    df = simulate_study(R, T, CLASSES, seed=1000 + rep, profile=prof, stimulus_sd=0.3,
                        rater_sd={"d_prime": 0.4, "criterion": 0.3})
    tr = df.attrs["truth"]
    d = validate_responses(df).data
    a = prepare.sdt_arrays(d)
    m, _ = build_sdt_model(a["y"], a["s"], a["rater_idx"], a["stim_idx"], a["raters"], a["stimuli"])
    f = fit_model("sdt", m, cfg, seed_offset=rep)
    g = tr["group"]
    tau = math.sqrt(1 + g["sigma_c"] ** 2 + g["sigma_d"] ** 2 / 4 + g["sigma_stimulus"] ** 2)
    acc_pop = 0.5 * (norm.cdf((g["mu_c"] + g["mu_d"] / 2) / tau) + norm.cdf((g["mu_d"] / 2 - g["mu_c"]) / tau))
    cover(rows, "sdt", rep, "mu_d", draws(f.idata, "mu_d"), g["mu_d"])
    cover(rows, "sdt", rep, "mu_c", draws(f.idata, "mu_c"), g["mu_c"])
    cover(rows, "sdt", rep, "sigma_stimulus", draws(f.idata, "sigma_stimulus"), g["sigma_stimulus"])
    cover(rows, "sdt", rep, "acc_population", draws(f.idata, "acc_population"), acc_pop)
    cover(rows, "sdt", rep, "d[rater]", draws(f.idata, "d"), [tr["raters"][r]["d_prime"] for r in a["raters"]])
    cover(rows, "sdt", rep, "c[rater]", draws(f.idata, "c"), [tr["raters"][r]["criterion"] for r in a["raters"]])
    return f


def _raters_log_M(truth, raters) -> float:
    return float(np.mean([np.log(truth["raters"][r]["meta_ratio"]) for r in raters]))


def run_metad_auth(rep, cfg, R, T, rows):
    prof = RaterProfile(d_prime=1.5, criterion=0.0, meta_ratio=0.8, lapse=0.0)
    df = simulate_study(R, T, CLASSES, seed=2000 + rep, profile=prof, stimulus_sd=0.0, morph_fraction=0.0,
                        rater_sd={"d_prime": 0.3, "criterion": 0.2, "log_meta_ratio": 0.25})
    tr = df.attrs["truth"]
    d = validate_responses(df).data
    r_idx, raters = prepare._index(d["participant_id"])
    cS1, cS2 = prepare.metad_counts_auth(d["source"].to_numpy(), d["auth_response"].to_numpy(),
                                         d["auth_confidence_level"].to_numpy(), r_idx, len(raters), 4)
    m, _ = build_metad_model(cS1, cS2, raters, 4)
    f = fit_model("metad_auth", m, cfg, seed_offset=rep)
    # the experts' group M (metad_group "raters", the default) is these raters' geometric mean: its truth is theirs
    cover(rows, "metad_auth", rep, "log group_M", np.log(draws(f.idata, "group_M")), _raters_log_M(tr, raters))
    cover(rows, "metad_auth", rep, "M[rater]", draws(f.idata, "M"), [tr["raters"][r]["meta_ratio"] for r in raters])
    rows[-1]["reruns"] = len(f.attempts) - 1
    cover(rows, "metad_auth", rep, "meta_d[rater]", draws(f.idata, "meta_d"), [tr["raters"][r]["meta_d"] for r in raters])
    return f


def run_metad_cls(rep, cfg, R, T, rows):
    acc = 0.8
    prof = RaterProfile(class_threshold=None, class_accuracy=acc, meta_ratio=0.8, lapse=0.0)
    df = simulate_study(R, T, CLASSES, seed=3000 + rep, profile=prof, rater_sd={"log_meta_ratio": 0.25})
    tr = df.attrs["truth"]
    d = validate_responses(df).data
    r_idx, raters = prepare._index(d["participant_id"])
    corr = (d["class_response"] == d["true_class"]).to_numpy()
    cc = prepare.folded_counts(corr, d["class_confidence_level"].to_numpy(), r_idx, len(raters), 4)
    m, _ = build_metad_model(None, cc, raters, 4, folded=True)
    f = fit_model("metad_cls", m, cfg, seed_offset=rep)
    # the experts' group M (metad_group "raters", the default) is these raters' geometric mean: its truth is theirs
    cover(rows, "metad_cls", rep, "log group_M", np.log(draws(f.idata, "group_M")), _raters_log_M(tr, raters))
    cover(rows, "metad_cls", rep, "M[rater]", draws(f.idata, "M"), [tr["raters"][r]["meta_ratio"] for r in raters])
    return f


def run_morph(rep, cfg, R, T, rows):
    prof = RaterProfile(d_prime=3.0, criterion=0.0, lapse=0.04)
    df = simulate_study(R, T, CLASSES, seed=4000 + rep, profile=prof, stimulus_sd=0.0, morph_fraction=0.7,
                        morph_levels=(0.2, 0.35, 0.5, 0.65, 0.8), rater_sd={"d_prime": 0.4, "criterion": 0.3})
    tr = df.attrs["truth"]
    d = validate_responses(df).data
    a = prepare.morph_arrays(d)
    m, _ = build_psychometric_model(a["x"], a["k"], a["n"], a["rater_idx"], a["raters"],
                                    PsychometricSpec("cumulative_normal", "free", "free"), x_range=(0, 1))
    f = fit_model("morph", m, cfg, seed_offset=rep)
    cover(rows, "morph", rep, "threshold[rater]", draws(f.idata, "threshold"),
          [tr["raters"][r]["morph_threshold"] for r in a["raters"]])
    cover(rows, "morph", rep, "width[rater]", draws(f.idata, "width"),
          [tr["raters"][r]["morph_width"] for r in a["raters"]])
    cover(rows, "morph", rep, "gamma", draws(f.idata, "gamma"), prof.lapse / 2)
    cover(rows, "morph", rep, "lapse", draws(f.idata, "lapse"), prof.lapse / 2)
    return f


YESNO_LEVELS = (0.2, 0.4, 0.6, 0.8, 1.0)


def yesno_study(rep: int, R: int, T: int, stimulus_sd: float = 0.0) -> dict:
    """Independent generator for the yes/no morph design: half the trials real images, the rest spread over the
    strengths in YESNO_LEVELS.  Rater r: d′_r(s) = dmax_r·W(s)/W(1), W(s) = 1 − exp(−(s/a_r)^b_r) with a_r solved so
    that d′_r(t_r) = dmax_r/2; evidence x ~ N(d′_r(s), 1), answer 'synthetic' iff x > k_r.  In the analysis'
    convention c_r = k_r − dmax_r/2 (> 0: bias to 'real')."""
    from scipy.optimize import brentq
    rng = np.random.default_rng(7000 + rep)
    t_group = rng.uniform(0.35, 0.75)
    mu_c = rng.choice([-1, 1]) * rng.uniform(0.15, 0.5)
    raters = []
    for r in range(R):
        t = float(np.clip(t_group + rng.normal(0, 0.06), 0.3, 0.8))
        b = rng.uniform(max(2.0, 1.2 * np.log(0.5) / np.log(t)), 5.0)  # W(t)/W(1) → t^b as a → ∞: need t^b < ½
        dmax = rng.uniform(0.3, 1.5)
        c = mu_c + rng.normal(0, 0.25)
        W = lambda s, a: 1 - np.exp(-(np.asarray(s) / a) ** b)  # noqa: E731
        a = brentq(lambda a: W(t, a) / W(1.0, a) - 0.5, 1e-3, 50.0)
        raters.append({"t": t, "b": b, "a": a, "dmax": dmax, "c": c, "k": c + dmax / 2, "W": W})
    n_real = T // 2
    strengths = np.r_[np.zeros(n_real), np.resize(np.asarray(YESNO_LEVELS), T - n_real)]
    # stimulus effects: uniform with the given SD (not normal, the fitted form), the same image for every rater
    u = rng.uniform(-1, 1, T) * stimulus_sd * np.sqrt(3)
    x, k, n, idx, trials = [], [], [], [], []
    for i, p in enumerate(raters):
        d_s = p["dmax"] * p["W"](strengths, p["a"]) / p["W"](1.0, p["a"])
        said_syn = rng.normal(d_s + u, 1.0) > p["k"]
        trials.append(said_syn.astype(int))
        for s in np.unique(strengths):
            m = strengths == s
            x.append(s), k.append(int(said_syn[m].sum())), n.append(int(m.sum())), idx.append(i)
    return {"x": np.array(x), "k": np.array(k), "n": np.array(n), "rater_idx": np.array(idx),
            "raters": [f"r{i:02d}" for i in range(R)], "truth": raters, "t_group": t_group,
            "trials": {"x": np.tile(strengths, R), "k": np.concatenate(trials), "n": np.ones(R * T, int),
                       "rater_idx": np.repeat(np.arange(R), T), "stimulus_idx": np.tile(np.arange(T), R),
                       "stimuli": [f"s{j}" for j in range(T)]}}


def run_morph_yesno(rep, cfg, R, T, rows):
    sim = yesno_study(rep, R, T)
    m, meanings = build_morph_sdt_model(sim["x"], sim["k"], sim["n"], sim["rater_idx"], sim["raters"])
    f = fit_model("morph_yesno", m, cfg, priors=meanings, seed_offset=rep)
    tr = sim["truth"]
    cover(rows, "morph_yesno", rep, "threshold[rater]", draws(f.idata, "threshold"), [p["t"] for p in tr])
    cover(rows, "morph_yesno", rep, "c[rater]", draws(f.idata, "c"), [p["c"] for p in tr])
    cover(rows, "morph_yesno", rep, "d_max[rater]", draws(f.idata, "d_max"), [p["dmax"] for p in tr])
    cover(rows, "morph_yesno", rep, "group_threshold", draws(f.idata, "group_threshold"), sim["t_group"])
    rows[-1]["bias"] = float(np.median(draws(f.idata, "group_threshold")) - sim["t_group"])
    return f


LOO_ROWS: list[dict] = []


def _loo(f):
    import arviz as az
    import pymc as pm
    pm.compute_log_likelihood(f.idata, model=f.model, progressbar=False, compile_kwargs={"mode": "FAST_COMPILE"})
    return az.loo(f.idata)


def run_morph_dispersion(rep, cfg, R, T, rows, stimulus_sd: float = 0.5):
    """Stimulus difficulty: the independent yes/no generator with stimulus effects (uniform, SD 0.5, shared by the
    raters), fitted four ways — per answer with a stimulus effect or without; per rater × strength cell binomial or
    beta-binomial (η).  LOO (PSIS) compares the forms fitted to the same observations; coverage of the group
    threshold and the per-rater thresholds says which intervals are honest."""
    sim = yesno_study(rep, R, T, stimulus_sd)
    tr, ts = sim["truth"], sim["trials"]
    fits = {}
    for form, data, disp in (("trial+stimulus", ts, "stimulus"), ("trial", ts, "none"),
                             ("cell+betabinomial", sim, "betabinomial"), ("cell", sim, "none")):
        extra = {"stimulus_idx": ts["stimulus_idx"], "stimuli": ts["stimuli"]} if disp == "stimulus" else {}
        m, meanings = build_morph_sdt_model(data["x"], data["k"], data["n"], data["rater_idx"], sim["raters"],
                                            dispersion=disp, **extra)
        f = fit_model(f"morph_{form}", m, cfg, priors=meanings, seed_offset=rep)
        fits[form] = f
        print(f"    {form}: {f.diagnostics.line()}", file=sys.stderr, flush=True)   # main() logs only the first form
        scen = f"dispersion:{form}"
        cover(rows, scen, rep, "threshold[rater]", draws(f.idata, "threshold"), [p["t"] for p in tr])
        cover(rows, scen, rep, "group_threshold", draws(f.idata, "group_threshold"), sim["t_group"])
        rows[-1]["bias"] = float(np.median(draws(f.idata, "group_threshold")) - sim["t_group"])
    for a, b in (("trial+stimulus", "trial"), ("cell+betabinomial", "cell")):
        la, lb = _loo(fits[a]), _loo(fits[b])
        LOO_ROWS.append({"rep": rep, "comparison": f"{a} vs {b}", "elpd_diff": float(la.elpd_loo - lb.elpd_loo),
                         "se_diff_approx": float(np.sqrt(la.se**2 + lb.se**2)),
                         "pareto_k_bad": int((la.pareto_k > 0.7).sum() + (lb.pareto_k > 0.7).sum())})
    return fits["trial+stimulus"]


def run_cls_psych(rep, cfg, R, T, rows):
    prof = RaterProfile(class_threshold=0.3, class_width=0.1, class_family="logistic", lapse=0.04)
    df = simulate_study(R, T, CLASSES, seed=5000 + rep, profile=prof,
                        rater_sd={"class_threshold": 0.05, "log_class_width": 0.2})
    tr = df.attrs["truth"]
    d = validate_responses(df).data
    a = prepare.class_psychometric_arrays(d)
    C = len(CLASSES)
    m, _ = build_psychometric_model(a["x"], a["k"], a["n"], a["rater_idx"], a["raters"],
                                    PsychometricSpec("logistic", 1.0 / C, "free"))
    f = fit_model("cls_psych", m, cfg, seed_offset=rep)
    cover(rows, "cls_psych", rep, "threshold[rater]", draws(f.idata, "threshold"),
          [tr["raters"][r]["class_threshold"] for r in a["raters"]])
    cover(rows, "cls_psych", rep, "width[rater]", draws(f.idata, "width"),
          [tr["raters"][r]["class_width"] for r in a["raters"]])
    cover(rows, "cls_psych", rep, "group_threshold", draws(f.idata, "group_threshold"), prof.class_threshold)
    cover(rows, "cls_psych", rep, "lapse", draws(f.idata, "lapse"), prof.lapse * (1 - 1 / C))
    return f


SCENARIOS = {"sdt": run_sdt, "metad_auth": run_metad_auth, "metad_cls": run_metad_cls,
             "morph_yesno": run_morph_yesno, "morph_dispersion": run_morph_dispersion, "morph": run_morph,
             "cls_psych": run_cls_psych}


def summarise(df: pd.DataFrame, target: float = 0.85) -> pd.DataFrame:
    g = df.groupby(["scenario", "parameter"], sort=False)["covered"].agg(["mean", "count"]).reset_index()
    g["se"] = np.sqrt(g["mean"] * (1 - g["mean"]) / g["count"]).round(3)
    g["status"] = np.where(g["mean"] >= target, "PASS", "BELOW")
    return g.rename(columns={"mean": "coverage", "count": "n_intervals"})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--raters", type=int, default=8)
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--draws", type=int, default=SamplerConfig.draws, help="per chain (default: the report's)")
    ap.add_argument("--tune", type=int, default=SamplerConfig.tune)
    ap.add_argument("--chains", type=int, default=SamplerConfig.chains)
    ap.add_argument("--sampler", default=SamplerConfig.sampler, choices=("pymc", "nutpie"))
    ap.add_argument("--out", default=None, help="CSV of every interval")
    a = ap.parse_args(argv)
    set_quiet(True)
    cfg = SamplerConfig(draws=a.draws, tune=a.tune, chains=a.chains, cores=1, sampler=a.sampler,
                        posterior_predictive=False)
    rows: list[dict] = []
    diag_fail = 0
    n_fits = 0
    t0 = time.perf_counter()
    for scen in a.scenarios.split(","):
        for rep in range(a.reps):
            f = SCENARIOS[scen](rep, cfg, a.raters, a.trials, rows)
            n_fits += 1
            diag_fail += not f.diagnostics.ok
            print(f"[{time.perf_counter() - t0:7.0f} s] {scen} rep {rep}: {f.seconds:.0f} s, {f.diagnostics.line()}"
                  + (f" ({f.retried})" if f.retried else ""),
                  file=sys.stderr, flush=True)
            if a.out:   # after every study, so that a run stopped early keeps what it measured
                pd.DataFrame(rows).to_csv(a.out, index=False)
                if LOO_ROWS:
                    pd.DataFrame(LOO_ROWS).to_csv(a.out.replace(".csv", "_loo.csv"), index=False)
    res = summarise(pd.DataFrame(rows))
    print(f"\nCoverage of 90 % central intervals ({a.reps} simulated studies per scenario, {a.raters} raters × "
          f"{a.trials} trials; target ≥ 0.85); fits failing diagnostics: {diag_fail}/{n_fits}; "
          f"wall {time.perf_counter() - t0:.0f} s")
    print(res.to_string(index=False))
    df = pd.DataFrame(rows)
    if LOO_ROWS:
        lt = pd.DataFrame(LOO_ROWS)
        print("\nLOO (elpd difference, positive = the first form predicts held-out answers better):")
        print(lt.groupby("comparison")[["elpd_diff", "se_diff_approx", "pareto_k_bad"]].agg(["mean", "min", "max"])
              .round(2).to_string())
        if a.out:
            lt.to_csv(a.out.replace(".csv", "_loo.csv"), index=False)
    if "bias" in df:
        for scen, g in df.dropna(subset=["bias"]).groupby("scenario", sort=False):
            b = g["bias"]
            print(f"\n{scen} group threshold (posterior median − truth) over {len(b)} studies: mean bias "
                  f"{b.mean():+.4f} (target |bias| ≤ 0.05: {'PASS' if abs(b.mean()) <= 0.05 else 'MISSED'}), "
                  f"mean |error| {b.abs().mean():.4f}, max |error| {b.abs().max():.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
