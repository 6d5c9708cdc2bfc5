"""The file names of a built study folder and of an export, in one place: the build writes them, the server, the
export and the analysis read them::

    study.toml      the resolved study config
    study.json      study id, config hash, content hash, provenance, leak audit (written last: a folder without it
                    is not a finished study)
    manifest.csv    one row per stimulus (server side only; never served)
    audit.json      the leak audit and the content-confound check
    stimuli/<id>.png
    manifests/      earlier versions' manifest.csv and study.json (kept when a folder is rebuilt)

An export is two tidy tables keyed by ``stimulus_id``, each as CSV and Parquet::

    responses.csv / .parquet   one row per answer (no per-stimulus copies)
    stimuli.csv / .parquet     one row per stimulus of the study, answered or not, with the model's judgements

(or the names given: ``<name>.parquet`` and its :func:`stimuli_table_for` beside it), the provenance in both
Parquet files' schema metadata under :data:`METADATA_KEY` and in ``<responses>.parquet.provenance.json``; a table
made elsewhere (one joined table, the older single-table export) may carry the same record in
``df.attrs[METADATA_KEY]`` or in ``<table>.lineage.json``.
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
#: ... and its stimulus table beside them: stimuli.csv and stimuli.parquet
STIMULI_TABLE_STEM = "stimuli"
#: the suffixes an export table is written (and read) with
TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
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


def export_file(data: str | Path) -> Path:
    """The responses table an analysis reads: ``data`` itself, or in an export folder its ``responses.parquet``
    (``responses.csv`` when only that is there)."""
    data = Path(data)
    if not data.is_dir():
        return data
    parquet = data / f"{EXPORT_STEM}.parquet"
    csv = data / f"{EXPORT_STEM}.csv"
    return csv if csv.is_file() and not parquet.is_file() else parquet


def stimuli_table_for(responses: str | Path) -> Path:
    """The stimulus table written beside a responses table, same suffix: ``responses.parquet`` ->
    ``stimuli.parquet``, ``responses-<stamp>.csv`` -> ``stimuli-<stamp>.csv``, any other ``<name>.parquet`` ->
    ``<name>-stimuli.parquet``."""
    responses = Path(responses)
    stem = responses.stem
    name = (STIMULI_TABLE_STEM + stem[len(EXPORT_STEM):] if stem.startswith(EXPORT_STEM)
            else f"{stem}-{STIMULI_TABLE_STEM}")
    return responses.with_name(name + responses.suffix)
