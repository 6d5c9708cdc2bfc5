"""Fits run side by side in processes give exactly the fits of the one-process run (same seeds, same draws)."""
import dataclasses
import os

import numpy as np
import pytest

from analysis.fitting import SamplerConfig, set_quiet
from analysis.pipeline import AnalysisConfig, analysis_jobs, run_analysis
from cytocore.validation import validate_responses
from analysis.simulate import simulate_study

set_quiet(True)


def test_jobs_default_to_one_per_cpu_capped_by_groups(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert analysis_jobs(AnalysisConfig(), 4) == 2
    assert analysis_jobs(AnalysisConfig(), 1) == 1
    assert analysis_jobs(AnalysisConfig(jobs=8), 3) == 3
    assert analysis_jobs(AnalysisConfig(jobs=1), 4) == 1
    with pytest.raises(ValueError, match="jobs"):
        analysis_jobs(AnalysisConfig(jobs=0), 4)


@pytest.mark.slow
def test_fits_in_processes_equal_one_process_run():
    df = simulate_study(3, 48, ("a", "b", "c"), seed=5)
    rep = validate_responses(df)
    sampler = SamplerConfig(draws=60, tune=60, chains=2, cores=1, seed=2)
    base = AnalysisConfig(sampler=sampler, analyses=("sdt", "psychometric", "comparison"), jobs=1)
    one = run_analysis(rep, base)
    two = run_analysis(rep, dataclasses.replace(base, jobs=2))
    assert list(two.fits) == list(one.fits) == ["sdt_authenticity", "psychometric_morph",
                                                "psychometric_class_experts", "psychometric_class_model",
                                                "difference_authenticity", "difference_classification"]
    for name, f in one.fits.items():
        g = two.fits[name]
        assert g.model is None and f.model is not None
        for v in ("mu_d", "mu_slope", "delta"):
            if v in f.idata.posterior:
                np.testing.assert_array_equal(f.idata.posterior[v].values, g.idata.posterior[v].values)
    assert two.headline.accuracy_mean == one.headline.accuracy_mean
    assert set(two.tables) == set(one.tables)
    assert list(two.tables["diagnostics"]["model"]) == list(one.fits)


def _worker_that_dies(args):
    os._exit(3)  # what a segfault or the OOM killer does to a worker: no exception, no result


@pytest.mark.slow
def test_a_dead_worker_neither_hangs_the_report_nor_loses_its_fits(monkeypatch):
    df = simulate_study(3, 48, ("a", "b", "c"), seed=5)
    rep = validate_responses(df)
    cfg = AnalysisConfig(sampler=SamplerConfig(draws=60, tune=60, chains=2, cores=1, seed=2), analyses=("sdt",),
                         jobs=2)
    one = run_analysis(rep, dataclasses.replace(cfg, jobs=1))
    monkeypatch.setattr("analysis.pipeline._worker", _worker_that_dies)  # the forked worker inherits the patch
    res = run_analysis(rep, cfg)  # the old multiprocessing.Pool waited for the dead worker forever here
    assert not res.failed and list(res.fits) == list(one.fits) == ["sdt_authenticity"]
    np.testing.assert_array_equal(res.fits["sdt_authenticity"].idata.posterior["mu_d"].values,
                                  one.fits["sdt_authenticity"].idata.posterior["mu_d"].values)
