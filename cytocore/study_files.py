"""The file names of a built study folder and of an export, in one place: the build writes them, the server, the
export and the analysis read them::

    study.toml      the resolved study config
    study.json      study id, config hash, content hash, provenance, leak audit (written last: a folder without it
                    is not a finished study)
    manifest.csv    one row per stimulus (server side only; never served)
    audit.json      the leak audit and the content-confound check
    stimuli/<id>.png
    manifests/      earlier versions' manifest.csv and study.json (kept when a folder is rebuilt)

An export is ``responses.csv`` + ``responses.parquet`` (or the names given), the provenance in the Parquet file's
schema metadata under :data:`METADATA_KEY` and in ``<export>.parquet.provenance.json`` beside it; a table made
elsewhere may carry the same record in ``df.attrs[METADATA_KEY]`` or in ``<table>.lineage.json``.
"""
from __future__ import annotations

from pathlib import Path

STUDY_FILE = "study.json"
CONFIG_FILE = "study.toml"
MANIFEST_FILE = "manifest.csv"
AUDIT_FILE = "audit.json"
STIMULI_DIR = "stimuli"
VERSIONS_DIR = "manifests"

#: the export's file names when it is given a folder: responses.csv and responses.parquet
EXPORT_STEM = "responses"
#: the key of an export's provenance record: in the Parquet schema metadata (as bytes) and in ``DataFrame.attrs``
METADATA_KEY = "cytostudy"
#: ``<export>.parquet.provenance.json``: the provenance record the export writes beside its Parquet file
PROVENANCE_SUFFIX = ".provenance.json"
#: ``<table>.lineage.json``: where a table made elsewhere may keep its lineage
LINEAGE_SUFFIX = ".lineage.json"


def provenance_sidecar(data: str | Path) -> Path:
    """``<data>.provenance.json`` beside an export file."""
    data = Path(data)
    return data.with_name(data.name + PROVENANCE_SUFFIX)


def lineage_sidecar(data: str | Path) -> Path:
    """``<data>.lineage.json`` beside a table."""
    data = Path(data)
    return data.with_name(data.name + LINEAGE_SUFFIX)
