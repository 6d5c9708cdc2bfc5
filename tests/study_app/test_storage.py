"""The database layer on SQLite and on PostgreSQL: schema versioning, upgrades, uniqueness enforced by the DB."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from study_app.storage import (SCHEMA_VERSION, Assignment, Database, Participant, Response, StudyRow, migrate,
                               schema_version)


def _seed(db: Database) -> int:
    def go(s: Session):
        s.add(StudyRow(id="s1", title="t", config_hash="c" * 64, content_hash="h" * 64))
        s.flush()
        s.add(Participant(id="p1", study_id="s1", number=0, token_hash="x" * 64))
        s.flush()
        a = Assignment(participant_id="p1", phase="main", trial_index=0, block=0, stimulus_id="abc", seq=0,
                       auth_response="real", auth_confidence_level=2)
        s.add(a)
        s.flush()
        s.add(Response(assignment_id=a.id, participant_id="p1", auth_response="real", auth_confidence=60.0,
                       auth_confidence_level=2, class_response="alpha", class_confidence=50.0,
                       class_confidence_level=2, confidence_levels=4, auth_rt_ms=812.5, class_rt_ms=1500.0))
        return a.id
    return db.write(go)


def test_fresh_database_gets_the_current_schema(db_url):
    db = Database(db_url)
    assert schema_version(db.engine) == 0
    db.ensure_schema()
    assert schema_version(db.engine) == SCHEMA_VERSION
    assert migrate(db.engine) == []                      # idempotent
    names = set(inspect(db.engine).get_table_names())
    assert {"schema_version", "studies", "participants", "assignments", "responses"} <= names
    db.dispose()


def test_upgrade_from_v1_keeps_every_row(db_url):
    db = Database(db_url)
    db.ensure_schema()
    aid = _seed(db)
    with db.engine.begin() as conn:   # turn it into a version-1 database: no v2 / v3 / v4 columns or tables
        for table, col in (("participants", "last_seen_at"), ("participants", "slot"), ("assignments", "loaded_at"),
                           ("assignments", "n_reconnects"), ("responses", "n_reconnects"),
                           ("responses", "image_load_ms"), ("participants", "holder_session"),
                           ("assignments", "class_choice"), ("assignments", "class_choice_at")):
            conn.execute(text(f"ALTER TABLE {table} DROP COLUMN {col}"))
        conn.execute(text("DROP TABLE manifest_versions"))
        conn.execute(text("DROP TABLE admin_attempts"))
        conn.execute(text("DELETE FROM schema_version WHERE version > 1"))
    db.dispose()
    db2 = Database(db_url)
    assert schema_version(db2.engine) == 1
    assert migrate(db2.engine) == [2, 3, 4]
    cols = {c["name"] for c in inspect(db2.engine).get_columns("participants")}
    assert {"last_seen_at", "slot", "holder_session"} <= cols
    assert {"class_choice", "class_choice_at"} <= {c["name"] for c in inspect(db2.engine).get_columns("assignments")}
    assert {"manifest_versions", "admin_attempts"} <= set(inspect(db2.engine).get_table_names())
    r = db2.read(lambda s: s.scalar(select(Response).where(Response.assignment_id == aid)))
    assert (r.auth_response, r.class_response, r.auth_rt_ms) == ("real", "alpha", 812.5)
    assert r.responded_at.tzinfo is not None and r.n_reconnects == 0
    assert db2.read(lambda s: s.get(Participant, "p1").slot) == 0     # the slot of an old participant: its number
    db2.dispose()


def test_newer_database_is_refused(db_url):
    db = Database(db_url)
    db.ensure_schema()
    with db.engine.begin() as conn:
        conn.execute(text(f"INSERT INTO schema_version (version, applied_at, description) VALUES "
                          f"({SCHEMA_VERSION + 1}, :t, 'future')"), {"t": dt.datetime.now(dt.timezone.utc)})
    with pytest.raises(RuntimeError, match="newer"):
        migrate(db.engine)
    db.dispose()


def test_one_response_per_assignment_is_enforced_by_the_database(db_url):
    db = Database(db_url)
    db.ensure_schema()
    aid = _seed(db)

    def second(s: Session):
        s.add(Response(assignment_id=aid, participant_id="p1", auth_response="synthetic", auth_confidence=90.0,
                       auth_confidence_level=4, class_response="beta", class_confidence=90.0,
                       class_confidence_level=4, confidence_levels=4))
    with pytest.raises(IntegrityError):
        db.write(second)

    def dup_trial(s: Session):
        s.add(Assignment(participant_id="p1", phase="main", trial_index=0, block=0, stimulus_id="zzz", seq=5))
    with pytest.raises(IntegrityError):
        db.write(dup_trial)
    assert db.read(lambda s: len(s.scalars(select(Response)).all())) == 1
    db.dispose()


def test_deleting_a_participant_cascades(db_url):
    db = Database(db_url)
    db.ensure_schema()
    _seed(db)
    db.write(lambda s: s.delete(s.get(Participant, "p1")))
    assert db.read(lambda s: (s.scalar(select(Assignment.id)), s.scalar(select(Response.id)))) == (None, None)
    db.dispose()


def test_sqlite_is_durable_and_concurrent(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2      # FULL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    db.dispose()
