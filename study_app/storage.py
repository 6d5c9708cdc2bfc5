"""The study database (SQLAlchemy 2): studies, participants, trial assignments, responses.

* Default: a SQLite file ``study.db`` beside the study, in WAL mode with ``synchronous=FULL`` (a committed answer is
  on disk before the participant sees the next image) and write transactions opened with ``BEGIN IMMEDIATE`` (no
  lock-upgrade deadlocks between concurrent raters).
* ``CYTOSTUDY_DB_URL`` (or ``db_url=``) selects any SQLAlchemy URL, e.g. ``postgresql+psycopg://user@host/db``.
* The schema is versioned in the ``schema_version`` table. :func:`migrate` applies the numbered steps in
  ``MIGRATIONS`` that a database has not seen yet, each in its own transaction, so an existing study database is
  upgraded in place and nothing stored is touched. A database written by a newer version is refused.
* Idempotency is enforced by the database: one response per assignment (``UNIQUE(assignment_id)``), one assignment
  per (participant, phase, trial index), one participant number per study.
"""
from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path
from typing import Callable, TypeVar

from sqlalchemy import (Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint,
                        create_engine, event, inspect, select, text)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

SCHEMA_VERSION = 2
DB_URL_ENV = "CYTOSTUDY_DB_URL"
# how long a write keeps retrying a locked or unreachable database before the participant is told
DEFAULT_RETRY_SECONDS = 10.0
T = TypeVar("T")


class StorageUnavailable(RuntimeError):
    """The database is locked or unreachable right now; nothing already stored is lost. Retry later."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


from sqlalchemy.types import TypeDecorator  # noqa: E402


class UTC(TypeDecorator):
    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value


class Base(DeclarativeBase):
    pass


class SchemaVersion(Base):
    __tablename__ = "schema_version"
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    applied_at: Mapped[dt.datetime] = mapped_column(UTC, default=utcnow)
    description: Mapped[str] = mapped_column(String(200), default="")


class StudyRow(Base):
    __tablename__ = "studies"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str] = mapped_column(String(300), default="")
    config_hash: Mapped[str] = mapped_column(String(64))
    content_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTC, default=utcnow)


class Participant(Base):
    __tablename__ = "participants"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)            # opaque, exported
    study_id: Mapped[str] = mapped_column(ForeignKey("studies.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)                             # arrival order -> counterbalancing
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)         # sha256 of the secret invite token
    entry: Mapped[str] = mapped_column(String(16), default="invite")         # invite | code | bot
    label: Mapped[str] = mapped_column(String(200), default="")              # researcher's note (no PII please)
    created_at: Mapped[dt.datetime] = mapped_column(UTC, default=utcnow)
    consented_at: Mapped[dt.datetime | None] = mapped_column(UTC, nullable=True)
    role: Mapped[str | None] = mapped_column(String(64), nullable=True)
    years_experience: Mapped[float | None] = mapped_column(Float, nullable=True)
    profile_at: Mapped[dt.datetime | None] = mapped_column(UTC, nullable=True)
    instructions_at: Mapped[dt.datetime | None] = mapped_column(UTC, nullable=True)
    break_done_block: Mapped[int] = mapped_column(Integer, default=-1)       # breaks taken up to this block
    completed_at: Mapped[dt.datetime | None] = mapped_column(UTC, nullable=True)
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(UTC, nullable=True)   # schema v2
    assignments: Mapped[list["Assignment"]] = relationship(back_populates="participant", cascade="all, delete-orphan",
                                                           passive_deletes=True)
    __table_args__ = (UniqueConstraint("study_id", "number", name="uq_participant_number"),)


class Assignment(Base):
    """One trial of one participant: which stimulus, where in the sequence, when it was shown, the draft
    authenticity answer (committed the moment it is given)."""
    __tablename__ = "assignments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    participant_id: Mapped[str] = mapped_column(ForeignKey("participants.id", ondelete="CASCADE"))
    phase: Mapped[str] = mapped_column(String(16))
    trial_index: Mapped[int] = mapped_column(Integer)
    block: Mapped[int] = mapped_column(Integer, default=0)
    stimulus_id: Mapped[str] = mapped_column(String(64), index=True)
    is_attention_check: Mapped[bool] = mapped_column(Boolean, default=False)
    instructed_answer: Mapped[str | None] = mapped_column(String(16), nullable=True)
    seq: Mapped[int] = mapped_column(Integer)                                # position in the whole sequence
    first_shown_at: Mapped[dt.datetime | None] = mapped_column(UTC, nullable=True)
    shown_at: Mapped[dt.datetime | None] = mapped_column(UTC, nullable=True)
    shown_session: Mapped[str | None] = mapped_column(String(64), nullable=True)
    n_presentations: Mapped[int] = mapped_column(Integer, default=0)
    auth_response: Mapped[str | None] = mapped_column(String(16), nullable=True)
    auth_confidence_level: Mapped[int | None] = mapped_column(Integer, nullable=True)
    auth_answered_at: Mapped[dt.datetime | None] = mapped_column(UTC, nullable=True)
    auth_rt_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    participant: Mapped[Participant] = relationship(back_populates="assignments")
    response: Mapped["Response | None"] = relationship(back_populates="assignment", cascade="all, delete-orphan",
                                                       passive_deletes=True, uselist=False)
    __table_args__ = (UniqueConstraint("participant_id", "phase", "trial_index", name="uq_assignment_trial"),
                      UniqueConstraint("participant_id", "seq", name="uq_assignment_seq"))


class Response(Base):
    __tablename__ = "responses"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id", ondelete="CASCADE"), unique=True)
    participant_id: Mapped[str] = mapped_column(ForeignKey("participants.id", ondelete="CASCADE"), index=True)
    auth_response: Mapped[str] = mapped_column(String(16))
    auth_confidence: Mapped[float] = mapped_column(Float)
    auth_confidence_level: Mapped[int] = mapped_column(Integer)
    class_response: Mapped[str] = mapped_column(String(64))
    class_confidence: Mapped[float] = mapped_column(Float)
    class_confidence_level: Mapped[int] = mapped_column(Integer)
    confidence_levels: Mapped[int] = mapped_column(Integer)
    auth_rt_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    class_rt_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    n_presentations: Mapped[int] = mapped_column(Integer, default=1)
    responded_at: Mapped[dt.datetime] = mapped_column(UTC, default=utcnow)
    client_note: Mapped[str] = mapped_column(Text, default="")
    assignment: Mapped[Assignment] = relationship(back_populates="response")


Index("ix_assignments_participant_seq", Assignment.participant_id, Assignment.seq)


# ---------------------------------------------------------------------------------------------- migrations
def _m1(conn) -> None:
    """v1: the initial tables (studies, participants, assignments, responses) without participants.last_seen_at."""
    tables = [t for t in Base.metadata.sorted_tables if t.name != "schema_version"]
    for t in tables:
        t.create(conn, checkfirst=True)
    cols = {c["name"] for c in inspect(conn).get_columns("participants")}
    if "last_seen_at" in cols and conn.dialect.name == "sqlite":
        pass  # created by the current model: v2 below is then a no-op


def _m2(conn) -> None:
    """v2: participants.last_seen_at (for the admin's live view)."""
    cols = {c["name"] for c in inspect(conn).get_columns("participants")}
    if "last_seen_at" not in cols:
        conn.execute(text("ALTER TABLE participants ADD COLUMN last_seen_at TIMESTAMP WITH TIME ZONE"
                          if conn.dialect.name == "postgresql" else
                          "ALTER TABLE participants ADD COLUMN last_seen_at DATETIME"))


MIGRATIONS: dict[int, tuple[str, Callable]] = {1: ("initial schema", _m1), 2: ("participants.last_seen_at", _m2)}


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
                done = conn.execute(select(SchemaVersion.version).where(SchemaVersion.version == v)).first()
                if done:
                    continue
            fn(conn)
            conn.execute(SchemaVersion.__table__.insert().values(version=v, applied_at=utcnow(), description=desc))
        applied.append(v)
    return applied


# ---------------------------------------------------------------------------------------------- engine
def default_db_url(study_dir: str | Path) -> str:
    return f"sqlite:///{Path(study_dir).resolve() / 'study.db'}"


def resolve_db_url(study_dir: str | Path, db_url: str | None = None) -> str:
    return db_url or os.environ.get(DB_URL_ENV) or default_db_url(study_dir)


def make_engine(url: str, busy_timeout_s: float = 5.0) -> Engine:
    """An engine with the durability and locking settings described in the module docstring."""
    if url.startswith("sqlite"):
        engine = create_engine(url, pool_size=10, max_overflow=40, pool_timeout=busy_timeout_s,
                               connect_args={"timeout": busy_timeout_s, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record):
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (below)
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn):
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("sqlite_write") else "BEGIN")
        return engine
    kwargs = dict(pool_size=10, max_overflow=40, pool_pre_ping=True, pool_timeout=busy_timeout_s)
    if url.startswith("postgresql"):
        kwargs["connect_args"] = {"connect_timeout": max(1, int(busy_timeout_s))}
    return create_engine(url, **kwargs)


def is_transient(exc: BaseException) -> bool:
    """Locked / busy / unreachable: worth retrying, nothing lost."""
    if isinstance(exc, OperationalError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    from sqlalchemy.exc import TimeoutError as PoolTimeout
    return isinstance(exc, PoolTimeout)


class Database:
    """Engine + migrations + transactional helpers with retry on transient failures."""

    def __init__(self, url: str, retry_seconds: float = DEFAULT_RETRY_SECONDS, busy_timeout_s: float = 5.0):
        import threading
        self.url = url
        # SQLite allows one writer at a time; within this process (all Streamlit sessions share it) writers queue
        # on a lock instead of busy-polling the file lock, which starves some of them under load
        self._write_lock = threading.Lock() if url.startswith("sqlite") else None
        self.engine = make_engine(url, busy_timeout_s=busy_timeout_s)
        self.write_engine = self.engine.execution_options(sqlite_write=True) if url.startswith("sqlite") \
            else self.engine
        self.retry_seconds = retry_seconds
        self._migrated = False

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def ensure_schema(self) -> None:
        if not self._migrated:
            self.run(lambda: migrate(self.engine))
            self._migrated = True

    def run(self, fn: Callable[[], T]) -> T:
        """Call ``fn`` and retry it on transient errors for up to ``retry_seconds``; then StorageUnavailable."""
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.05
        while True:
            try:
                return fn()
            except Exception as exc:  # noqa: BLE001
                if not is_transient(exc):
                    raise
                if time.monotonic() + delay > deadline:
                    raise StorageUnavailable(
                        f"the study database is busy or unreachable ({exc.__class__.__name__}); "
                        "nothing already saved is lost") from exc
                time.sleep(delay)
                delay = min(delay * 2, 0.8)

    def read(self, fn: Callable[[Session], T]) -> T:
        def go():
            with Session(self.engine, expire_on_commit=False) as s:
                return fn(s)
        return self.run(go)

    def write(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn`` in one write transaction (committed before returning)."""
        def go():
            if self._write_lock is not None:
                with self._write_lock:
                    with Session(self.write_engine, expire_on_commit=False) as s:
                        with s.begin():
                            return fn(s)
            with Session(self.write_engine, expire_on_commit=False) as s:
                with s.begin():
                    return fn(s)
        return self.run(go)

    def dispose(self) -> None:
        self.engine.dispose()
