"""Rebuilding a study folder without losing anyone's answers.

``build --overwrite`` is refused when the study in the folder has responses in the database it is configured
with (``db_url``, else ``$CYTOSTUDY_DB_URL``, else ``STUDY/study.db``) or when the folder holds a ``study.db`` at
all. What is replaced is archived first: ``manifests/<content hash>/`` keeps the old manifest, study record, config
and audit, and every database keeps the manifest its answers were given with (``manifest_versions``)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from cytocore.study_files import AUDIT_FILE, CONFIG_FILE, MANIFEST_FILE, STUDY_FILE, VERSIONS_DIR


class StudyBuildError(ValueError):
    """A study cannot be built as asked; the message says what to do."""


def _old_study_id(out: Path) -> str | None:
    if (out / STUDY_FILE).is_file():
        return json.loads((out / STUDY_FILE).read_text()).get("study_id")
    if (out / CONFIG_FILE).is_file():
        from ..config import load_study_config
        return load_study_config(out / CONFIG_FILE).id
    return None


def responses_in_database(out: Path, db_url: str | None) -> tuple[str, int]:
    """(database, responses of the folder's study in it); the database is not created if it does not exist."""
    from sqlalchemy import func, inspect, select

    from ..storage import Database, Participant, Response, StorageUnavailable, describe_url, resolve_db_url

    url = resolve_db_url(out, db_url)
    study_id = _old_study_id(out)
    if study_id is None or (url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).exists()):
        return describe_url(url), 0
    db = Database(url, retry_seconds=3.0)
    try:
        def count():
            with db.engine.connect() as conn:
                if not inspect(conn).has_table("responses"):
                    return 0
                return int(conn.execute(select(func.count(Response.id)).join(
                    Participant, Participant.id == Response.participant_id).where(
                    Participant.study_id == study_id)).scalar() or 0)
        return describe_url(url), db.run(count)
    except StorageUnavailable as exc:
        raise StudyBuildError(f"cannot check whether study {study_id!r} in {out} has answers in {describe_url(url)} "
                              f"({exc}); refusing to overwrite it. Try again when the database is reachable") from None
    finally:
        db.dispose()


def prepare_output(out: Path, overwrite: bool, db_url: str | None = None) -> None:
    """Make ``out`` ready for a build: new or empty, or (``overwrite``) archived and cleared when no answers can
    be lost."""
    if not out.exists() or not any(out.iterdir()):
        return
    if not overwrite:
        raise StudyBuildError(f"{out} exists and is not empty; choose a new folder or allow overwriting "
                              "(overwrite=True; on the command line --overwrite)")
    if (out / "study.db").exists():
        raise StudyBuildError(f"{out} holds a study database (study.db) with participants' answers; "
                              "refusing to overwrite it: build into a new folder")
    where, n = responses_in_database(out, db_url)
    if n:
        raise StudyBuildError(f"study {_old_study_id(out)!r} in {out} has {n} responses in {where}; refusing to "
                              "overwrite it (its answer key would be replaced): build into a new folder, or give "
                              "the rebuilt study a new study id")
    archive_version(out)
    for child in out.iterdir():
        if child.name != VERSIONS_DIR:
            shutil.rmtree(child) if child.is_dir() else child.unlink()


def archive_version(out: Path) -> Path | None:
    """Copy the folder's manifest, study record, config and audit to ``manifests/<content hash>/``."""
    if not (out / STUDY_FILE).is_file():
        return None
    content = json.loads((out / STUDY_FILE).read_text()).get("content_hash", "unknown")
    dst = out / VERSIONS_DIR / str(content)[:16]
    dst.mkdir(parents=True, exist_ok=True)
    for name in (MANIFEST_FILE, STUDY_FILE, CONFIG_FILE, AUDIT_FILE):
        if (out / name).is_file():
            shutil.copy2(out / name, dst / name)
    return dst
