"""The road without experts as a chain of steps, each taking the previous one's output:

    build (:func:`study_app.demo.ensure_demo_study`) -> :func:`take_study` (simulated raters, through the
    participant's code path and a fresh SQLite database) -> :func:`export_answers` -> :func:`analyse`

``cytostudy demo --simulate N`` runs :func:`simulate_and_analyse`. Only :func:`analyse` imports the analysis package
(PyMC, ArviZ, SciPy): building, simulated raters and the export — ``cytostudy simulate`` and ``export`` among them —
need the study extra alone (tests/study_app/test_layering.py).
"""
from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from cytocore.provenance import sha256_file

from .bots import make_profile, simulate_raters
from .export import export_study
from .serve.session import StudyService

Say = Callable[[str], None]


@dataclass(frozen=True)
class SimulatedRaters:
    """The simulated raters of ``cytostudy demo --simulate N`` (their parameters are printed with the result)."""
    n: int = 10
    d_prime: float = 1.0
    criterion: float = 0.0
    class_accuracy: float = 0.8
    meta_ratio: float = 0.8
    lapse: float = 0.02
    seed: int = 0

    def describe(self) -> str:
        return (f"{self.n} simulated raters: d' {self.d_prime:g}, criterion {self.criterion:g}, class accuracy "
                f"{self.class_accuracy:g}, meta-d'/d' {self.meta_ratio:g}, lapse rate {self.lapse:g}, seed {self.seed}")


def take_study(study: Path, raters: SimulatedRaters, work: Path, say: Say = print) -> StudyService:
    """``raters`` take ``study`` through the real session code on a fresh SQLite database in ``work``; returns the
    service, open on that database."""
    svc = StudyService(study, f"sqlite:///{work / 'responses.db'}")
    say(raters.describe() + f" take the study through the participant's code path ({work / 'responses.db'})")
    prof = make_profile(svc, d_prime=raters.d_prime, criterion=raters.criterion,
                        class_accuracy=raters.class_accuracy, meta_ratio=raters.meta_ratio, lapse=raters.lapse)
    t0 = time.perf_counter()
    res = simulate_raters(svc, raters.n, prof, seed=raters.seed, threads=min(raters.n, 8))
    say(f"{sum(r.answered for r in res)} answers in {time.perf_counter() - t0:.0f} s")
    return svc


def export_answers(svc: StudyService, work: Path, say: Say = print) -> Path:
    """The answers exported with provenance into ``work/export``; returns the Parquet file (the service is closed)."""
    df, paths = export_study(svc, work / "export")
    svc.close()
    say(f"exported {len(df)} responses -> {paths[1]}")
    return paths[1]


def short_sampling(cfg):
    """An analysis config with short sampling (a demo, not a paper)."""
    if dataclasses.is_dataclass(getattr(cfg, "sampler", None)):
        names = {f.name for f in dataclasses.fields(cfg.sampler)}
        short = {k: v for k, v in {"draws": 400, "tune": 400, "chains": 2, "ess_min": 100.0}.items() if k in names}
        cfg = dataclasses.replace(cfg, sampler=dataclasses.replace(cfg.sampler, **short))
    if "power_sims" in {f.name for f in dataclasses.fields(cfg)}:
        cfg = dataclasses.replace(cfg, power_sims=50)
    return cfg


def analyse(export: Path, study: Path, out: Path, say: Say = print) -> Path:
    """The analysis of an export (short sampling) into ``out``; returns the report's path."""
    # the analysis stack (PyMC, ArviZ, SciPy): this step alone needs it
    from analysis import AnalysisConfig, run_analysis, write_report
    from analysis.inputs import load_export

    say("analysis (short sampling for a demo: 2 chains x 400 draws) ...")
    t0 = time.perf_counter()
    data, lineage, stimuli = load_export(export, study)
    result = run_analysis(data, short_sampling(AnalysisConfig()), lineage=lineage, stimuli=stimuli)
    report = write_report(result, out, input_path=str(export), input_sha256=sha256_file(export))
    say(f"analysis done in {time.perf_counter() - t0:.0f} s")
    return Path(report)


def simulate_and_analyse(study: Path, raters: SimulatedRaters, say: Say = print) -> Path:
    """The chain after the build: simulated raters -> export -> analysis, in ``study/simulated-<n>/``; returns the
    report's path."""
    work = study / f"simulated-{raters.n}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    svc = take_study(study, raters, work, say)
    export = export_answers(svc, work, say)
    return analyse(export, study, work / "report", say)
