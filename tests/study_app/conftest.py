"""Fixtures for the study app: a tiny built study, fresh databases on SQLite and on a throwaway PostgreSQL server."""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

TINY_STUDY = {
    "id": "tiny", "code": "TINY", "seed": 3,
    "stimuli.n_per_class": 2, "stimuli.morph_strengths": [0.5], "stimuli.steps": 4, "stimuli.display_px": 96,
    "stimuli.practice_per_source": 1, "stimuli.attention_per_source": 1,
    "stimuli.classifier": {"strategy": "exhaustive", "trials": 3, "image_batch": 64},
    "design.block_size": 9, "design.practice_trials": 2, "design.attention_checks": 1,
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
    from study_app.stimuli import build_study
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
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@pytest.fixture(scope="session")
def pg_server():
    """A throwaway PostgreSQL server (initdb + pg_ctl in a temp dir, free localhost port), stopped at the end.
    Skips only when the server binaries are not installed."""
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin): apt-get install postgresql")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed: pip install 'psycopg[binary]'")
    root = Path(tempfile.mkdtemp(prefix="cytostudy-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        pg = pwd.getpwnam("postgres")
        os.chown(root, pg.pw_uid, pg.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    data, log = root / "data", root / "server.log"
    port = _free_port()
    subprocess.run(prefix + [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                             "--no-instructions"], check=True, capture_output=True)
    subprocess.run(prefix + [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o",
                             f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=200", "start"],
                   check=True, capture_output=True)
    try:
        yield {"port": port, "url": f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", "root": root}
    finally:
        subprocess.run(prefix + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def new_pg_database(server) -> str:
    import psycopg
    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(f"host=127.0.0.1 port={server['port']} user=postgres dbname=postgres",
                         autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"postgresql+psycopg://postgres@127.0.0.1:{server['port']}/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """A fresh, empty database: a SQLite file, or a new database on the throwaway PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    return new_pg_database(request.getfixturevalue("pg_server"))


@pytest.fixture
def service(built_study, db_url):
    from study_app.session import StudyService
    svc = StudyService(built_study, db_url)
    yield svc
    svc.close()
