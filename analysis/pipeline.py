"""Run every analysis on a validated response table: validate → context → the steps → the result.

Each step (:mod:`analysis.steps`) is one analysis returning a typed result; one that the data cannot support is
skipped with the reason, one that raises is recorded as failed with its message, and the others still run. The
sampling steps run side by side in a pool of processes (2 CPUs: one samples while the other compiles, draws the
posterior predictive or writes its figures); with an output folder every fit, table and figure is written the
moment it exists.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from cytocore.provenance import code_version
from cytocore.schema import ValidationReport
from cytocore.validation import validate_responses

from .config import ALL_ANALYSES, AnalysisConfig
from .fitting import Fit, available_cpus, log
from .outputs import OutputFolder
from .steps import STEPS, Context, Failed, Headline, SDTResult, Skipped, Step, StepResult, timed_run
from .steps.base import FIT_ORDER

__all__ = ["ALL_ANALYSES", "AnalysisConfig", "AnalysisResult", "analysis_jobs", "run_analysis"]

# costliest first, so the schedule over 2 processes ends evenly (measured fit times, docs/analysis.md)
GROUP_ORDER = ("comparison", "metad_authenticity", "sdt", "class_evidence", "morph", "metad_classification")


@dataclass
class AnalysisResult:
    """Every step's typed result (report order), the validated input and what ties the outputs to their sources."""

    config: AnalysisConfig
    validation: ValidationReport
    results: dict[str, StepResult] = field(default_factory=dict)
    seconds: float = 0.0
    lineage: dict[str, Any] = field(default_factory=dict)

    @property
    def fits(self) -> dict[str, Fit]:
        allf = {f.name: f for r in self.results.values() for f in r.fits}
        return {n: allf[n] for n in FIT_ORDER if n in allf}

    @property
    def headline(self) -> Headline | None:
        r = self.results.get("sdt")
        return r.headline if isinstance(r, SDTResult) else None

    @property
    def failed(self) -> list[Failed]:
        return [r for r in self.results.values() if isinstance(r, Failed)]

    @property
    def skipped(self) -> list[Skipped]:
        return [r for r in self.results.values() if isinstance(r, Skipped)]

    @property
    def diagnostics_ok(self) -> bool:
        return all(f.diagnostics.ok for f in self.fits.values())

    @property
    def tables(self) -> dict[str, pd.DataFrame]:
        out: dict[str, pd.DataFrame] = {}
        for r in self.results.values():
            out.update(r.tables)
        out["diagnostics"] = diagnostics_table(self.fits.values())
        out["priors"] = pd.DataFrame([{"model": f.name, **row} for f in self.fits.values() for row in f.priors],
                                     columns=["model", "parameter", "prior", "meaning"])
        return out


def diagnostics_table(fits) -> pd.DataFrame:
    return pd.DataFrame([{
        "model": f.name, "ok": f.diagnostics.ok, "rhat_max": f.diagnostics.rhat_max,
        "ess_bulk_min": f.diagnostics.ess_bulk_min, "ess_tail_min": f.diagnostics.ess_tail_min,
        "divergences": f.diagnostics.divergences, "draws": f.diagnostics.n_draws, "runs": len(f.attempts),
        "seconds": f.seconds, "backend": f.info.get("backend", ""), "compile_s": f.info.get("compile_s", float("nan")),
        "sample_s": f.info.get("sample_s", float("nan")), "problems": "; ".join(f.diagnostics.problems),
        "reruns": f.retried} for f in fits],
        columns=["model", "ok", "rhat_max", "ess_bulk_min", "ess_tail_min", "divergences", "draws", "runs", "seconds",
                 "backend", "compile_s", "sample_s", "problems", "reruns"])


def analysis_jobs(cfg: AnalysisConfig, n_groups: int) -> int:
    """Processes that run groups of fits at once: ``cfg.jobs`` (or one per CPU), at most one per group."""
    if cfg.jobs is not None and cfg.jobs < 1:
        raise ValueError(f"jobs must be ≥ 1 (got {cfg.jobs}); leave it unset to use one per CPU")
    return max(1, min(cfg.jobs or available_cpus(), n_groups))


def stamp(rep: ValidationReport, cfg: AnalysisConfig, lineage: dict | None) -> dict[str, Any]:
    """What every artefact of this analysis records: code version, data hash, config, lineage, time."""
    return {"code_version": code_version(), "data_sha256": rep.data_sha256, "config": cfg.to_dict(),
            "lineage": {k: v for k, v in (lineage or {}).items() if k != "sources"},
            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def run_analysis(data: pd.DataFrame | ValidationReport, config: AnalysisConfig | None = None, *,
                 out_dir: str | Path | None = None, lineage: dict | None = None,
                 stimuli: pd.DataFrame | None = None) -> AnalysisResult:
    """Validate (if needed; with the export's stimulus table ``stimuli`` when it has one, see
    :func:`analysis.inputs.load_export`) and run the configured analyses.  Never raises on a diagnostic failure or a
    failing analysis — they are recorded (``result.fits[*].diagnostics``, ``result.failed``).  With ``out_dir``
    every fit, table and figure is written there as soon as it exists (:class:`~analysis.outputs.OutputFolder`)."""
    cfg = config or AnalysisConfig()
    t0 = time.perf_counter()
    rep = data if isinstance(data, ValidationReport) else validate_responses(
        data, min_attention_accuracy=cfg.min_attention_accuracy, stimuli=stimuli)
    out = OutputFolder(out_dir, stamp(rep, cfg, lineage)) if out_dir is not None else None
    ctx = Context(rep, cfg, out)
    groups = _groups(cfg)
    jobs = analysis_jobs(cfg, len(groups))
    results: dict[str, StepResult] = {}
    if jobs > 1:
        results.update(_run_in_processes(ctx, groups, jobs, t0))
    else:
        for g in groups:
            results.update(_run_group(ctx, g))
    res = AnalysisResult(cfg, rep, {s.name: results[s.name] for s in STEPS if s.name in results},
                         seconds=time.perf_counter() - t0, lineage=dict(lineage or {}))
    log(f"[{res.seconds:6.1f} s] analysis done ({len(res.fits)} fits, {len(res.failed)} failed steps, "
        f"{len(res.skipped)} skipped)")
    return res


def _groups(cfg: AnalysisConfig) -> list[list[Step]]:
    by: dict[str, list[Step]] = {}
    for s in STEPS:
        by.setdefault(s.group, []).append(s)
    order = [g for g in GROUP_ORDER if g in by] + [g for g in by if g not in GROUP_ORDER and g != "parent"]
    return [by["parent"]] + [by[g] for g in order] if "parent" in by else [by[g] for g in order]


def _run_group(ctx: Context, steps: list[Step]) -> dict[str, StepResult]:
    local = Context(ctx.rep, ctx.cfg, ctx.out, results=dict(ctx.results))
    out = {}
    for s in steps:
        out[s.name] = local.results[s.name] = timed_run(s, local)
    return out


def _worker(args) -> dict[str, StepResult]:
    ctx, steps = args
    res = _run_group(ctx, steps)
    for r in res.values():
        for f in r.fits:
            f.model = None  # a pm.Model does not pickle reliably; nothing downstream of the fit needs it
    return res


def _run_in_processes(ctx: Context, groups: list[list[Step]], jobs: int, t0: float) -> dict[str, StepResult]:
    """Sampling groups in ``jobs`` worker processes while the model-free steps run here.

    Why a ``ProcessPoolExecutor`` on fork: every worker is forked at the first submit, from this (main) thread, so
    no worker is forked from a helper thread that may hold a lock (``multiprocessing.Pool(maxtasksperchild=…)``
    forks replacements from its handler thread); and a worker that dies raises ``BrokenProcessPool`` instead of
    leaving its result waited for forever.  The groups of a broken pool run here, one after the other, so the
    report still has them."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    parent = [g for g in groups if all(s.group == "parent" for s in g)]
    sampling = [g for g in groups if g not in parent]
    jobs = max(1, min(jobs, len(sampling)))
    log(f"[{time.perf_counter() - t0:6.1f} s] {len(sampling)} groups of fits "
        f"({', '.join('+'.join(s.name for s in g) for g in sampling)}) in {jobs} processes, chains one after the "
        "other in each")
    wctx = dataclasses.replace(ctx, cfg=dataclasses.replace(ctx.cfg, jobs=1, sampler=dataclasses.replace(
        ctx.cfg.sampler, cores=1)))
    # fork: the workers inherit the imported PyMC/PyTensor instead of importing them again
    mpc = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    results: dict[str, StepResult] = {}
    with ProcessPoolExecutor(jobs, mp_context=mpc) as pool:
        pending = [(g, pool.submit(_worker, (wctx, g))) for g in sampling]
        for g in parent:   # the model-free steps run here while the workers sample
            results.update(_run_group(ctx, g))
        for g, job in pending:
            try:
                results.update(job.result())
            except BrokenProcessPool as e:
                log(f"  a worker process died ({e or 'no message'}); running {'+'.join(s.name for s in g)} here")
                results.update(_run_group(wctx, g))
            except Exception as e:  # noqa: BLE001 — a step that cannot be returned fails, not the report
                for s in g:
                    results[s.name] = Failed(s.name, message=f"{type(e).__name__}: {e} (in a worker process)")
    return results
