"""Provenance shared by every package: the code version, content hashes, the record written beside artefacts,
and atomic writes (a crash never leaves half a file)."""
from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any, Iterable, Iterator

from . import __version__

REPO_ROOT = Path(__file__).resolve().parent.parent


@functools.lru_cache(maxsize=1)
def _git_version() -> str | None:
    try:
        sha = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha or None


def code_version() -> str:
    """``<package version>+g<git sha>[.dirty]`` when run from a git checkout, else the package version.

    The sha is looked up once per process; the dirty flag is checked on every call (it changes as one works).
    """
    sha = _git_version()
    if sha is None:
        return __version__
    try:
        dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        dirty = ""
    return f"{__version__}+g{sha}{'.dirty' if dirty else ''}"


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def hash_records(items: Iterable[Iterable[Any]]) -> str:
    """A stable sha256 over rows of simple values (e.g. (relative path, label, file hash))."""
    h = hashlib.sha256()
    for row in items:
        h.update(("\x1f".join(map(str, row)) + "\n").encode())
    return h.hexdigest()


def provenance_record(config: dict[str, Any] | None = None, data_hash: str | None = None,
                      **extra: Any) -> dict[str, Any]:
    """What every generated artefact records: config, code version, data hash, time."""
    record = {
        "code_version": code_version(),
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if data_hash is not None:
        record["data_hash"] = data_hash
    if config is not None:
        record["config"] = config
    record.update(extra)
    return record


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed over ``path`` only if the block succeeds.

    The temporary name keeps the suffix, so writers that choose a format by it (pandas, numpy) still work.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        tmp.replace(path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path`` and rename it over ``path``."""
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, data: dict[str, Any]) -> Path:
    """Write JSON atomically."""
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
