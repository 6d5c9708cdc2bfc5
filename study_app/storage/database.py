"""Engine and transactions: durable settings per back-end, retry of transient failures, one place for both.

* SQLite (default, ``STUDY/study.db``): WAL journal, ``synchronous=FULL`` (a committed answer survives a power cut),
  ``BEGIN IMMEDIATE`` for writes (no lock upgrade deadlocks), a busy timeout, and within one process the writers
  queue on a lock instead of busy-polling the file lock.
* PostgreSQL (many raters, ``CYTOSTUDY_DB_URL=postgresql+psycopg://...``): a connection pool with pre-ping.
* Transient errors (locked, unreachable) are retried for ``retry_seconds``, then :class:`StorageUnavailable`,
  which the page shows as a calm "try again" with the pending answer kept.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Callable, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session

from .migrations import migrate

DB_URL_ENV = "CYTOSTUDY_DB_URL"
# how long a write keeps retrying a locked or unreachable database before the participant is told
DEFAULT_RETRY_SECONDS = 10.0
T = TypeVar("T")


class StorageUnavailable(RuntimeError):
    """The database is locked or unreachable right now; nothing already stored is lost. Retry later."""


def default_db_url(study_dir: str | Path) -> str:
    return f"sqlite:///{Path(study_dir).resolve() / 'study.db'}"


def resolve_db_url(study_dir: str | Path, db_url: str | None = None) -> str:
    """The database a study uses: the argument, else ``$CYTOSTUDY_DB_URL``, else ``STUDY/study.db``."""
    return db_url or os.environ.get(DB_URL_ENV) or default_db_url(study_dir)


def describe_url(url: str) -> str:
    """A database URL without its password, for messages."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        cred, host = rest.rsplit("@", 1)
        return f"{scheme}://{cred.split(':', 1)[0]}@{host}"
    return url


def make_engine(url: str, busy_timeout_s: float = 5.0) -> Engine:
    """An engine with the durability and locking settings described in the module docstring."""
    if url.startswith("sqlite"):
        engine = create_engine(url, pool_size=10, max_overflow=150, pool_timeout=busy_timeout_s,
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
    kwargs = dict(pool_size=10, max_overflow=150, pool_pre_ping=True, pool_timeout=busy_timeout_s)
    if url.startswith("postgresql"):
        kwargs["connect_args"] = {"connect_timeout": max(1, int(busy_timeout_s))}
    return create_engine(url, **kwargs)


def is_transient(exc: BaseException) -> bool:
    """Locked / busy / unreachable: worth retrying, nothing lost."""
    if isinstance(exc, (OperationalError, PoolTimeout)):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


class Database:
    """Engine + migrations + transactional helpers with retry on transient failures."""

    def __init__(self, url: str, retry_seconds: float = DEFAULT_RETRY_SECONDS, busy_timeout_s: float = 5.0):
        self.url = url
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
        def once():
            with Session(self.write_engine, expire_on_commit=False) as s:
                with s.begin():
                    return fn(s)

        def go():
            if self._write_lock is None:
                return once()
            with self._write_lock:
                return once()
        return self.run(go)

    def dispose(self) -> None:
        self.engine.dispose()
