"""Schema versions: :func:`migrate` applies the numbered steps a database has not seen yet, each in its own
transaction, so an existing study database is upgraded in place and nothing stored is touched. A database written
by a newer version is refused."""
from __future__ import annotations

from typing import Callable

from sqlalchemy import inspect, select, text
from sqlalchemy.engine import Engine

from .tables import AdminAttempt, Base, ManifestVersion, SchemaVersion, utcnow

SCHEMA_VERSION = 4
_V3_TABLES = {ManifestVersion.__tablename__, AdminAttempt.__tablename__}


def _add_column(conn, table: str, column: str, sqlite_type: str, pg_type: str | None = None) -> None:
    cols = {c["name"] for c in inspect(conn).get_columns(table)}
    if column not in cols:
        kind = (pg_type or sqlite_type) if conn.dialect.name == "postgresql" else sqlite_type
        conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {kind}"))


def _m1(conn) -> None:
    """v1: the initial tables (studies, participants, assignments, responses)."""
    for t in Base.metadata.sorted_tables:
        if t.name != "schema_version" and t.name not in _V3_TABLES:
            t.create(conn, checkfirst=True)


def _m2(conn) -> None:
    """v2: participants.last_seen_at (for the admin's live view)."""
    _add_column(conn, "participants", "last_seen_at", "DATETIME", "TIMESTAMP WITH TIME ZONE")


def _m3(conn) -> None:
    """v3: counterbalancing slots, load confirmation and reconnect counts, manifest versions, admin attempts."""
    _add_column(conn, "participants", "slot", "INTEGER")
    _add_column(conn, "assignments", "n_reconnects", "INTEGER DEFAULT 0 NOT NULL")
    _add_column(conn, "assignments", "loaded_at", "DATETIME", "TIMESTAMP WITH TIME ZONE")
    _add_column(conn, "responses", "n_reconnects", "INTEGER DEFAULT 0 NOT NULL")
    _add_column(conn, "responses", "image_load_ms", "FLOAT", "DOUBLE PRECISION")
    conn.execute(text("UPDATE participants SET slot = number WHERE slot IS NULL"))
    for t in Base.metadata.sorted_tables:
        if t.name in _V3_TABLES:
            t.create(conn, checkfirst=True)


def _m4(conn) -> None:
    """v4: the tab holding a participant's study; the chosen cell type as a stored draft."""
    _add_column(conn, "participants", "holder_session", "VARCHAR(64)")
    _add_column(conn, "assignments", "class_choice", "VARCHAR(64)")
    _add_column(conn, "assignments", "class_choice_at", "DATETIME", "TIMESTAMP WITH TIME ZONE")


MIGRATIONS: dict[int, tuple[str, Callable]] = {
    1: ("initial schema", _m1), 2: ("participants.last_seen_at", _m2),
    3: ("slots, image-load confirmation, reconnects, manifest versions, admin attempts", _m3),
    4: ("holding tab, cell-type draft", _m4)}


def schema_version(engine: Engine) -> int:
    with engine.connect() as conn:
        if not inspect(conn).has_table("schema_version"):
            return 0
        return int(conn.execute(select(SchemaVersion.version).order_by(SchemaVersion.version.desc())).scalar() or 0)


def migrate(engine: Engine) -> list[int]:
    """Bring the database to ``SCHEMA_VERSION``; returns the versions applied (empty when up to date)."""
    SchemaVersion.__table__.create(engine, checkfirst=True)
    current = schema_version(engine)
    if current > SCHEMA_VERSION:
        raise RuntimeError(f"the study database has schema version {current}, newer than this cytostudy "
                           f"({SCHEMA_VERSION}); upgrade cytostudy instead of using an older one")
    applied = []
    for v in range(current + 1, SCHEMA_VERSION + 1):
        desc, fn = MIGRATIONS[v]
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":  # one migrator at a time
                conn.execute(text("SELECT pg_advisory_xact_lock(746153)"))
                if conn.execute(select(SchemaVersion.version).where(SchemaVersion.version == v)).first():
                    continue
            fn(conn)
            conn.execute(SchemaVersion.__table__.insert().values(version=v, applied_at=utcnow(), description=desc))
        applied.append(v)
    return applied
