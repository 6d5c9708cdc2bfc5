"""Model folders: the one registry that decides a folder's class from its record, as diffusers' ``_class_name``
does, and every loader built on it.

``cytomodel.json`` names the stage a folder holds (``stage``: "base" when absent, for records written before
cascades existed)::

    "base"      CytoModel       a class-conditional base stage
    "superres"  SuperResModel   a super-resolution stage (it cannot generate alone)
    "cascade"   Cascade         base/ + superres/ in one folder

:func:`load_stage` loads any folder as its record says; :func:`load_model` one stage, :func:`load_generator` what can
generate, :func:`load_base` and :func:`base_folder` the stage a classifier runs on. :func:`assemble_cascade` writes
a cascade folder from two stage folders, :func:`copy_model_folder` a copy whose record may then change.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch

from cytocore.provenance import sha256_file, write_json

from .base import METADATA_FILE, CytoModel, read_metadata
from .cascade import BASE_DIR, DEFAULT_SUPERRES_STEPS, SUPERRES_DIR, Cascade, CascadeError, check_stages_agree
from .superres import SuperResModel

Device = str | torch.device | None
STAGES: dict[str, type] = {"base": CytoModel, "superres": SuperResModel, "cascade": Cascade}


def stage_class(path: str | Path) -> tuple[type, dict[str, Any]]:
    """The class a model folder holds (from its record's ``stage``) and the record."""
    meta = read_metadata(path)
    stage = meta.get("stage", "base")
    if stage not in STAGES:
        raise ValueError(f"{Path(path) / METADATA_FILE}: unknown stage {stage!r} (expected "
                         f"{', '.join(STAGES)})")
    return STAGES[stage], meta


def load_stage(path: str | Path, device: Device = None) -> CytoModel | Cascade:
    """Any model folder as it is — a cascade, a base stage or a lone super-resolution stage — e.g. to re-save it
    (``cytomodel export``); use :func:`load_generator` to sample."""
    path = Path(path)
    cls, meta = stage_class(path)
    if cls is Cascade:
        folders = Cascade.stage_folders(path, meta)
        return Cascade.from_stages(path, meta, load_stage(folders["base"], device),
                                   load_stage(folders["superres"], device))
    return cls.from_record(path, meta, device)


def load_model(path: str | Path, device: Device = None) -> CytoModel:
    """One stage folder (a base stage, or a super-resolution stage as :class:`SuperResModel`); a cascade is refused
    with what to do."""
    cls, _ = stage_class(path)
    if not issubclass(cls, CytoModel):
        raise ValueError(f"{path} is a cascade (base + super-resolution stage): load it with "
                         "cytomodel.load_generator, or point to its base/ folder for one stage")
    return load_stage(path, device)


def load_generator(path: str | Path, device: Device = None) -> CytoModel | Cascade:
    """Whatever a model folder holds: a cascade, or a single base stage. A lone super-resolution stage cannot
    generate (it needs a base to draw the low-res cell) and is refused with what to do."""
    cls, _ = stage_class(path)
    if cls is SuperResModel:
        raise CascadeError(f"{path} is a super-resolution stage alone; it needs a base stage to generate. "
                           "Assemble a cascade of a base stage (e.g. data/models/cpu-32) and this one "
                           "(`cytomodel cascade` or assemble_cascade) and pass that folder")
    return load_stage(path, device)


def base_folder(path: str | Path) -> Path:
    """The folder of the stage a classifier uses: a base-stage folder itself, or a cascade's base/ folder."""
    path = Path(path)
    cls, meta = stage_class(path)
    if cls is Cascade:
        return path / meta.get("stages", {}).get("base", {}).get("folder", BASE_DIR)
    if cls is SuperResModel:
        raise CascadeError(f"{path} is a super-resolution stage; the classifier runs on a base stage: pass the base "
                           "model folder or a cascade")
    return path


def load_base(path: str | Path, device: Device = None) -> CytoModel:
    """The stage a classifier uses: a base-stage folder itself, or the base stage of a cascade."""
    return load_stage(base_folder(path), device)


def copy_model_folder(src: str | Path, dst: str | Path, reuse: bool = False) -> Path:
    """Copy a model folder (a stage or a whole cascade, its stage links resolved) to a new folder ``dst``, so that a
    record can be changed there — a lab's own anomaly reference, say — while the original keeps its own. ``reuse``:
    a ``dst`` that already holds a copy of the same weights (an earlier, interrupted run) is kept as it is."""
    src, dst = Path(src), Path(dst)
    stage_class(src)   # a model folder, or a clear error naming it
    if dst.resolve() == src.resolve():
        raise ValueError(f"{dst} is the model folder itself: name a new folder for the copy")
    if dst.exists() and any(dst.iterdir()):
        if reuse and _weights(dst) == _weights(src):
            return dst
        raise ValueError(f"{dst} exists and is not a copy of {src}: name a new folder for the copy"
                         if reuse else f"{dst} exists and is not empty: name a new folder for the copy of {src}")
    shutil.copytree(src, dst, symlinks=False, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.tmp"))
    return dst


def _weights(folder: Path) -> dict[str, str]:
    """Every weights file under ``folder`` (stage links followed): relative path -> sha256."""
    return {str((Path(d) / f).relative_to(folder)): sha256_file(Path(d) / f)
            for d, _, files in os.walk(folder, followlinks=True) for f in files if f.endswith(".safetensors")}


def assemble_cascade(base_dir: str | Path, superres_dir: str | Path, out: str | Path,
                     superres_steps: int = DEFAULT_SUPERRES_STEPS, name: str | None = None) -> Cascade:
    """Copy two stage folders into one cascade folder and record them, after checking they agree."""
    base = load_model(base_dir)
    superres = load_model(superres_dir)
    if not isinstance(superres, SuperResModel):
        raise CascadeError(f"superres={superres_dir} is a {superres.STAGE} stage, not a super-resolution stage")
    check_stages_agree(base, superres, where=f"base={base_dir}, superres={superres_dir}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for src, dst in ((base_dir, BASE_DIR), (superres_dir, SUPERRES_DIR)):
        if Path(src).resolve() != (out / dst).resolve():
            shutil.rmtree(out / dst, ignore_errors=True)
            shutil.copytree(src, out / dst, ignore=shutil.ignore_patterns("*.tmp"))
    cascade = Cascade(base, superres, {"name": name} if name else {})
    write_json(out / METADATA_FILE, cascade.record(out, superres_steps))
    return load_stage(out)
