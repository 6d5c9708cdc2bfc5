"""Real studies are untidy: a human-only export, a model-only table, one rater, no morphs — each gives a report
whose skipped analyses say why; a failing analysis is reported and the rest lands; report.html opens in a real
browser with every figure."""
import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from analysis import pipeline
from analysis.cli import main
from analysis.config import AnalysisConfig
from analysis.fitting import SamplerConfig, set_quiet
from analysis.pipeline import run_analysis
from analysis.report import write_report
from analysis.simulate import simulate_study
from cytocore.schema import ANSWER_COLUMNS, MODEL_COLUMNS, model_prob_columns

set_quiet(True)
TINY = AnalysisConfig(sampler=SamplerConfig(draws=40, tune=40, chains=2, cores=1, ppc_draws=20, max_reruns=0),
                      power_sims=10, power_raters=(5,), power_trials=(100,), jobs=1)
CLASSES = ("a", "b", "c")


def _report(df, out: Path, analyses=None):
    cfg = dataclasses.replace(TINY, analyses=analyses or TINY.analyses)
    res = run_analysis(df, cfg, out_dir=out)
    write_report(res, out)
    return res, (out / "report.md").read_text()


@pytest.fixture(scope="module")
def human_only(tmp_path_factory):
    df = simulate_study(3, 40, CLASSES, seed=1, profile=None)
    df[list(MODEL_COLUMNS) + model_prob_columns(df)] = np.nan
    out = tmp_path_factory.mktemp("human_only")
    return (out,) + _report(df, out, ("sdt", "psychometric", "metacognition", "comparison"))


@pytest.mark.slow
def test_human_only_export_gives_a_report(human_only):
    out, res, md = human_only
    assert not res.failed
    assert {"sdt_authenticity", "psychometric_morph", "metad_authenticity"} <= set(res.fits)
    assert not any("model" in n for n in res.fits)
    skipped = {r.step: r.reason for r in res.skipped}
    assert "no model outputs" in skipped["class_evidence"] and "no model outputs" in skipped["comparison"]
    assert "*Not run:* the table has no model outputs" in md
    assert (out / "fits" / "sdt_authenticity.nc").exists() and (out / "report.html").exists()


@pytest.mark.slow
def test_model_only_table_gives_a_report(tmp_path):
    df = simulate_study(2, 40, CLASSES, seed=2)
    df[list(ANSWER_COLUMNS) + ["auth_confidence", "class_confidence"]] = np.nan
    res, md = _report(df, tmp_path, ("sdt", "psychometric", "metacognition", "comparison"))
    assert not res.failed
    assert set(res.fits) == {"metad_authenticity", "metad_classification"}
    assert list(res.fits["metad_authenticity"].idata.posterior["observer"].values) == ["model"]
    assert "no human authenticity answers" in md and "model-only" in md
    assert (tmp_path / "tables" / "metacognition_observed.csv").exists()


@pytest.mark.slow
def test_one_rater_and_no_morphs_give_reports(tmp_path):
    res, md = _report(simulate_study(1, 60, CLASSES, seed=3), tmp_path / "one", ("sdt", "metacognition"))
    assert not res.failed and {"sdt_authenticity", "metad_authenticity"} <= set(res.fits)
    res, md = _report(simulate_study(2, 40, CLASSES, seed=4, morph_fraction=0.0), tmp_path / "nomorph",
                      ("sdt", "psychometric"))
    assert not res.failed and "psychometric_morph" not in res.fits
    assert "the study has no morphs" in md and "sdt_authenticity" in res.fits


@pytest.mark.slow
def test_report_with_the_power_step_gives_a_design_table_that_favours_bigger_studies(tmp_path):
    """The power step runs inside a report (after the SDT fit): simulated at chance, a study of 40 raters × 600
    trials decides 'equivalent' far more often than one of 5 × 100 (the approximation is checked against full fits
    by benchmarks/analysis_power.py)."""
    cfg = dataclasses.replace(TINY, analyses=("sdt", "power"), power_sims=60, power_raters=(5, 40),
                              power_trials=(100, 600))
    df = simulate_study(3, 40, CLASSES, seed=7)
    res = run_analysis(df, cfg, out_dir=tmp_path)
    write_report(res, tmp_path)
    assert not res.failed and "power" not in {r.step for r in res.skipped}
    pw = res.tables["power"]
    chance = pw[pw["scenario"].str.contains("chance")].set_index(["n_raters", "n_trials"])
    assert chance.loc[(40, 600), "p_equivalent"] >= 0.8 > chance.loc[(5, 100), "p_equivalent"]
    assert np.allclose(pw[["p_equivalent", "p_different", "p_undecided"]].sum(axis=1), 1)
    md = (tmp_path / "report.md").read_text()
    assert "Data needed for a decision" in md and "smallest design in the grid" in md
    assert (tmp_path / "tables" / "power.csv").exists()


@pytest.mark.slow
def test_a_failing_analysis_is_reported_and_the_rest_lands(tmp_path, monkeypatch, capsys):
    def boom(ctx):
        raise RuntimeError("simulated failure in the morph analysis")
    steps = tuple(dataclasses.replace(s, run=boom) if s.name == "morph" else s for s in pipeline.STEPS)
    monkeypatch.setattr(pipeline, "STEPS", steps)
    data = tmp_path / "r.parquet"
    df = simulate_study(2, 40, CLASSES, seed=5)
    df[list(MODEL_COLUMNS) + model_prob_columns(df)] = np.nan   # human-only: only the SDT fit samples
    df.to_parquet(data)
    code = main(["report", "--data", str(data), "--out", str(tmp_path / "o"), "--analyses", "sdt,psychometric",
                 "--jobs", "1", "--draws", "40", "--tune", "40", "--chains", "2", "--quiet",
                 "--allow-diagnostic-failures", "--set", "sampler.max_reruns=0", "sampler.ppc_draws=20"])
    assert code == 3
    err = capsys.readouterr().err
    assert "ANALYSIS FAILURE" in err and "morph: RuntimeError: simulated failure" in err
    md = (tmp_path / "o" / "report.md").read_text()
    assert "ANALYSIS FAILURE" in md and "This analysis failed" in md and "simulated failure" in md
    assert (tmp_path / "o" / "fits" / "sdt_authenticity.nc").exists(), err + md  # the rest landed
    assert (tmp_path / "o" / "figures" / "fig_auth_accuracy.svg").exists(), err + md
    prov = json.loads((tmp_path / "o" / "provenance.json").read_text())
    assert "simulated failure" in prov["failed_steps"]["morph"]["message"]


@pytest.mark.slow
def test_report_html_renders_in_chromium_with_every_figure(human_only, tmp_path):
    exe = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if exe is None:
        pytest.skip("Chromium not found (/usr/bin/chromium): apt-get install chromium")
    pw = pytest.importorskip("playwright.sync_api")
    out = human_only[0]
    html = tmp_path / "report.html"          # a copy away from the figures: the page must need nothing beside it
    shutil.copy(out / "report.html", html)
    n_figures = len(list((out / "figures").glob("*.svg")))
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"]
    with pw.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=args)
        page = browser.new_page()
        errors = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(html.as_uri())
        page.wait_for_load_state("load")
        assert "Human vs machine" in page.title() or page.locator("h1").inner_text().startswith("Human vs machine")
        widths = page.eval_on_selector_all("img", "els => els.map(e => e.complete ? e.naturalWidth : 0)")
        assert len(widths) == n_figures >= 5 and all(w > 0 for w in widths), widths
        assert page.locator("table").count() >= 5 and "Provenance" in page.content()
        browser.close()
    assert not errors, errors
