"""The demo: the bundled model and ``data/pbc_mini`` as a small study, served live or taken by simulated raters
and analysed, so the whole road (build -> raters -> export -> analysis) can be seen without experts."""
from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from cytocore.provenance import sha256_file

REPO = Path(__file__).resolve().parent.parent
DEMO_CONFIG = Path(__file__).resolve().parent / "demo.toml"
DEMO_DATA = REPO / "data" / "pbc_mini"
# the one place that says which model the demo (and `cytostudy build` without --model) uses
DEMO_MODEL = REPO / "data" / "models" / "cascade-128"


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


def ensure_demo_study(out: Path, data: Path = DEMO_DATA, model: Path = DEMO_MODEL, classify: bool = True,
                      rebuild: bool = False, say: Callable[[str], None] = print, device: str | None = None) -> Path:
    """The demo study in ``out``: built once (later calls reuse it), or again with ``rebuild``."""
    from .build import build_study
    from .config import load_study_config
    from cytocore.study_files import STUDY_FILE

    if not Path(model, "cytomodel.json").is_file():
        raise FileNotFoundError(f"no model at {model}; pass a model folder (a cytomodel or cascade)")
    if rebuild and out.exists():
        shutil.rmtree(out)
    if (out / STUDY_FILE).is_file():
        say(f"using the demo study in {out} (rebuild to rebuild it)")
        return out
    say(f"building the demo study in {out} (once; later runs reuse it)")
    cfg = load_study_config(DEMO_CONFIG, {"stimuli.classify": classify})
    return build_study(data, model, out, cfg, overwrite=True, progress=True, on_step=say, device=device)


def analysis_hint(study: Path) -> str:
    """How to analyse a study's answers afterwards (printed when the live demo starts)."""
    return (f"afterwards, analyse the answers: cytostudy export {study} --out {study}/export && "
            f"cytoanalysis report --data {study}/export/responses.parquet --out {study}/report")


def _short_analysis_config():
    """The analysis' defaults with short sampling (a demo, not a paper)."""
    from analysis import AnalysisConfig

    cfg = AnalysisConfig()
    if dataclasses.is_dataclass(getattr(cfg, "sampler", None)):
        names = {f.name for f in dataclasses.fields(cfg.sampler)}
        short = {k: v for k, v in {"draws": 400, "tune": 400, "chains": 2, "ess_min": 100.0}.items() if k in names}
        cfg = dataclasses.replace(cfg, sampler=dataclasses.replace(cfg.sampler, **short))
    if "power_sims" in {f.name for f in dataclasses.fields(cfg)}:
        cfg = dataclasses.replace(cfg, power_sims=50)
    return cfg


def simulate_and_analyse(study: Path, raters: SimulatedRaters, say: Callable[[str], None] = print) -> Path:
    """N simulated raters take ``study`` through the real session code on a fresh SQLite database, the answers are
    exported (with provenance) and analysed; returns the report's path."""
    from analysis import run_analysis, write_report

    from .bots import make_profile, simulate_raters
    from .export import export_study
    from .serve.session import StudyService

    work = study / f"simulated-{raters.n}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    svc = StudyService(study, f"sqlite:///{work / 'responses.db'}")
    say(raters.describe() + f" take the study through the participant's code path ({work / 'responses.db'})")
    prof = make_profile(svc, d_prime=raters.d_prime, criterion=raters.criterion,
                        class_accuracy=raters.class_accuracy, meta_ratio=raters.meta_ratio, lapse=raters.lapse)
    t0 = time.perf_counter()
    res = simulate_raters(svc, raters.n, prof, seed=raters.seed, threads=min(raters.n, 8))
    say(f"{sum(r.answered for r in res)} answers in {time.perf_counter() - t0:.0f} s")
    df, paths = export_study(svc, work / "export")
    svc.close()
    say(f"exported {len(df)} responses -> {paths[1]}")
    say("analysis (short sampling for a demo: 2 chains x 400 draws) ...")
    t0 = time.perf_counter()
    from analysis.inputs import load_export
    data, lineage = load_export(paths[1], study)
    result = run_analysis(data, _short_analysis_config(), lineage=lineage)
    report = write_report(result, work / "report", input_path=str(paths[1]), input_sha256=sha256_file(paths[1]))
    say(f"analysis done in {time.perf_counter() - t0:.0f} s")
    return Path(report)
