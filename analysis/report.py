"""Write the report folder: what the steps have not written yet (figures, tables), the diagnostics and priors
tables, ``provenance.json``, ``report.md`` and the self-contained ``report.html``."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np
import pandas as pd

from cytocore.lineage import LINEAGE_FIELDS, UNKNOWN
from cytocore.provenance import atomic_write_text, sha256_file
from cytocore.study_files import stimuli_table_for

from .fitting import log
from .markdown import md_table
from .outputs import OutputFolder
from .pipeline import AnalysisResult, stamp
from .steps import STEPS, Failed, Skipped

__all__ = ["provenance", "write_report"]


def provenance(res: AnalysisResult, out: OutputFolder, figs: dict[str, dict[str, str]],
               input_path: str | None = None, input_sha256: str | None = None) -> dict:
    """Config, code, package versions, the input's hashes, its lineage, and per figure the hashes of its files
    and of the fits it draws (each fit's netCDF records the same data hash and lineage)."""
    import arviz
    import pymc
    import pytensor
    fits_by_step = {r.step: [f.name for f in r.fits] for r in res.results.values()}
    fit_hash = {n: sha256_file(out.root / "fits" / f"{n}.nc") for n in res.fits if (out.root / "fits" / f"{n}.nc").exists()}
    step_of_fig = {name: r.step for r in res.results.values() for name in r.figures}
    figures = {}
    for name, paths in figs.items():
        used = fits_by_step.get(step_of_fig.get(name, ""), [])
        figures[name] = {"files": {ext: {"path": str(Path(p).relative_to(out.root)), "sha256": sha256_file(p)}
                                   for ext, p in paths.items()},
                         "fits": {n: fit_hash.get(n, UNKNOWN) for n in used},
                         "data_sha256": res.validation.data_sha256,
                         "study_id": res.lineage.get("study_id", UNKNOWN),
                         "study_content_hash": res.lineage.get("study_content_hash", UNKNOWN),
                         "model_weights_sha256": res.lineage.get("model_weights_sha256", UNKNOWN),
                         "model_training_data_hash": res.lineage.get("model_training_data_hash", UNKNOWN)}
    stimuli = stimuli_table_for(input_path) if input_path else None   # an export's second table, when it has one
    if stimuli is not None and stimuli.is_file():
        stim = {"input_stimuli": str(stimuli), "input_stimuli_sha256": sha256_file(stimuli)}
    else:
        stim = {}
    return {**out.stamp, "input": input_path, "input_file_sha256": input_sha256, **stim,
            "lineage_sources": res.lineage.get("sources", {}),
            "versions": {"python": platform.python_version(), "pymc": pymc.__version__, "pytensor": pytensor.__version__,
                         "arviz": arviz.__version__, "numpy": np.__version__, "pandas": pd.__version__,
                         **_optional_versions()},
            "analysis_seconds": res.seconds, "fits": fit_hash, "figures": figures,
            "failed_steps": {r.step: {"message": r.message, "traceback": r.trace} for r in res.failed},
            "skipped_steps": {r.step: r.reason for r in res.skipped}}


def write_report(res: AnalysisResult, out_dir: str | Path, *, input_path: str | None = None,
                 input_sha256: str | None = None) -> Path:
    """Write what is missing to ``out_dir`` (everything, when ``run_analysis`` had no ``out_dir``); returns the
    path of ``report.md``."""
    out = OutputFolder(out_dir, stamp(res.validation, res.config, res.lineage))
    log(f"writing report to {out.root}")
    by_name = {s.name: s for s in STEPS}
    for r in res.results.values():
        for f in r.fits:
            if not (out.root / "fits" / f"{f.name}.nc").exists():
                out.write_fit(f)
        step = by_name.get(r.step)
        if step is None or isinstance(r, (Skipped, Failed)):
            continue
        out.write_tables({k: v for k, v in r.tables.items() if not (out.root / "tables" / f"{k}.csv").exists()})
        if step.figures is not None and not r.figures:
            try:
                r.figures = out.draw(step.figures, r)
            except Exception as e:  # noqa: BLE001 — reported in the report
                r.notes.append(f"its figure failed: {type(e).__name__}: {e}")
    tables = res.tables
    out.write_tables({"diagnostics": tables["diagnostics"], "priors": tables["priors"]})
    figs = {name: paths for r in res.results.values() for name, paths in r.figures.items()}
    prov = provenance(res, out, figs, input_path, input_sha256)
    atomic_write_text(out.root / "provenance.json", json.dumps(prov, indent=2, default=str))
    md = markdown_report(res, prov, tables)
    p = out.root / "report.md"
    atomic_write_text(p, md)
    from .report_html import write_html
    write_html(md, out.root, out.root / "report.html")
    log(f"report: {p} and {out.root / 'report.html'}")
    return p


# --------------------------------------------------------------------------------------------- report.md
def markdown_report(res: AnalysisResult, prov: dict, tables: dict[str, pd.DataFrame]) -> str:
    """report.md: the banner, the data, one section per step (its own text, or why it was skipped or failed), and
    the honesty sections (diagnostics, posterior predictive checks, priors, provenance)."""
    parts = [_title(res, prov), _data(res)]
    by_name = {s.name: s for s in STEPS}
    for name, r in res.results.items():
        parts.append(_step_section(by_name[name], r, res))
    parts += [_diagnostics(res, tables), _ppc(tables), _priors(tables), _provenance(res, prov), _files()]
    return "\n".join(p for p in parts if p)


def _title(res: AnalysisResult, prov: dict) -> str:
    L = ["# Human vs machine on blood-cell images — Bayesian psychometrics and metacognition\n"]
    if res.failed:
        L.append("> **⚠ ANALYSIS FAILURE — some analyses did not finish:** "
                 + "; ".join(f"`{r.step}`: {r.message}" for r in res.failed)
                 + ". Everything else below is complete; see each section.\n")
    if not res.diagnostics_ok:
        bad = [f.name for f in res.fits.values() if not f.diagnostics.ok]
        L.append("> **⚠ DIAGNOSTIC FAILURE — do not interpret these fits without fixing them:** "
                 + ", ".join(bad) + ". See *Diagnostics* below (R-hat, ESS, divergences).\n")
    study = res.lineage.get("study_id", UNKNOWN)
    L.append(f"Study `{study}` · code `{prov['code_version']}` · data SHA-256 `{prov['data_sha256']}` · "
             f"created {prov['created_utc']} · analysis time {res.seconds:.0f} s. "
             "Full configuration, package versions and the hashes of every figure and fit: `provenance.json`.\n")
    return "\n".join(L)


def _data(res: AnalysisResult) -> str:
    return "## Data and exclusions\n\n" + res.validation.to_markdown() + "\n"


def _step_section(step, r, res: AnalysisResult) -> str:
    L = [f"## {step.title}\n"]
    if isinstance(r, Skipped):
        L.append(f"*Not run:* {r.reason}.\n")
        return "\n".join(L)
    if isinstance(r, Failed):
        L.append(f"> **This analysis failed** — `{r.message}`. The other analyses are unaffected; the traceback "
                 f"is in `provenance.json` under `failed_steps` and in the log.\n")
        return "\n".join(L)
    figs = {k: v for k, v in r.figures.items()}
    try:
        L += step.section(r, figs, res.config)
    except Exception as e:  # noqa: BLE001 — a broken section must not lose the report
        L.append(f"> (this section could not be written: {type(e).__name__}: {e}; its tables are in `tables/`)\n")
    L += [f"- note: {n}" for n in r.notes]
    return "\n".join(L) + "\n"


def _optional_versions() -> dict[str, str]:
    """Versions of the sampler and compilers (nutpie, numba) where installed."""
    from importlib.metadata import PackageNotFoundError, version
    out = {}
    for pkg in ("nutpie", "numba"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _diagnostics(res: AnalysisResult, tables) -> str:
    cfg = res.config.sampler
    L = ["## Diagnostics\n",
         f"Gate: R-hat ≤ {cfg.rhat_max}, bulk and tail ESS ≥ {cfg.ess_min:.0f}, divergences ≤ {cfg.max_divergences}; "
         f"{cfg.chains} chains × {cfg.draws} draws after {cfg.tune} tuning steps, sampler {cfg.sampler} (the "
         "compiler of each fit's log-density and its compile and sampling seconds: `tables/diagnostics.csv`). "
         "A fit that misses the gate is run "
         f"again, within bounds: with divergences once at target_accept {cfg.retry_target_accept:g}; with too few "
         f"effective draws (or R-hat above the gate) with twice the draws per chain, up to {cfg.max_draws}.\n"]
    fits = list(res.fits.values())
    if not fits:
        return "\n".join(L + ["(no models fitted)\n"])
    for f in fits:
        L.append(f"- `{f.name}`: **{'OK' if f.diagnostics.ok else 'FAILED'}** — {f.diagnostics.line()[f.diagnostics.line().index(':') + 2:]}"
                 + (f"; {f.retried}" if f.retried else "") + "".join(f"\n  - {p}" for p in f.diagnostics.problems))
    L.append("")
    return "\n".join(L)


def _ppc(tables) -> str:
    ppc = [t for k, t in tables.items() if k.startswith("ppc_") and t is not None and not t.empty]
    if not ppc:
        return ""
    allp = pd.concat(ppc, ignore_index=True)
    n_flag = int(allp["flag"].sum())
    L = ["## Posterior predictive checks\n",
         f"{len(allp)} statistics (means of each observed variable, overall and per rater/source/bin), each over "
         "replicated data sets from up to 500 posterior draws; posterior predictive p outside [0.01, 0.99]: "
         f"**{n_flag}** (≈ {0.02 * len(allp):.1f} expected by chance if the models fit). Full table: "
         "`tables/ppc_*.csv`.\n"]
    if n_flag:
        L.append(md_table(allp[allp["flag"]][["model", "variable", "statistic", "observed", "replicated_mean",
                                               "rep_lo94", "rep_hi94", "ppp"]]) + "\n")
    return "\n".join(L)


def _priors(tables) -> str:
    t = tables["priors"]
    body = md_table(t[~t["parameter"].str.startswith("z_")]) if not t.empty else "(no models fitted)"
    return ("## Priors\n\nRead from each fitted model (PyMC's rendering of every free parameter's distribution; the "
            "standardised offsets z_* of the non-centred parameterisations are Normal(0, 1) and omitted here; all "
            f"of them: `tables/priors.csv`).\n\n{body}\n")


def _provenance(res: AnalysisResult, prov: dict) -> str:
    lin = res.lineage
    rows = [{"link": k, "value": str(lin.get(k, UNKNOWN)), "what": v} for k, v in LINEAGE_FIELDS.items()]
    rows.insert(0, {"link": "responses (data_sha256)", "value": prov["data_sha256"],
                    "what": "the analysed table's content"})
    if prov.get("input_file_sha256"):
        rows.insert(1, {"link": "input file sha256", "value": prov["input_file_sha256"], "what": str(prov["input"])})
    unknown = [k for k in LINEAGE_FIELDS if lin.get(k, UNKNOWN) == UNKNOWN]
    L = ["## Provenance\n",
         "What ties every figure and table to its sources (each figure's file hashes and the hashes of the fits it "
         "draws are in `provenance.json` → `figures`; every netCDF carries the data hash and this lineage):\n",
         md_table(pd.DataFrame(rows)) + "\n"]
    if unknown:
        L.append(f"Not recorded by the input, so this report cannot vouch for them: {', '.join(unknown)} (give the "
                 "study folder — `cytoanalysis report --study` — or an export that records them).\n")
    return "\n".join(L)


def _files() -> str:
    return ("## Files\n\n`tables/*.csv|md` (94 % HDIs), `fits/*.nc` (ArviZ InferenceData, netCDF) with `fits/*.json` "
            "(diagnostics, priors, sampling runs), `figures/*.pdf|svg|png` (300 dpi), `provenance.json`, "
            "`report.html` (this report, self-contained).\n")
