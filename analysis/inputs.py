"""Reading an export for analysis: the table (an export's two tables joined by
:func:`cytocore.schema.load_export_tables`, or a single joined table made elsewhere), its stimulus table, and its
lineage (what it says about the study, stimuli and model), checked against each other."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pandas as pd

from cytocore.lineage import UNKNOWN, read_lineage
from cytocore.schema import ResponseDataError, load_export_tables
from cytocore.study_files import export_file

__all__ = ["LoadedExport", "load_export"]


class LoadedExport(NamedTuple):
    """What :func:`load_export` read: ``table`` for :func:`cytocore.validation.validate_responses`, ``stimuli`` for its
    ``stimuli`` argument (None for a single joined table), ``lineage`` for the report."""

    table: pd.DataFrame
    lineage: dict
    stimuli: pd.DataFrame | None


def load_export(data: str | Path, study_folder: str | Path | None = None) -> LoadedExport:
    """The response table at ``data`` (an export folder or its responses file, its stimulus table beside it; or a
    single joined table), its stimulus table and its lineage (:func:`cytocore.lineage.read_lineage`).

    Raises :class:`ResponseDataError` when the study folder given is not the study the rows come from."""
    data = export_file(data)
    df, stimuli = load_export_tables(data)
    try:
        lineage = read_lineage(df.attrs, data, study_folder)
    except FileNotFoundError as e:
        raise ResponseDataError(str(e)) from None
    if "study_id" in df.columns and len(df):
        ids = sorted(df["study_id"].dropna().astype(str).unique())
        claimed = lineage.get("study_id", UNKNOWN)
        if study_folder is not None and claimed != UNKNOWN and ids and ids != [str(claimed)]:
            raise ResponseDataError(
                f"the responses in {data} are from study {', '.join(map(repr, ids))} (column 'study_id') but the study "
                f"folder {study_folder} is study {claimed!r}: give the folder of the study these responses were "
                "exported from (or none).")
        if claimed == UNKNOWN and len(ids) == 1:
            lineage["study_id"] = ids[0]
            lineage["sources"]["study_id"] = "the table's study_id column"
    return LoadedExport(df, lineage, stimuli)
