"""The served app loads no model or analysis stack: the participant page, run with Streamlit's AppTest through a
trial, imports no torch, diffusers, pymc, scipy (or sklearn, or the analysis package). Run in a subprocess so
other tests' imports do not pollute ``sys.modules``."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import study_app

CHILD = r"""
import json, os, sys, time
from streamlit.testing.v1 import AppTest
from study_app.serve.session import StudyService
study, url, app = sys.argv[1], sys.argv[2], sys.argv[3]
os.environ["CYTOSTUDY_STUDY_DIR"], os.environ["CYTOSTUDY_DB_URL"] = study, url
svc = StudyService(study, url)
tok = svc.create_invites(1)[0].token
svc.give_consent(tok); svc.save_profile(tok, "haematologist", 3); svc.finish_instructions(tok)
at = AppTest.from_file(app, default_timeout=120)
at.query_params["t"] = tok
at.run()
t = svc.current_trial(tok, at.session_state["_cyto_session"])
svc.confirm_loaded(tok, t.assignment_id, t.presentation)
at.run()
buttons = [b.key for b in at.button if b.key and b.key.startswith("auth-")]
time.sleep(0.05)
at.button(key=buttons[0]).click().run()
heavy = {"torch", "diffusers", "pymc", "scipy", "sklearn", "analysis", "cytomodel", "pytensor", "arviz"}
print(json.dumps({"buttons": len(buttons), "exceptions": [str(e.value) for e in at.exception],
                  "heavy": sorted({m.split(".")[0] for m in sys.modules} & heavy), "modules": len(sys.modules),
                  "class_buttons": len([b for b in at.button if b.key and b.key.startswith("class-")])}))
"""


def test_the_participant_page_imports_no_model_or_analysis_stack(built_study, tmp_path):
    app = str(Path(study_app.__file__).resolve().parent / "serve" / "web" / "app.py")
    repo = str(Path(study_app.__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=repo + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", CHILD, str(built_study), f"sqlite:///{tmp_path / 'i.db'}", app],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["exceptions"] == [] and got["buttons"] == 8 and got["class_buttons"] == 4   # it really ran a trial
    assert got["heavy"] == [], got


def test_the_study_extra_alone_serves_a_trial(extra_environment, built_study, tmp_path):
    """``cytostudy[study]`` by itself (no torch, scipy, PyMC or scikit-learn installed at all) runs the same trial."""
    env = extra_environment("study")
    assert env.importable("torch", "diffusers", "scipy", "pymc", "sklearn") == []
    pkg = env.run("python", "-c", "import study_app, pathlib; print(pathlib.Path(study_app.__file__).parent)")
    app = Path(pkg.stdout.strip()) / "serve" / "web" / "app.py"
    out = env.run("python", "-c", CHILD, built_study, f"sqlite:///{tmp_path / 's.db'}", app, cwd=tmp_path)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["exceptions"] == [] and got["buttons"] == 8 and got["heavy"] == []
