"""Tidy long-format export in two tables keyed by ``stimulus_id`` (``docs/tidy-responses.md``):

* ``responses`` — one row per answer (:data:`cytocore.schema.RESPONSE_COLUMNS`, plus what an analysis needs to
  exclude disturbed trials: ``n_presentations``, ``n_reconnects``, ``image_load_ms``); the confidence as its level
  alone, its scale stated once in the provenance (``confidence_scale``);
* ``stimuli`` — one row per stimulus of the study, answered or not: the study's manifest (role, source, class,
  morph strength, the model's judgements, every further stimulus-level field).

Both are validated together before they are written. Provenance travels with the data: both Parquet files' schema
metadata (key ``b"cytostudy"``, a JSON object) and a sidecar ``<responses>.parquet.provenance.json``
(:mod:`cytocore.study_files`) hold the keys of :data:`PROVENANCE_KEYS` — the lineage fields of
:mod:`cytocore.lineage`, which tie every row to its study build, stimuli, model weights and training data, the
build's record of the model, the confidence scale and the numbers of responses and stimuli."""
from __future__ import annotations

import datetime as dt
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import select

from cytocore.confidence import confidence_scale_record
from cytocore.lineage import LINEAGE_FIELDS, lineage_from_study_meta
from cytocore.provenance import atomic_output, code_version, sha256_bytes, write_json
from cytocore.schema import (COLUMN_TYPES, MODEL_PROB_PREFIX, RESPONSE_COLUMNS, STIMULUS_TABLE_COLUMNS,
                             ResponseDataError, join_stimuli)
from cytocore.study_files import EXPORT_STEM, METADATA_KEY, provenance_sidecar, stimuli_table_for
from cytocore.validation import validate_responses

from .storage import Assignment, Participant, Response, describe_url

EXTRA_COLUMNS = ("n_presentations", "n_reconnects", "image_load_ms")
PROVENANCE_KEYS = (*LINEAGE_FIELDS, "model", "confidence_scale", "n_responses", "n_stimuli")
PARQUET_KEY = METADATA_KEY.encode()
_DB_COLUMNS = ["participant_id", "participant_role", "years_experience", "trial_index", "block", "phase",
               "is_attention_check", "stimulus_id", "auth_response", "auth_confidence_level", "class_response",
               "class_confidence_level", "confidence_levels", "auth_rt_ms", "class_rt_ms", "responded_at",
               *EXTRA_COLUMNS]


class NoResponses(ValueError):
    """An export of a study that has no answers yet."""


def _rows(service) -> list[tuple]:
    def go(s):
        q = (select(Participant.id, Participant.role, Participant.years_experience, Assignment.trial_index,
                    Assignment.block, Assignment.phase, Assignment.is_attention_check, Assignment.stimulus_id,
                    Response.auth_response, Response.auth_confidence_level,
                    Response.class_response, Response.class_confidence_level,
                    Response.confidence_levels, Response.auth_rt_ms, Response.class_rt_ms, Response.responded_at,
                    Response.n_presentations, Response.n_reconnects, Response.image_load_ms)
             .join(Assignment, Assignment.id == Response.assignment_id)
             .join(Participant, Participant.id == Assignment.participant_id)
             .where(Participant.study_id == service.cfg.id)
             .order_by(Participant.number, Assignment.seq))
        return [tuple(r) for r in s.execute(q).all()]
    return service.db.read(go)


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    df["responded_at"] = pd.to_datetime(df["responded_at"], utc=True)
    for c in ("years_experience", "auth_rt_ms", "class_rt_ms", "image_load_ms"):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
    for c in ("trial_index", "block", "auth_confidence_level", "class_confidence_level", "confidence_levels",
              "n_presentations", "n_reconnects"):
        df[c] = df[c].fillna(0).astype("int64")
    df["is_attention_check"] = df["is_attention_check"].astype(bool)
    return df


def export_responses(service, include_practice: bool = True) -> pd.DataFrame:
    """The responses table of ``service``'s study: one row per answer, no per-stimulus copies (empty, with the
    right columns, if nobody has answered)."""
    df = pd.DataFrame(_rows(service), columns=_DB_COLUMNS)
    if not include_practice:
        df = df[df["phase"] == "main"]
    df.insert(0, "study_id", service.cfg.id)
    return _typed(df)[list(RESPONSE_COLUMNS) + list(EXTRA_COLUMNS)].reset_index(drop=True)


def export_stimuli(service) -> pd.DataFrame:
    """The stimulus table of ``service``'s study: one row per stimulus of its manifest, answered or not — its
    role, source, class, morph strength and the model's judgements first, then every further manifest field."""
    study = service.study
    man = study.manifest.reset_index(drop=True)
    prob_cols = [f"{MODEL_PROB_PREFIX}{c}" for c in study.classes]
    first = ["stimulus_id", "role", *STIMULUS_TABLE_COLUMNS[1:], *prob_cols]
    df = man[first + [c for c in man.columns if c not in first]].copy()
    for c in [c for c in STIMULUS_TABLE_COLUMNS if COLUMN_TYPES[c] == "float"] + prob_cols:
        df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
    df["model_pred_class"] = df["model_pred_class"].astype(object).where(df["model_pred_class"].notna(), None)
    return df


def check_export(responses: pd.DataFrame, stimuli: pd.DataFrame, classes) -> None:
    """The two tables checked together (:func:`cytocore.validation.validate_responses`) before they are written;
    content the analysis states as an exclusion (one rater who always said "real") is not an error here."""
    if not len(responses) or not (responses["phase"] == "main").any():
        return
    try:
        validate_responses(join_stimuli(responses, stimuli), classes=classes, min_attention_accuracy=None,
                           stimuli=stimuli)
    except ResponseDataError as exc:
        if "after the stated exclusions" not in str(exc):
            raise


def export_provenance(service, n_responses: int, n_stimuli: int) -> dict[str, Any]:
    """The keys of :data:`PROVENANCE_KEYS` for an export of ``service``'s study: its lineage in the names of
    :data:`cytocore.lineage.LINEAGE_FIELDS` (None where the study does not say), the build's model record
    (path, stage, resolution, one weights hash per stage of a cascade) and the confidence scale."""
    meta = service.study.meta
    lineage = lineage_from_study_meta(meta)
    return {**{k: lineage.get(k) for k in LINEAGE_FIELDS}, "study_id": service.cfg.id,
            "model": meta.get("provenance", {}).get("model"),
            "confidence_scale": confidence_scale_record(service.K, len(service.study.classes),
                                                        service.cfg.confidence.style),
            "export_code_version": code_version(),
            "exported_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "n_responses": int(n_responses), "n_stimuli": int(n_stimuli), "database": describe_url(service.db.url),
            "version_note": service.version_note or None}


def export_paths(out: str | Path) -> tuple[Path, Path, Path, Path]:
    """(responses csv, responses parquet, stimuli csv, stimuli parquet): ``out`` is a folder (responses.* and
    stimuli.*) or a .csv / .parquet file name for the responses (the stimulus table beside it,
    :func:`cytocore.study_files.stimuli_table_for`)."""
    out = Path(out)
    base = out.with_suffix("") if out.suffix.lower() in (".csv", ".parquet") else out / EXPORT_STEM
    csv, parquet = base.with_suffix(".csv"), base.with_suffix(".parquet")
    return csv, parquet, stimuli_table_for(csv), stimuli_table_for(parquet)


def _write_table(df: pd.DataFrame, csv: Path, parquet: Path, provenance: dict[str, Any] | None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with atomic_output(csv) as tmp:
        df.to_csv(tmp, index=False)
    table = pa.Table.from_pandas(df, preserve_index=False)
    if provenance is not None:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                               PARQUET_KEY: json.dumps(provenance, default=str).encode()})
    with atomic_output(parquet) as tmp:
        pq.write_table(table, tmp)


def write_export(responses: pd.DataFrame, stimuli: pd.DataFrame, out: str | Path,
                 provenance: dict[str, Any] | None = None) -> list[Path]:
    """Write both tables as CSV and Parquet (atomically; paths in the order of :func:`export_paths`); with
    ``provenance``, also into both Parquet files' schema metadata and ``<responses>.parquet.provenance.json``
    (with the sha256 of every file)."""
    r_csv, r_parquet, s_csv, s_parquet = paths = list(export_paths(out))
    r_parquet.parent.mkdir(parents=True, exist_ok=True)
    _write_table(responses, r_csv, r_parquet, provenance)
    _write_table(stimuli, s_csv, s_parquet, provenance)
    if provenance is not None:
        side = provenance_sidecar(r_parquet)
        write_json(side, {**provenance, "files": {p.name: sha256_bytes(p.read_bytes()) for p in paths}})
        paths.append(side)
    return paths


def export_study(service, out: str | Path, include_practice: bool = True) -> tuple[pd.DataFrame, list[Path]]:
    """Export both tables with provenance: (the responses table, the paths of :func:`write_export`);
    :class:`NoResponses` (saying what to do) when nobody has answered yet."""
    responses = export_responses(service, include_practice=include_practice)
    if not len(responses):
        raise NoResponses(
            f"study {service.cfg.id!r} has no responses{' in the main part' if not include_practice else ''} in "
            f"{describe_url(service.db.url)} yet: nothing to export. Let participants take it (cytostudy serve), "
            f"or simulated raters (cytostudy simulate {service.study.path} --n 5), then export again; if the "
            "answers are in another database, pass its URL (db_url / --db-url or $CYTOSTUDY_DB_URL)")
    stimuli = export_stimuli(service)
    check_export(responses, stimuli, service.study.classes)
    return responses, write_export(responses, stimuli, out,
                                   export_provenance(service, len(responses), len(stimuli)))


def export_zip(paths: list[Path]) -> bytes:
    """The files of one export as one zip (the admin page's download), each under its own name."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for p in paths:
            z.write(p, Path(p).name)
    return buf.getvalue()


def read_provenance(parquet: str | Path) -> dict[str, Any]:
    """The provenance an export carries in its Parquet schema metadata."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(parquet).metadata or {}
    if PARQUET_KEY not in meta:
        raise KeyError(f"{parquet} carries no {PARQUET_KEY!r} provenance (not a cytostudy export?)")
    return json.loads(meta[PARQUET_KEY])
