"""Provenance shared by every package: code version, content hashes, and the record written beside artefacts.

Imports nothing heavy (no torch), so the study app and the analysis can use it too.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any, Iterable

PACKAGE_VERSION = "0.1.0"


def code_version() -> str:
    """``<package version>+g<git sha>[.dirty]`` when run from a git checkout, else the package version."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return f"{PACKAGE_VERSION}+g{sha}{'.dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        return PACKAGE_VERSION


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


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


def write_json(path: str | Path, data: dict[str, Any]) -> None:
    """Write JSON atomically so a crash never leaves half a file."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    tmp.replace(path)
