"""Lineage: the ids and hashes that tie an analysis back to its responses, study, stimuli, model and training data.

The contract between the study export and the analysis, in one vocabulary (:data:`LINEAGE_FIELDS`): the export
writes these names (:func:`lineage_from_study_meta` turns a study's ``study.json`` into them) into its provenance
record — the Parquet file's schema metadata and ``<export>.provenance.json`` (:mod:`cytocore.study_files`) — and a
table made elsewhere may carry them in ``df.attrs[METADATA_KEY]`` or a ``<file>.lineage.json`` beside it.
:func:`read_lineage` gathers what is present and marks every other field ``"unknown"`` — a report then says plainly
which link of the chain it cannot vouch for. The names older exports and study folders used are read too
(:data:`OLD_NAMES`, the nested ``model`` record), never written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from .provenance import sha256_file
from .study_files import MANIFEST_FILE, METADATA_KEY, STUDY_FILE, lineage_sidecar, provenance_sidecar

__all__ = ["LINEAGE_FIELDS", "METADATA_KEY", "UNKNOWN", "lineage_from_export_record", "lineage_from_study_folder",
           "lineage_from_study_meta", "read_lineage"]

UNKNOWN = "unknown"

#: field -> what it identifies (the export writes every one of them)
LINEAGE_FIELDS: dict[str, str] = {
    "study_id": "the study (also the table's study_id column)",
    "study_config_hash": "sha256 of the study's resolved config (study.json config_hash)",
    "study_content_hash": "the stimulus set: config hash + every stimulus id, role, source, class, morph and PNG "
                          "sha256 (study.json content_hash)",
    "manifest_sha256": "sha256 of the study's manifest.csv",
    "stimuli_source_hash": "the real images the stimuli were cut from (study.json provenance.data_hash)",
    "model_name": "the diffusion model that generated and classified the stimuli",
    "model_weights_sha256": "sha256 of that model's weights file",
    "model_code_version": "the code version that trained the model",
    "model_training_data_hash": "the training data of the model (study.json provenance.model.data_hash)",
    "model_train_steps": "training steps of the model",
    "export_code_version": "the code version that wrote the export",
    "exported_utc": "when the export was written",
}
#: the build's model record (study.json ``provenance.model``; one weights hash per stage for a cascade) -> field
MODEL_RECORD_FIELDS: dict[str, str] = {"name": "model_name", "weights_sha256": "model_weights_sha256",
                                       "code_version": "model_code_version", "data_hash": "model_training_data_hash",
                                       "train_steps": "model_train_steps"}
#: names of older exports (``stimuli_data_hash``) and older builds' flat ``provenance`` keys -> field (read only)
OLD_NAMES: dict[str, str] = {"stimuli_data_hash": "stimuli_source_hash", "model_data_hash": "model_training_data_hash"}


def _from_model_record(model: Any) -> dict[str, Any]:
    if not isinstance(model, Mapping):
        return {}
    return {dst: model[src] for src, dst in MODEL_RECORD_FIELDS.items() if model.get(src) is not None}


def lineage_from_export_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """The lineage fields of a provenance record (what ``cytostudy export`` writes, a ``.lineage.json``, a table's
    ``attrs``): the fields named as in :data:`LINEAGE_FIELDS`, and what an older export named otherwise
    (:data:`OLD_NAMES`, the nested ``model`` record)."""
    out = {k: v for k, v in record.items() if k in LINEAGE_FIELDS}
    for old, new in OLD_NAMES.items():
        if record.get(old) is not None:
            out.setdefault(new, record[old])
    for k, v in _from_model_record(record.get("model")).items():
        out.setdefault(k, v)
    return out


def _parquet_record(path: Path) -> dict[str, Any]:
    """The ``METADATA_KEY`` JSON object in a Parquet file's schema metadata ({} if absent or not Parquet)."""
    if path.suffix.lower() != ".parquet" or not path.is_file():
        return {}
    try:
        import pyarrow.parquet as pq
        meta = pq.read_schema(path).metadata or {}
        raw = meta.get(METADATA_KEY.encode())
        return json.loads(raw) if raw else {}
    except (OSError, ValueError):
        return {}


def lineage_from_study_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The lineage fields a study's ``study.json`` record holds (its ``manifest_sha256`` as recorded at the build;
    fields it does not hold are left out)."""
    prov = meta.get("provenance", {}) or {}
    flat = {   # study.json's own keys (older builds name the model's fields flat)
        "study_id": meta.get("study_id"),
        "study_config_hash": meta.get("config_hash"),
        "study_content_hash": meta.get("content_hash"),
        "manifest_sha256": meta.get("manifest_sha256"),
        "stimuli_source_hash": prov.get("data_hash"),
        **{k: prov.get(k) for k in ("model_name", "model_weights_sha256", "model_code_version", "model_train_steps")},
        **{new: prov.get(old) for old, new in OLD_NAMES.items() if old.startswith("model_")},
    }
    # the nested model record (newer builds) fills every model field the flat keys leave empty
    out = {**_from_model_record(prov.get("model")), **{k: v for k, v in flat.items() if v is not None}}
    return {k: v for k, v in out.items() if v is not None}


def lineage_from_study_folder(folder: str | Path) -> dict[str, Any]:
    """What a built study folder says about itself (``study.json``; the sha256 of ``manifest.csv`` as it is)."""
    folder = Path(folder)
    meta_path = folder / STUDY_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(f"{folder} is not a built study folder (no {STUDY_FILE}); give the folder that "
                                "`cytostudy build` wrote")
    out = lineage_from_study_meta(json.loads(meta_path.read_text()))
    out.pop("manifest_sha256", None)
    manifest = folder / MANIFEST_FILE
    if manifest.is_file():
        out["manifest_sha256"] = sha256_file(manifest)
    return out


def read_lineage(attrs: Mapping[str, Any] | None = None, data_path: str | Path | None = None,
                 study_folder: str | Path | None = None) -> dict[str, Any]:
    """Every :data:`LINEAGE_FIELDS` entry, from (later wins) a study folder, a ``<data>.lineage.json`` beside
    the data file and the table's ``attrs[METADATA_KEY]``; ``"unknown"`` where none says. ``sources`` lists
    where each known value came from."""
    found: dict[str, Any] = {}
    sources: dict[str, str] = {}

    def take(d: Mapping[str, Any], where: str) -> None:
        for k, v in d.items():
            if k in LINEAGE_FIELDS and v not in (None, "", UNKNOWN):
                found[k] = v
                sources[k] = where

    if study_folder is not None:
        take(lineage_from_study_folder(study_folder), f"{Path(study_folder) / STUDY_FILE}")
    if data_path is not None:
        data_path = Path(data_path)
        for side in (provenance_sidecar(data_path), lineage_sidecar(data_path)):
            if side.is_file():
                take(lineage_from_export_record(json.loads(side.read_text())), str(side))
        if data_path.suffix.lower() == ".csv":   # a CSV export's provenance sits beside its Parquet twin
            side = provenance_sidecar(data_path.with_suffix(".parquet"))
            if side.is_file():
                take(lineage_from_export_record(json.loads(side.read_text())), str(side))
        record = _parquet_record(data_path)
        if record:
            take(lineage_from_export_record(record), f"{data_path} (Parquet metadata)")
    if attrs and isinstance(attrs.get(METADATA_KEY), Mapping):
        take(lineage_from_export_record(attrs[METADATA_KEY]), "the export's metadata (attrs)")
    out = {k: found.get(k, UNKNOWN) for k in LINEAGE_FIELDS}
    out["sources"] = sources
    return out
