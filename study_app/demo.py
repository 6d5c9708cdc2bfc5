"""The demo: the bundled model and ``data/pbc_mini`` as a small study, served live or taken by simulated raters
and analysed (:mod:`study_app.workflow`), so the whole road (build -> raters -> export -> analysis) can be seen
without experts."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from cytocore.study_files import STUDY_FILE

REPO = Path(__file__).resolve().parent.parent
DEMO_CONFIG = Path(__file__).resolve().parent / "demo.toml"
DEMO_DATA = REPO / "data" / "pbc_mini"
# the one place that says which model the demo (and `cytostudy build` without --model) uses
DEMO_MODEL = REPO / "data" / "models" / "cascade-128"


def ensure_demo_study(out: Path, data: Path = DEMO_DATA, model: Path = DEMO_MODEL, classify: bool = True,
                      rebuild: bool = False, say: Callable[[str], None] = print, device: str | None = None) -> Path:
    """The demo study in ``out``: built once (later calls reuse it), or again with ``rebuild``."""
    from .build import build_study   # torch and the model: only when the demo study is (re)built
    from .config import load_study_config

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
