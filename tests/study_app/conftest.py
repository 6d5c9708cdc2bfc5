"""Fixtures for the study app: a tiny built study, fresh databases on SQLite and on a throwaway PostgreSQL server."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

TINY_STUDY = {
    "id": "tiny", "code": "TINY", "seed": 3,
    "stimuli.n_per_class": 2, "stimuli.morph_strengths": [0.5], "stimuli.steps": 4, "stimuli.display_px": 96,
    "stimuli.practice_per_source": 1, "stimuli.attention_per_source": 1,
    "stimuli.classifier": {"strategy": "exhaustive", "trials": 3, "image_batch": 64},
    "design.block_size": 5, "design.practice_trials": 2, "design.attention_checks": 1,
    "design.stimuli_per_participant": 9, "design.min_rt_ms": 30.0,
}


def _tiny_config(**extra):
    from study_app.config import load_study_config
    return load_study_config(None, {**TINY_STUDY, **extra})


@pytest.fixture(scope="session")
def tiny_config():
    """Factory: the tiny study config with ``key=value`` overrides (``**{"design.block_size": 4}``)."""
    return _tiny_config


@pytest.fixture(scope="session")
def built_study(request, tmp_path_factory) -> Path:
    """A study built from the tiny dataset and model (with the diffusion classifier, 3 trials per image)."""
    from study_app.build import build_study
    reuse = os.environ.get("CYTOSTUDY_TEST_REUSE_STUDY")   # developer shortcut: a study built by this fixture
    if reuse and (Path(reuse) / "study.json").is_file():
        return Path(reuse)
    out = tmp_path_factory.mktemp("studies") / "tiny"
    build_study(request.getfixturevalue("tiny_dataset"), request.getfixturevalue("tiny_model_dir"), out,
                _tiny_config())
    return out


@pytest.fixture
def study_copy(built_study, tmp_path) -> Path:
    """A private copy of the built study (no database), for tests that write beside it."""
    dst = tmp_path / "study"
    shutil.copytree(built_study, dst, ignore=shutil.ignore_patterns("study.db*", "exports"))
    return dst


# --------------------------------------------------------------------------------------------- PostgreSQL
from conftest_helpers import free_port as _free_port  # noqa: E402
from conftest_helpers import new_pg_database, pg_bindir, pg_start, pg_stop  # noqa: E402,F401


@pytest.fixture(scope="session")
def pg_server():
    """A throwaway PostgreSQL server (initdb + pg_ctl in a temp dir, free localhost port), stopped at the end.
    Skips only when the server binaries are not installed."""
    bindir = pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin): apt-get install postgresql")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed: pip install 'psycopg[binary]'")
    server = pg_start(bindir)
    try:
        yield server
    finally:
        pg_stop(server)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """A fresh, empty database: a SQLite file, or a new database on the throwaway PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    return new_pg_database(request.getfixturevalue("pg_server"))


@pytest.fixture
def service(built_study, db_url):
    from study_app.serve.session import StudyService
    svc = StudyService(built_study, db_url)
    yield svc
    svc.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Expose each test's call result (the browser test screenshots its page on failure)."""
    outcome = yield
    if call.when == "call":
        item.rep_call = outcome.get_result()
