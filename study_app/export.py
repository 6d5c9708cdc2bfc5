"""Tidy long-format export: one row per response, joined with the stimulus manifest and the model's outputs, in
the columns of ``docs/tidy-responses.md`` (``cytocore.schema``), validated before it is written, plus what an
analysis needs to exclude disturbed trials (``n_presentations``, ``n_reconnects``, ``image_load_ms``).

Provenance travels with the data: the Parquet file's schema metadata (key ``b"cytostudy"``, a JSON object) and a
sidecar ``<export>.provenance.json`` (:mod:`cytocore.study_files`) hold the keys of :data:`PROVENANCE_KEYS` — the
lineage fields of :mod:`cytocore.lineage`, which tie every row to its study build, stimuli, model weights and
training data, the build's record of the model and the number of responses."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import select

from cytocore.lineage import LINEAGE_FIELDS, lineage_from_study_meta
from cytocore.provenance import atomic_output, code_version, sha256_bytes, write_json
from cytocore.schema import MODEL_PROB_PREFIX, REQUIRED_COLUMNS, STIMULUS_COLUMNS, ResponseDataError
from cytocore.study_files import EXPORT_STEM, METADATA_KEY, provenance_sidecar
from cytocore.validation import validate_responses

from .storage import Assignment, Participant, Response, describe_url

EXTRA_COLUMNS = ("n_presentations", "n_reconnects", "image_load_ms")
PROVENANCE_KEYS = (*LINEAGE_FIELDS, "model", "n_responses")
PARQUET_KEY = METADATA_KEY.encode()
_DB_COLUMNS = ["participant_id", "participant_role", "years_experience", "trial_index", "block", "phase",
               "is_attention_check", "stimulus_id", "auth_response", "auth_confidence", "auth_confidence_level",
               "class_response", "class_confidence", "class_confidence_level", "confidence_levels", "auth_rt_ms",
               "class_rt_ms", "responded_at", *EXTRA_COLUMNS]


class NoResponses(ValueError):
    """An export of a study that has no answers yet."""


def _rows(service) -> list[tuple]:
    def go(s):
        q = (select(Participant.id, Participant.role, Participant.years_experience, Assignment.trial_index,
                    Assignment.block, Assignment.phase, Assignment.is_attention_check, Assignment.stimulus_id,
                    Response.auth_response, Response.auth_confidence, Response.auth_confidence_level,
                    Response.class_response, Response.class_confidence, Response.class_confidence_level,
                    Response.confidence_levels, Response.auth_rt_ms, Response.class_rt_ms, Response.responded_at,
                    Response.n_presentations, Response.n_reconnects, Response.image_load_ms)
             .join(Assignment, Assignment.id == Response.assignment_id)
             .join(Participant, Participant.id == Assignment.participant_id)
             .where(Participant.study_id == service.cfg.id)
             .order_by(Participant.number, Assignment.seq))
        return [tuple(r) for r in s.execute(q).all()]
    return service.db.read(go)


def _typed(df: pd.DataFrame, prob_cols: list[str]) -> pd.DataFrame:
    df["responded_at"] = pd.to_datetime(df["responded_at"], utc=True)
    for c in ("years_experience", "auth_confidence", "class_confidence", "auth_rt_ms", "class_rt_ms",
              "morph_strength", "model_confidence", "model_margin", "model_anomaly", "image_load_ms", *prob_cols):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
    for c in ("trial_index", "block", "auth_confidence_level", "class_confidence_level", "confidence_levels",
              "n_presentations", "n_reconnects"):
        df[c] = df[c].fillna(0).astype("int64")
    df["is_attention_check"] = df["is_attention_check"].astype(bool)
    df["model_pred_class"] = df["model_pred_class"].astype(object).where(df["model_pred_class"].notna(), None)
    return df


def export_responses(service, include_practice: bool = True, validate: bool = True) -> pd.DataFrame:
    """The tidy response table of ``service``'s study (empty DataFrame with the right columns if no responses),
    joined with the manifest the answers were given with."""
    study = service.study
    df = pd.DataFrame(_rows(service), columns=_DB_COLUMNS)
    if not include_practice:
        df = df[df["phase"] == "main"]
    prob_cols = [f"{MODEL_PROB_PREFIX}{c}" for c in study.classes]
    keep = ["stimulus_id", *STIMULUS_COLUMNS] + prob_cols
    df = df.merge(study.manifest.reset_index(drop=True)[keep], on="stimulus_id", how="left", validate="many_to_one")
    df.insert(0, "study_id", service.cfg.id)
    df = _typed(df, prob_cols)[list(REQUIRED_COLUMNS) + prob_cols + list(EXTRA_COLUMNS)].reset_index(drop=True)
    if validate and len(df) and (df["phase"] == "main").any():
        try:
            validate_responses(df, classes=study.classes, min_attention_accuracy=None)
        except ResponseDataError as exc:  # content (e.g. one rater who always said "real") is not a schema error
            if "after the stated exclusions" not in str(exc):
                raise
    return df


def export_provenance(service, n_responses: int) -> dict[str, Any]:
    """The keys of :data:`PROVENANCE_KEYS` for an export of ``service``'s study: its lineage in the names of
    :data:`cytocore.lineage.LINEAGE_FIELDS` (None where the study does not say), and the build's model record
    (path, stage, resolution, one weights hash per stage of a cascade)."""
    meta = service.study.meta
    lineage = lineage_from_study_meta(meta)
    return {**{k: lineage.get(k) for k in LINEAGE_FIELDS}, "study_id": service.cfg.id,
            "model": meta.get("provenance", {}).get("model"),
            "export_code_version": code_version(),
            "exported_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "n_responses": int(n_responses), "database": describe_url(service.db.url),
            "version_note": service.version_note or None}


def export_paths(out: str | Path) -> tuple[Path, Path]:
    """(csv, parquet): ``out`` is a folder (responses.csv + responses.parquet) or a .csv / .parquet file name."""
    out = Path(out)
    base = out.with_suffix("") if out.suffix.lower() in (".csv", ".parquet") else out / EXPORT_STEM
    return base.with_suffix(".csv"), base.with_suffix(".parquet")


def write_export(df: pd.DataFrame, out: str | Path, provenance: dict[str, Any] | None = None) -> list[Path]:
    """Write ``df`` as CSV and Parquet (atomically); with ``provenance``, also into the Parquet schema metadata
    and ``<parquet>.provenance.json``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    csv, parquet = export_paths(out)
    parquet.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(csv) as tmp:
        df.to_csv(tmp, index=False)
    table = pa.Table.from_pandas(df, preserve_index=False)
    if provenance is not None:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                               PARQUET_KEY: json.dumps(provenance, default=str).encode()})
    with atomic_output(parquet) as tmp:
        pq.write_table(table, tmp)
    paths = [csv, parquet]
    if provenance is not None:
        side = provenance_sidecar(parquet)
        write_json(side, {**provenance, "files": {p.name: sha256_bytes(p.read_bytes()) for p in paths}})
        paths.append(side)
    return paths


def export_study(service, out: str | Path, include_practice: bool = True) -> tuple[pd.DataFrame, list[Path]]:
    """Export with provenance; :class:`NoResponses` (saying what to do) when nobody has answered yet."""
    df = export_responses(service, include_practice=include_practice)
    if not len(df):
        raise NoResponses(
            f"study {service.cfg.id!r} has no responses{' in the main part' if not include_practice else ''} in "
            f"{describe_url(service.db.url)} yet: nothing to export. Let participants take it (cytostudy serve), "
            f"or simulated raters (cytostudy simulate {service.study.path} --n 5), then export again; if the "
            "answers are in another database, pass its URL (db_url / --db-url or $CYTOSTUDY_DB_URL)")
    return df, write_export(df, out, export_provenance(service, len(df)))


def read_provenance(parquet: str | Path) -> dict[str, Any]:
    """The provenance an export carries in its Parquet schema metadata."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(parquet).metadata or {}
    if PARQUET_KEY not in meta:
        raise KeyError(f"{parquet} carries no {PARQUET_KEY!r} provenance (not a cytostudy export?)")
    return json.loads(meta[PARQUET_KEY])
