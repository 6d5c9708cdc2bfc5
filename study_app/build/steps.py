"""Building a leak-proof stimulus set: ``build_study(data, model, out, cfg)``, as a short sequence of named steps.

Real images go through exactly the path generated ones take: decode -> centre crop (from the model's record,
:mod:`.framing`) -> resize to the model's output resolution with the model's own preprocessing -> the same
resampling to ``display_px`` -> the same PNG encoder (:mod:`.render`: lossless, padded to one byte size for the set). A leak audit and a content-confound check
(:mod:`study_app.audit`) run at the end of every build; a failed leak audit leaves the folder unfinished (no
study.json). The folder layout is in :mod:`study_app.study`.
"""
from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from PIL import Image

from cytocore.provenance import hash_records, provenance_record, sha256_file, write_json
from cytocore.study_files import AUDIT_FILE, CONFIG_FILE, MANIFEST_FILE, STIMULI_DIR, STUDY_FILE

from ..audit import LeakAuditError, run_audits
from ..config import StudyConfig, config_hash, config_to_toml, load_study_config
from ..design import trial_sequence
from .framing import Framing, FramingError, resolve_framing
from .guard import StudyBuildError, prepare_output
from .model_outputs import model_outputs
from .render import new_id, pad_stimulus, padded_size, render_stimulus
from .sources import fill_pools, match_classes, morph_items, real_items, select_real, synthetic_items

log = logging.getLogger(__name__)
AUDIT_PARTICIPANTS = 24   # simulated participants whose sequences the order features of the audit use
FILLED_PX_TELL = 0.5      # a real cell's framing window may run this many model pixels past its image, no more: a
                          # wider band is a flat margin (cytomodel.data.framing._window) that no generated cell has


def resolve_device(device: str | None):
    """The device a build runs the model on: cytomodel's one policy (``device`` if given and available, else CUDA
    when present, else the CPU), its errors reported as build errors."""
    from cytomodel.runtime import resolve_device as cytomodel_device

    try:
        return cytomodel_device(device)
    except ValueError as exc:
        raise StudyBuildError(str(exc)) from None


def load_study_model(model_dir: str | Path, device: str | None = None):
    """Whatever ``model_dir`` holds (a cascade or one base stage), on the build's device."""
    from cytomodel.models.loading import load_generator
    from cytomodel.runtime import configure_runtime

    configure_runtime()
    return load_generator(model_dir, device=resolve_device(device))


def model_record(model, model_dir: str | Path) -> dict[str, Any]:
    """What the export's provenance says about the model: name, path, training data, steps, code, weights."""
    meta, weights = model.metadata, model.weights_summary(model_dir)
    return {"name": meta.get("name"), "path": str(model_dir), "stage": weights["stage"],
            "resolution": model.resolution, "data_hash": meta.get("data_hash"), "train_steps": weights["train_steps"],
            "code_version": meta.get("code_version"), "weights_sha256": weights["weights_sha256"]}


def _framing(model, records, picked: dict[str, dict], cfg: StudyConfig, data: str) -> Framing:
    """How real images are cut. A model that records a measured framing frames them like its training cells (each
    cell found and centred, one scale per image size: :mod:`cytomodel.intake`), unless the config states a centre
    crop; otherwise the centre crop its record (or the config) gives."""
    paths = [p for roles in picked.values() for ps in roles.values() for p in ps]
    intake = model.intake(stain="none")  # real stimuli are shown in their own colours, never re-stained
    contract = intake.contract
    if cfg.stimuli.real_crop_fraction is None and contract is not None and (contract.window_cell or
                                                                            contract.window_rbc):
        intake.plan(paths)
        rules = sorted({s.rule for s in intake.plans.values()})
        return Framing(model.crop_fraction, "framing", "framed like the model's training cells: " + "; ".join(rules),
                       intake=intake)
    sizes = set()
    for p in paths:
        with Image.open(p) as im:
            sizes.add(im.size)
    metas = [model.metadata] + ([model.base.metadata] if hasattr(model, "base") else [])
    try:
        return resolve_framing(metas, model.crop_fraction, sizes, cfg.stimuli.real_crop_fraction, data)
    except FramingError as exc:
        raise StudyBuildError(str(exc)) from None


def _write_stimuli(items, outputs: pd.DataFrame, out: Path, cfg: StudyConfig) -> tuple[pd.DataFrame, int]:
    """Render every item with the one encoder under a random id, pad every file to one byte size; the manifest,
    sorted by id (a random order), and that size."""
    s = cfg.stimuli
    (out / STIMULI_DIR).mkdir(parents=True, exist_ok=True)
    compact = [render_stimulus(it.array, s.display_px, s.upscale) for it in items]
    size = padded_size(len(png) for png in compact)
    taken: set[str] = set()
    rows = []
    for it, m, small in zip(items, outputs.to_dict("records"), compact):
        sid = new_id(taken)
        f = f"{STIMULI_DIR}/{sid}.png"
        png = pad_stimulus(small, size)
        (out / f).write_bytes(png)
        rows.append({"stimulus_id": sid, "file": f, "role": it.role, "source": it.source,
                     "true_class": it.true_class, "morph_strength": it.morph_strength, "origin": it.origin,
                     "seed": it.seed, "guidance": None if it.source == "real" else s.guidance,
                     "steps": None if it.source == "real" else s.steps,
                     "sha256": hashlib.sha256(png).hexdigest(), **m})
    manifest = pd.DataFrame(rows).sort_values("stimulus_id").reset_index(drop=True)
    manifest.to_csv(out / MANIFEST_FILE, index=False)
    (out / CONFIG_FILE).write_text(config_to_toml(cfg))
    return manifest, size


def _content_hash(cfg: StudyConfig, manifest: pd.DataFrame) -> str:
    return hash_records([(config_hash(cfg),)] + [
        (r.stimulus_id, r.role, r.source, r.true_class, r.morph_strength, r.sha256) for r in manifest.itertuples()])


def build_study(data: str | Path, model_dir: str | Path, out: str | Path, cfg: StudyConfig | str | Path | None = None,
                overwrite: bool = False, progress: bool = False, on_step: Callable[[str], None] | None = None,
                device: str | None = None, db_url: str | None = None) -> Path:
    """Build a study folder (see the module docstring). Raises :class:`LeakAuditError` when the audit fails,
    :class:`StudyBuildError` for what cannot be built as asked. ``db_url``: the database the study will use
    (default ``$CYTOSTUDY_DB_URL`` or ``STUDY/study.db``), checked for answers before an overwrite."""
    say = on_step or (lambda m: log.info(m))
    cfg = cfg if isinstance(cfg, StudyConfig) else load_study_config(cfg)
    s, out, data = cfg.stimuli, Path(out), str(data)
    t_start = time.perf_counter()
    prepare_output(out, overwrite, db_url)
    from cytomodel.data import load_image, preprocess, scan_dataset

    model = load_study_model(model_dir, device)
    records = scan_dataset(data)
    classes = match_classes([r.label for r in records], model.class_names, cfg, data, str(model_dir))
    rng = np.random.default_rng([s.seed, 0xB011D])
    picked = select_real(records, classes, cfg, rng)
    framing = _framing(model, records, picked, cfg, data)
    data_root = Path(data) if Path(data).is_dir() else Path(data).parent

    def real_array(path: str) -> np.ndarray:
        if framing.intake is None:
            return preprocess(load_image(path), model.resolution, framing.crop_fraction, name=path)
        cell = framing.intake.frame_one(path, path)
        if cell.image is None or cell.status != "ok":  # a cut cell beside whole generated ones would be a tell
            raise StudyBuildError(f"{path}: {cell.message or cell.status}; remove it from the data or crop it to "
                                  "one whole cell")
        if cell.filled_px >= FILLED_PX_TELL:  # so would a flat margin: no generated cell has one
            raise StudyBuildError(
                f"{path}: framed like the model's training cells, its window runs {cell.filled_px:.1f} of "
                f"{model.resolution} px past the image, and that margin would show as flat background, which no "
                "generated cell has; give images with more of the smear around each cell (e.g. the original fields, "
                "not crops cut to the cell), or remove this one from the data")
        return cell.image

    def rel(path: str) -> str:
        try:
            return Path(path).resolve().relative_to(data_root.resolve()).as_posix()
        except ValueError:
            return Path(path).name

    say(f"real images: {framing.note}, {model.resolution} px" if framing.intake is not None else
        f"real images: cropped to {framing.crop_fraction:g} ({framing.source}), resized to {model.resolution} px")
    items = real_items(picked, classes, real_array, rel)
    say(f"generating synthetic cells ({s.steps} steps, guidance {s.guidance}, {model.resolution} px, "
        f"{getattr(model, 'STAGE', 'base')} model on {model.device})")
    main_syn, extra_syn = synthetic_items(model, classes, cfg, progress)
    items += main_syn
    fill_pools(items, extra_syn, cfg, rng)
    items += morph_items(model, picked, classes, cfg, real_array, rel, progress, say)

    say(f"running the diffusion classifier on {len(items)} stimuli")
    outputs, classifier_status = model_outputs(model, np.stack([it.array for it in items]), classes,
                                               enabled=s.classify, seed=s.seed, progress=progress,
                                               overrides=s.classifier)
    say(classifier_status)
    say(f"rendering {len(items)} stimuli at {s.display_px} px ({s.upscale}), compressed and padded to one size")
    manifest, stimulus_bytes = _write_stimuli(items, outputs, out, cfg)

    say("leak audit and content-confound check")
    seqs = [[t.stimulus_id for t in trial_sequence(manifest, cfg, k) if t.phase == "main"]
            for k in range(AUDIT_PARTICIPANTS)]
    audit = run_audits(manifest, out, cfg, sequences=seqs, crop_fraction=framing.crop_fraction)
    write_json(out / AUDIT_FILE, audit.to_dict())
    for line in audit.lines():
        say(line)
    if not audit.passed:
        raise LeakAuditError(audit.summary() + f"; details in {out / AUDIT_FILE}. The study was NOT finalised.")

    real_rows = sorted((rel(p), c, sha256_file(p)) for c in classes for ps in picked[c].values() for p in ps)
    study = {
        "study_id": cfg.id, "title": cfg.title, "classes": classes, "config_hash": config_hash(cfg),
        "content_hash": _content_hash(cfg, manifest), "n_stimuli": len(manifest), "stimulus_bytes": stimulus_bytes,
        "manifest_sha256": sha256_file(out / MANIFEST_FILE),
        "counts": manifest.groupby(["role", "source"]).size().rename("n").reset_index().to_dict("records"),
        "classifier": classifier_status, "leak_audit": audit.verdict(),
        "provenance": provenance_record(
            config=cfg.to_dict(), data_hash=hash_records(real_rows), data_source=data,
            model=model_record(model, model_dir), model_dir=str(model_dir), model_resolution=model.resolution,
            real_crop_fraction=framing.crop_fraction, framing=framing.to_dict(), device=str(model.device),
            superres_steps=(s.superres_steps or model.superres_steps) if hasattr(model, "superres") else None,
            build_seconds=round(time.perf_counter() - t_start, 1)),
    }
    write_json(out / STUDY_FILE, study)
    say(f"study {cfg.id!r} built in {out} ({len(manifest)} stimuli, {time.perf_counter() - t_start:.0f} s)")
    return out
