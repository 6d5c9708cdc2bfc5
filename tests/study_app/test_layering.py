"""The layers of the repository: cytocore at the bottom; cytomodel and analysis on it, neither importing the other;
study_app on top, importing the analysis only in the workflow's analysis step — so ``cytostudy simulate`` (simulated
raters through the participant's code, cytocore's rater model) runs without the analysis stack (checked in a
subprocess, so other tests' imports do not pollute ``sys.modules``)."""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import study_app

REPO = Path(study_app.__file__).resolve().parent.parent
PACKAGES = ("cytocore", "cytomodel", "study_app", "analysis")


def project_imports() -> list[tuple[str, str, str | None]]:
    """(importing module, imported project package, enclosing function or None) for every import in the packages;
    relative imports stay inside their package."""
    found = []
    for pkg in PACKAGES:
        for f in sorted((REPO / pkg).rglob("*.py")):
            module = ".".join(f.relative_to(REPO).with_suffix("").parts)

            def walk(node, function):
                for child in ast.iter_child_nodes(node):
                    if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        walk(child, child.name if function is None else f"{function}.{child.name}")
                        continue
                    names = []
                    if isinstance(child, ast.Import):
                        names = [a.name for a in child.names]
                    elif isinstance(child, ast.ImportFrom) and not child.level and child.module:
                        names = [child.module]
                    for name in names:
                        top = name.split(".")[0]
                        if top in PACKAGES and top != pkg:
                            found.append((module, top, function))
                    walk(child, function)

            walk(ast.parse(f.read_text()), None)
    return found


def test_cytocore_imports_no_other_package_and_cytomodel_and_analysis_not_each_other_nor_the_study():
    wrong = [f"{m} -> {t}" for m, t, _ in project_imports()
             if m.startswith("cytocore") or (m.split(".")[0] in ("cytomodel", "analysis") and t != "cytocore")]
    assert not wrong, "\n".join(wrong)


def test_study_app_imports_the_analysis_only_in_the_workflows_analysis_step():
    where = sorted({(m, f) for m, t, f in project_imports() if m.startswith("study_app") and t == "analysis"})
    assert where == [("study_app.workflow", "analyse")], where


CHILD = r"""
import json, sys
from study_app.cli import main
assert main(["simulate", sys.argv[1], "--db-url", sys.argv[2], "--n", "1", "--seed", "4"]) == 0
heavy = {"analysis", "scipy", "pymc", "pytensor", "arviz", "torch", "cytomodel"}
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules} & heavy)))
"""


def test_cytostudy_simulate_loads_no_analysis_stack(built_study, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", CHILD, str(built_study), f"sqlite:///{tmp_path / 'sim.db'}"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "answered" in out.stdout
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_the_workflow_chains_raters_export_and_analysis(built_study, tmp_path, monkeypatch):
    """The steps in order on a copy of the study; the analysis step is replaced (it samples for minutes) and is
    handed the export the step before wrote."""
    import shutil

    from study_app import workflow
    study = tmp_path / "study"
    shutil.copytree(built_study, study, ignore=shutil.ignore_patterns("study.db*", "exports"))
    seen, said = {}, []
    monkeypatch.setattr(workflow, "analyse", lambda export, st, out, say: seen.update(export=export, out=out) or out)
    report = workflow.simulate_and_analyse(study, workflow.SimulatedRaters(n=2, seed=1), say=said.append)
    work = study / "simulated-2"
    assert seen["export"] == work / "export" / "responses.parquet" and seen["export"].is_file()
    assert report == work / "report" and (work / "responses.db").is_file()
    assert said[0].startswith("2 simulated raters: d' 1") and said[-1].startswith("exported 24 responses")
