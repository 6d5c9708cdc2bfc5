"""Command line: ``cytoanalysis {report,simulate,validate,power}`` (also ``python -m analysis``).

All argument parsing lives here; the flags map onto :class:`analysis.config.AnalysisConfig` fields (defaults <
``--config FILE`` < flags < ``--set key=value ...``).

Exit status: 0 success; 1 a fit failed its diagnostics (unless ``--allow-diagnostic-failures``); 2 bad input
(data or config); 3 an analysis failed (the report is still written, saying which and why).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

__all__ = ["main"]

# flag dest -> config field (dotted for the sampler)
REPORT_FIELDS = {
    "analyses": "analyses", "rope": "rope_halfwidth", "interval": "interval_prob", "sdt_synthetic": "sdt_synthetic",
    "morph_model": "morph_model", "morph_family": "morph_family", "morph_gamma": "morph_gamma",
    "class_family": "class_family", "class_gamma": "class_gamma", "class_evidence": "class_evidence",
    "lapse": "lapse", "anomaly_threshold": "anomaly_threshold", "confidence_scale": "confidence_scale",
    "power_sims": "power_sims", "power_raters": "power_raters", "power_trials": "power_trials",
    "min_attention_accuracy": "min_attention_accuracy", "jobs": "jobs",
    "draws": "sampler.draws", "tune": "sampler.tune", "chains": "sampler.chains", "cores": "sampler.cores",
    "target_accept": "sampler.target_accept", "ppc_draws": "sampler.ppc_draws", "sampler": "sampler.sampler",
    "seed": "sampler.seed", "rhat_max": "sampler.rhat_max", "ess_min": "sampler.ess_min",
    "max_draws": "sampler.max_draws",
}


def _csv_ints(s: str) -> tuple[int, ...]:
    return tuple(int(x) for x in s.split(",") if x.strip())


def _csv(s: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in s.split(",") if x.strip())


def _gamma(s: str):
    try:
        return float(s)
    except ValueError:
        if s not in ("free", "chance"):
            raise argparse.ArgumentTypeError("use a number, 'free' or 'chance'")
        return s


def _add_report(sub) -> None:
    r = sub.add_parser("report", help="fit every model and write figures, tables, netCDF fits, report.md and "
                                      "report.html",
                       description="Validate the responses, fit the models (SDT, psychometric functions, meta-d′, "
                                   "experts vs model), check diagnostics and write a report folder. Settings: "
                                   "defaults < --config FILE < the flags below < --set key=value.")
    r.add_argument("--data", required=True, type=Path,
                   help="an export folder or its responses.parquet / .csv (the stimuli table beside it is joined), "
                        "or one joined table")
    r.add_argument("--out", required=True, type=Path, help="output folder")
    r.add_argument("--study", type=Path, default=None,
                   help="the built study folder (study.json) the responses come from: its hashes go into the "
                        "provenance of every figure")
    r.add_argument("--config", type=Path, default=None, help="analysis.toml ([analysis] table or top level)")
    r.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="config overrides, several after one --set: --set sampler.draws=2000 morph_model=psi")
    r.add_argument("--analyses", type=_csv, default=None,
                   help="comma-separated subset of sdt,psychometric,metacognition,comparison,power,mrmc")
    r.add_argument("--rope", type=float, default=None, help="ROPE half-width around chance accuracy 0.5 (0.05)")
    r.add_argument("--interval", type=float, default=None, help="headline interval probability (0.95)")
    r.add_argument("--sdt-synthetic", choices=("full", "all"), default=None,
                   help="'full': real vs fully synthetic images; 'all': morphs count as synthetic")
    r.add_argument("--no-stimulus-effects", action="store_true", help="drop stimulus random effects in the SDT model")
    r.add_argument("--morph-model", choices=("sdt", "psi"), default=None,
                   help="morph curve: 'sdt' yes/no signal detection (default; the real-or-synthetic design) or "
                        "'psi' = γ + (1 − γ − λ)F (forced-choice designs)")
    r.add_argument("--morph-family", choices=("logistic", "cumulative_normal", "weibull"), default=None)
    r.add_argument("--morph-gamma", type=_gamma, default=None, help="ψ form: guess rate (number or 'free')")
    r.add_argument("--class-family", choices=("logistic", "cumulative_normal", "weibull"), default=None)
    r.add_argument("--class-gamma", type=_gamma, default=None,
                   help="guess rate for class correctness: 'chance' (1/n_classes), 'free' or a number")
    r.add_argument("--class-evidence", default=None, choices=("model_margin", "model_confidence"),
                   help="model-evidence axis for difficulty")
    r.add_argument("--lapse", type=_gamma, default=None, help="lapse rate: 'free' or a number")
    r.add_argument("--anomaly-threshold", type=float, default=None,
                   help="model answers 'synthetic' above this anomaly score (default: median over stimuli)")
    r.add_argument("--confidence-scale", choices=("auto", "percent", "probability", "levels"), default=None)
    r.add_argument("--power-sims", type=int, default=None, help="simulated studies per design in the power table")
    r.add_argument("--power-raters", type=_csv_ints, default=None)
    r.add_argument("--power-trials", type=_csv_ints, default=None)
    r.add_argument("--min-attention-accuracy", type=float, default=None)
    r.add_argument("--allow-diagnostic-failures", action="store_true",
                   help="exit 0 even if a fit fails R-hat/ESS/divergence checks (the report still says so)")
    r.add_argument("--quiet", action="store_true", help="no progress output")
    g = r.add_argument_group("sampling (defaults: analysis.fitting.SamplerConfig)")
    g.add_argument("--draws", type=int, default=None, help="posterior draws per chain")
    g.add_argument("--tune", type=int, default=None, help="tuning steps per chain")
    g.add_argument("--chains", type=int, default=None, help="chains (R-hat needs ≥ 2)")
    g.add_argument("--cores", type=int, default=None, help="processes for the chains (default: one per chain)")
    g.add_argument("--jobs", type=int, default=None,
                   help="analyses run side by side in this many processes, each fit's chains one after the other "
                        "(default: one per CPU; 1: one fit at a time, its chains in parallel as --cores says)")
    g.add_argument("--target-accept", type=float, default=None)
    g.add_argument("--ppc-draws", type=int, default=None,
                   help="posterior draws (thinned evenly) that replicate the data for the posterior predictive checks")
    g.add_argument("--sampler", choices=("pymc", "nutpie"), default=None, help="NUTS implementation")
    g.add_argument("--seed", type=int, default=None, help="random seed for sampling and power simulations")
    g.add_argument("--progressbar", action="store_true", help="show PyMC's per-chain progress bars")
    g.add_argument("--rhat-max", type=float, default=None)
    g.add_argument("--ess-min", type=float, default=None)
    g.add_argument("--max-draws", type=int, default=None, help="bound on draws per chain when ESS falls short")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="cytoanalysis", description=(
        "Bayesian psychometrics and metacognition for human-vs-machine blood-cell image studies "
        "(PyMC + ArviZ). Input: the tidy response table of docs/tidy-responses.md."))
    sub = ap.add_subparsers(dest="command", required=True)
    _add_report(sub)
    s = sub.add_parser("simulate", help="write a simulated study (demo data with known parameters)",
                       description="Simulate raters and the classifier (see analysis.simulate) and write the tidy "
                                   "table; the true parameters go to <out>.truth.json and the parquet metadata.")
    s.add_argument("--out", required=True, type=Path, help="output .parquet or .csv")
    s.add_argument("--raters", type=int, default=10)
    s.add_argument("--trials", type=int, default=300)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--d-prime", type=float, default=0.2, help="group authenticity d′ (real vs fully synthetic)")
    s.add_argument("--criterion", type=float, default=0.0, help="group criterion (> 0: bias to 'real')")
    s.add_argument("--meta-ratio", type=float, default=0.8)
    s.add_argument("--lapse", type=float, default=0.02)
    s.add_argument("--class-threshold", type=float, default=0.15,
                   help="threshold of P(correct class) over the model margin; negative = constant accuracy")
    s.add_argument("--class-width", type=float, default=0.08)
    s.add_argument("--class-accuracy", type=float, default=0.85)
    s.add_argument("--confidence-levels", type=int, default=4)
    s.add_argument("--cannot-tell-rate", type=float, default=0.0)
    s.add_argument("--stimulus-sd", type=float, default=0.3)
    s.add_argument("--model-temperature", type=float, default=1.0, help="< 1 makes the simulated model over-confident")
    s.add_argument("--practice", type=int, default=0, help="practice trials per rater")
    s.add_argument("--attention-checks", type=int, default=0)
    s.add_argument("--classes", default=None, help="comma-separated class names (default: the 8 PBC classes)")
    v = sub.add_parser("validate", help="check a response table and list exclusions",
                       description="Run cytocore.validation.validate_responses and print what would be analysed.")
    v.add_argument("--data", required=True, type=Path, help="as for report")
    p = sub.add_parser("power", help="P(equivalence/difference decision) per design, by simulation",
                       description="Simulate studies under given group parameters and count HDI+ROPE decisions "
                                   "on the population authenticity accuracy (see analysis.power).")
    p.add_argument("--d-prime", type=float, default=0.0)
    p.add_argument("--criterion", type=float, default=0.0)
    p.add_argument("--sigma-d", type=float, default=0.3)
    p.add_argument("--sigma-c", type=float, default=0.2)
    p.add_argument("--sigma-stimulus", type=float, default=0.3)
    p.add_argument("--rope", type=float, default=0.05)
    p.add_argument("--raters", type=_csv_ints, default=(5, 10, 20, 40))
    p.add_argument("--trials", type=_csv_ints, default=(100, 300, 600))
    p.add_argument("--sims", type=int, default=500)
    p.add_argument("--method", choices=("approx", "bayes"), default="approx")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="optional CSV for the table")
    return ap


def report_config(a):
    """The analysis config of a ``report`` command line."""
    from cytocore.config import parse_overrides

    from .config import load_analysis_config
    over = {field: getattr(a, dest) for dest, field in REPORT_FIELDS.items() if getattr(a, dest) is not None}
    if a.no_stimulus_effects:
        over["stimulus_effects"] = False
    if a.progressbar:
        over["sampler.progressbar"] = True
    over.update(parse_overrides(a.overrides))
    return load_analysis_config(a.config, over)


def cmd_report(a) -> int:
    from cytocore.provenance import sha256_file
    from cytocore.study_files import export_file
    from cytocore.validation import validate_responses

    from .fitting import set_quiet
    from .inputs import load_export
    from .pipeline import run_analysis
    from .report import write_report
    set_quiet(a.quiet)
    cfg = report_config(a)
    df, lineage, stimuli = load_export(a.data, a.study)
    rep = validate_responses(df, min_attention_accuracy=cfg.min_attention_accuracy, stimuli=stimuli)
    for e in rep.exclusions:
        print(f"exclusion: {e.describe()}", file=sys.stderr)
    res = run_analysis(rep, cfg, out_dir=a.out, lineage=lineage)
    data = export_file(a.data)
    path = write_report(res, a.out, input_path=str(data), input_sha256=sha256_file(data))
    print(path)
    for r in res.skipped:
        print(f"skipped {r.step}: {r.reason}", file=sys.stderr)
    code = 0
    if not res.diagnostics_ok:
        bad = [f"{f.name}: {'; '.join(f.diagnostics.problems)}" for f in res.fits.values() if not f.diagnostics.ok]
        print("DIAGNOSTIC FAILURE in " + str(len(bad)) + " fit(s):\n  " + "\n  ".join(bad), file=sys.stderr)
        if not a.allow_diagnostic_failures:
            print("exiting with status 1 (use --allow-diagnostic-failures to accept)", file=sys.stderr)
            code = 1
    if res.failed:
        print(f"ANALYSIS FAILURE in {len(res.failed)} step(s) (the report says so; the rest was written):\n  "
              + "\n  ".join(f"{r.step}: {r.message}" for r in res.failed), file=sys.stderr)
        code = 3
    return code


def cmd_simulate(a) -> int:
    from cytocore.provenance import code_version

    from .simulate import DEFAULT_CLASSES, ModelProfile, RaterProfile, simulate_study
    classes = tuple(a.classes.split(",")) if a.classes else DEFAULT_CLASSES
    prof = RaterProfile(d_prime=a.d_prime, criterion=a.criterion, meta_ratio=a.meta_ratio, lapse=a.lapse,
                        class_threshold=None if a.class_threshold < 0 else a.class_threshold,
                        class_width=a.class_width, class_accuracy=a.class_accuracy,
                        confidence_levels=a.confidence_levels, cannot_tell_rate=a.cannot_tell_rate)
    df = simulate_study(a.raters, a.trials, classes, a.seed, profile=prof, stimulus_sd=a.stimulus_sd,
                        model=ModelProfile(temperature=a.model_temperature), practice_trials=a.practice,
                        attention_checks=a.attention_checks)
    df.attrs["simulation"]["code_version"] = code_version()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    if a.out.suffix.lower() == ".csv":
        df.to_csv(a.out, index=False)
    else:
        df.to_parquet(a.out)
    side = a.out.with_name(a.out.name + ".truth.json")
    side.write_text(json.dumps({"simulation": df.attrs["simulation"], "truth": {
        k: v for k, v in df.attrs["truth"].items() if k != "stimulus_effect"}}, indent=2, default=str))
    print(f"wrote {len(df)} rows to {a.out} (truth: {side})")
    return 0


def cmd_validate(a) -> int:
    from cytocore.schema import load_export_tables
    from cytocore.validation import validate_responses
    df, stimuli = load_export_tables(a.data)
    print(validate_responses(df, stimuli=stimuli).to_markdown())
    return 0


def cmd_power(a) -> int:
    from .power import equivalence_power
    t = equivalence_power(mu_d=a.d_prime, mu_c=a.criterion, sigma_d=a.sigma_d, sigma_c=a.sigma_c,
                          sigma_u=a.sigma_stimulus, rope_halfwidth=a.rope, n_raters=a.raters, n_trials=a.trials,
                          n_sims=a.sims, seed=a.seed, method=a.method)
    print(t.to_string(index=False))
    if a.out:
        t.to_csv(a.out, index=False)
    return 0


def _flag_for(msg: str) -> str:
    """A config error names a field; say which flag sets it."""
    for dest, fld in REPORT_FIELDS.items():
        if f"'{fld}'" in msg or f" {fld} " in msg:
            return f" (flag --{dest.replace('_', '-')} or --set {fld}=…)"
    return ""


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", message=".*ArviZ is undergoing a major refactor.*")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*could not link to a BLAS.*")
    a = build_parser().parse_args(argv)
    from cytocore.config import ConfigError
    from cytocore.schema import ResponseDataError
    try:
        return {"report": cmd_report, "simulate": cmd_simulate, "validate": cmd_validate,
                "power": cmd_power}[a.command](a)
    except ResponseDataError as e:
        print(f"error: bad input data: {e}", file=sys.stderr)
        return 2
    except ConfigError as e:
        print(f"error: bad configuration: {e}{_flag_for(str(e))}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
