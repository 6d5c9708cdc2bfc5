"""Each install extra is enough for its job and brings no other job's stack: only ``cytostudy[analysis]`` simulates
and analyses an export (no torch, no Streamlit); only ``[model]`` trains and samples a tiny model (no Streamlit, no
PyMC). The ``[study]`` extra is checked beside the served page's import test (tests/study_app)."""
from __future__ import annotations

import json

import pytest


@pytest.mark.slow
def test_analysis_extra_simulates_and_reports_without_torch(extra_environment, tmp_path):
    env = extra_environment("analysis")
    assert env.importable("torch", "diffusers", "streamlit", "sqlalchemy", "sklearn") == []
    data = tmp_path / "responses.parquet"
    env.run("cytoanalysis", "simulate", "--out", data, "--raters", "3", "--trials", "40", "--seed", "1", cwd=tmp_path)
    env.run("cytoanalysis", "report", "--data", data, "--out", tmp_path / "rep", "--analyses", "sdt", "--draws", "100",
            "--tune", "100", "--allow-diagnostic-failures", "--quiet", cwd=tmp_path)
    assert "## Priors" in (tmp_path / "rep" / "report.md").read_text()
    assert (tmp_path / "rep" / "report.html").stat().st_size > 1000


@pytest.mark.slow
def test_model_extra_trains_and_generates_without_the_study_or_analysis_stack(extra_environment, tiny_dataset,
                                                                             tmp_path):
    env = extra_environment("model")
    assert env.importable("streamlit", "sqlalchemy", "pymc", "arviz") == []
    run = tmp_path / "run"
    env.run("cytomodel", "train", "--data", tiny_dataset, "--preset", "tiny-16", "--set", "max_steps=3",
            "sample_every=10000", "--out", run, cwd=tmp_path)
    classes = json.loads((run / "model" / "cytomodel.json").read_text())["class_names"]
    env.run("cytomodel", "generate", "--model", run / "model", "--class", classes[0], "--n", "2", "--steps", "2",
            "--out", tmp_path / "gen", cwd=tmp_path)
    assert len(list((tmp_path / "gen").rglob("*.png"))) == 2
