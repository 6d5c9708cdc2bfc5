"""The study database (SQLite by default, PostgreSQL for many raters): tables, schema versions, transactions."""
from .database import (DB_URL_ENV, DEFAULT_RETRY_SECONDS, Database, StorageUnavailable, default_db_url,
                       describe_url, is_transient, make_engine, resolve_db_url)
from .migrations import MIGRATIONS, SCHEMA_VERSION, migrate, schema_version
from .tables import (AdminAttempt, Assignment, Base, ManifestVersion, Participant, Response, SchemaVersion, StudyRow,
                     utcnow)

__all__ = ["AdminAttempt", "Assignment", "Base", "DB_URL_ENV", "DEFAULT_RETRY_SECONDS", "Database", "MIGRATIONS",
           "ManifestVersion", "Participant", "Response", "SCHEMA_VERSION", "SchemaVersion", "StorageUnavailable",
           "StudyRow", "default_db_url", "describe_url", "is_transient", "make_engine", "migrate", "resolve_db_url",
           "schema_version", "utcnow"]
