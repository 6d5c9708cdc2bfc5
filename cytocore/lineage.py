"""Lineage: the ids and hashes that tie an analysis back to its responses, study, stimuli, model and training data.

The contract between the study export and the analysis. An export records them in the response table's
``df.attrs[LINEAGE_ATTR]`` (a Parquet file carries ``attrs``; a CSV cannot, so a ``<file>.lineage.json`` beside
it may hold the same dict); a built study folder holds most of them in ``study.json``. :func:`read_lineage`
gathers what is present and marks every other field ``"unknown"`` — a report then says plainly which link of
the chain it cannot vouch for.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from .provenance import sha256_file

__all__ = ["LINEAGE_ATTR", "LINEAGE_FIELDS", "UNKNOWN", "lineage_from_export_record", "lineage_from_study_folder",
           "read_lineage"]

LINEAGE_ATTR = "cytostudy"
UNKNOWN = "unknown"

#: field -> what it identifies (the export should write every one of them)
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
    "model_training_data_hash": "the training data of the model (study.json provenance.model_data_hash)",
    "model_train_steps": "training steps of the model",
    "export_code_version": "the code version that wrote the export",
    "exported_utc": "when the export was written",
}


def lineage_from_export_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """The lineage fields in the provenance record ``cytostudy export`` writes (the Parquet schema metadata key
    ``b"cytostudy"`` and ``<export>.provenance.json``; ``model`` is a nested record, with one weights hash per stage
    for a cascade). Keys already named as in :data:`LINEAGE_FIELDS` pass through."""
    out = {k: v for k, v in record.items() if k in LINEAGE_FIELDS}
    if record.get("stimuli_data_hash") is not None:
        out.setdefault("stimuli_source_hash", record["stimuli_data_hash"])
    model = record.get("model")
    if isinstance(model, Mapping):
        for src, dst in (("name", "model_name"), ("weights_sha256", "model_weights_sha256"),
                         ("code_version", "model_code_version"), ("data_hash", "model_training_data_hash"),
                         ("train_steps", "model_train_steps")):
            if model.get(src) is not None:
                out.setdefault(dst, model[src])
    return out


def _parquet_record(path: Path) -> dict[str, Any]:
    """The ``b"cytostudy"`` JSON object in a Parquet file's schema metadata ({} if absent or not Parquet)."""
    if path.suffix.lower() != ".parquet" or not path.is_file():
        return {}
    try:
        import pyarrow.parquet as pq
        meta = pq.read_schema(path).metadata or {}
        raw = meta.get(LINEAGE_ATTR.encode())
        return json.loads(raw) if raw else {}
    except (OSError, ValueError):
        return {}


def lineage_from_study_folder(folder: str | Path) -> dict[str, Any]:
    """What a built study folder says about itself (``study.json``, ``manifest.csv``)."""
    folder = Path(folder)
    meta_path = folder / "study.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{folder} is not a built study folder (no study.json); give the folder that "
                                "`cytostudy build` wrote")
    meta = json.loads(meta_path.read_text())
    prov = meta.get("provenance", {}) or {}
    model = prov.get("model") if isinstance(prov.get("model"), Mapping) else {}
    flat = {   # study.json's own keys (older builds name the model's fields flat)
        "study_id": meta.get("study_id"),
        "study_config_hash": meta.get("config_hash"),
        "study_content_hash": meta.get("content_hash"),
        "stimuli_source_hash": prov.get("data_hash"),
        "model_name": prov.get("model_name"),
        "model_weights_sha256": prov.get("model_weights_sha256"),
        "model_code_version": prov.get("model_code_version"),
        "model_training_data_hash": prov.get("model_data_hash"),
        "model_train_steps": prov.get("model_train_steps"),
    }
    # the nested model record (newer builds) fills every model field the flat keys leave empty
    out = {**lineage_from_export_record({"model": model}), **{k: v for k, v in flat.items() if v is not None}}
    manifest = folder / "manifest.csv"
    if manifest.is_file():
        out["manifest_sha256"] = sha256_file(manifest)
    return {k: v for k, v in out.items() if v is not None}


def read_lineage(attrs: Mapping[str, Any] | None = None, data_path: str | Path | None = None,
                 study_folder: str | Path | None = None) -> dict[str, Any]:
    """Every :data:`LINEAGE_FIELDS` entry, from (later wins) a study folder, a ``<data>.lineage.json`` beside
    the data file and the table's ``attrs[LINEAGE_ATTR]``; ``"unknown"`` where none says. ``sources`` lists
    where each known value came from."""
    found: dict[str, Any] = {}
    sources: dict[str, str] = {}

    def take(d: Mapping[str, Any], where: str) -> None:
        for k, v in d.items():
            if k in LINEAGE_FIELDS and v not in (None, "", UNKNOWN):
                found[k] = v
                sources[k] = where

    if study_folder is not None:
        take(lineage_from_study_folder(study_folder), f"{Path(study_folder) / 'study.json'}")
    if data_path is not None:
        data_path = Path(data_path)
        for suffix in (".provenance.json", ".lineage.json"):
            side = data_path.with_name(data_path.name + suffix)
            if side.is_file():
                take(lineage_from_export_record(json.loads(side.read_text())), str(side))
        if data_path.suffix.lower() == ".csv":   # a CSV export's provenance sits beside its Parquet twin
            twin = data_path.with_suffix(".parquet")
            side = twin.with_name(twin.name + ".provenance.json")
            if side.is_file():
                take(lineage_from_export_record(json.loads(side.read_text())), str(side))
        record = _parquet_record(data_path)
        if record:
            take(lineage_from_export_record(record), f"{data_path} (Parquet metadata)")
    if attrs and isinstance(attrs.get(LINEAGE_ATTR), Mapping):
        take(lineage_from_export_record(attrs[LINEAGE_ATTR]), "the export's metadata (attrs)")
    out = {k: found.get(k, UNKNOWN) for k in LINEAGE_FIELDS}
    out["sources"] = sources
    return out
