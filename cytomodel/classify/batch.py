"""Classifying many images: arrays, files and whole folders/manifests (:func:`classify_folder`: resumable, sharded
under ``accelerate launch``), and the results tables it reads and writes."""
from __future__ import annotations

import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from cytocore.provenance import atomic_output

from ..data import DataError, Intake, framed_arrays, list_inputs
from ..models.base import CytoModel
from .config import SCORE_PARTS, ClassifierConfig
from .errors import estimate_errors
from .novelty import model_reference
from .scores import model_temperature, results_frame, with_texture
from .baseline_part import BaselinePart
from .texture import TextureScorer

log = logging.getLogger(__name__)


def classify_arrays(model: CytoModel, images_uint8: np.ndarray, config: ClassifierConfig | None = None,
                    seed: int | None = None, progress: bool = False, classes: Sequence[int | str] | None = None
                    ) -> pd.DataFrame:
    """Classify (N, H, W, 3) uint8 images at the model's resolution; one row per image, input order.

    Columns: pred_class, runner_up, confidence, entropy, margin, anomaly_score, zeta, unet_calls, trials,
    temperature, prob_<class>…, err_<class>… . ``seed`` (default: the config's) fixes the trials of every image.
    """
    cfg = dataclasses.replace(config or ClassifierConfig())
    if seed is not None:
        cfg.seed = int(seed)
    cfg.validate()
    cls_idx = None if classes is None else [model.class_index(c) for c in classes]
    est = estimate_errors(model, images_uint8, cfg, classes=cls_idx, progress=progress)
    return results_frame(model, est, cfg, classes=cls_idx)


def load_images_for(model: CytoModel, images: Iterable, on_error: str = "raise", intake: Intake | None = None
                    ) -> tuple[np.ndarray, list[str], list[tuple[str, str]]]:
    """Frame paths / bytes / PIL images like the training cells (:mod:`cytomodel.data.intake`). Returns (arrays, names,
    skipped); ``on_error="raise"`` makes the first image that cannot be framed a DataError."""
    arrays, names, skipped, _ = frame_for(model, list(images), on_error, intake)
    return arrays, names, skipped


def frame_for(model: CytoModel, images: list, on_error: str = "raise", intake: Intake | None = None):
    """(arrays of the framed images, their names, [(name, why)] of the others, every image's FramedCell)."""
    intake = intake or model.intake()
    names = [str(img) if isinstance(img, (str, Path)) else f"<image {k}>" for k, img in enumerate(images)]
    cells = intake.frame(images, names)
    arrays, keep = framed_arrays(cells, model.resolution)
    skipped = [(names[i], c.message or c.status) for i, c in enumerate(cells) if i not in set(keep)]
    if skipped and on_error == "raise":
        raise DataError(f"{skipped[0][0]}: {skipped[0][1]}")
    for name, why in skipped:
        log.warning("skipping %s: %s", name, why)
    return arrays, [names[i] for i in keep], skipped, cells


def classify_images(model: CytoModel, images: Iterable, config: ClassifierConfig | None = None,
                    seed: int | None = None, progress: bool = False, on_error: str = "raise",
                    intake: Intake | None = None) -> pd.DataFrame:
    """Classify image files / PIL images, each framed like the training cells (:mod:`cytomodel.data.intake`).

    Adds an ``image`` column (the path, or ``<image k>``) and the framing columns. ``on_error="skip"`` keeps an
    image that cannot be framed as a row without a prediction (its ``framing_note`` says why) instead of raising.
    """
    images = list(images)
    arrays, names, _, cells = frame_for(model, images, on_error, intake)
    all_names = [str(img) if isinstance(img, (str, Path)) else f"<image {k}>" for k, img in enumerate(images)]
    if len(arrays) == 0:
        df = pd.DataFrame({"image": all_names})
    else:
        df = classify_arrays(model, arrays, config, seed=seed, progress=progress)
        df.insert(0, "image", names)
        df = pd.DataFrame({"image": all_names}).merge(df, on="image", how="left")
    return add_framing_columns(df, cells)


def add_framing_columns(df: pd.DataFrame, cells) -> pd.DataFrame:
    """Append how each row's image was framed (rows in the order of ``cells``)."""
    cols = pd.DataFrame([c.columns() for c in cells], index=df.index)
    return pd.concat([df, cols], axis=1)


def classified(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of a results table that have a prediction (images that could be framed)."""
    return df[df["pred_class"].notna()] if "pred_class" in df else df


def read_table(path: Path) -> pd.DataFrame:
    if not path.is_file():
        return pd.DataFrame()
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


def write_table(df: pd.DataFrame, path: Path) -> None:
    with atomic_output(path) as tmp:
        if path.suffix == ".parquet":
            df.to_parquet(tmp, index=False)
        else:
            df.to_csv(tmp, index=False)


def classify_folder(model: CytoModel, source: str | Path, out: str | Path, config: ClassifierConfig | None = None,
                    split: str | None = None, progress: bool = True, chunk: int = 64, limit: int | None = None,
                    state=None, items: Sequence[tuple[Path, str | None]] | None = None,
                    classes: Sequence[int | str] | None = None, intake: Intake | None = None,
                    strict: bool = False, texture: TextureScorer | None = None,
                    baseline: BaselinePart | None = None) -> pd.DataFrame:
    """Classify every image of ``source`` into ``out`` (.csv or .parquet), resumably and data-parallel.

    Each image is framed like the training cells first (``intake``, default ``model.intake()``; one scale per
    image size, planned over the whole listing); an image that cannot be framed gets a row without a prediction
    whose framing columns say why (``strict``: a DataError instead, after the run). ``items`` ((path, label) pairs)
    replaces listing ``source``; ``classes`` restricts the candidate classes; ``texture`` (a cascade's 128-px stage,
    needed by the texture anomaly scores) adds each cell's texture columns, ``baseline`` (a baseline CNN, needed by
    ``class-gain+texture+baseline``) its ``baseline_raw``, ``baseline_distance`` and ``baseline_neighbours``. Images
    already in ``out`` (or in a process's part file from an interrupted run) are skipped. Under ``accelerate launch`` each process takes every
    n-th remaining image and writes ``out.part<rank>``; the main process merges them in input order at the end.
    """
    cfg = (config or ClassifierConfig()).validate()
    out = Path(out)
    if out.suffix not in (".csv", ".parquet"):
        raise ValueError(f"out must end in .csv or .parquet, got {out.name}")
    out.parent.mkdir(parents=True, exist_ok=True)
    if state is None:
        state = partial_state()
    items = list(items) if items is not None else list_inputs(source, split)
    intake = intake or model.intake()
    intake.plan([p for p, _ in items])
    needs = {"texture": (cfg.needs_texture, "a cascade's 128-px stage (texture=TextureScorer.of_cascade(...)); "
                         "classify with a cascade model"),
             "baseline": (cfg.needs_baseline, "a baseline CNN trained on the same classes (baseline="
                          "BaselinePart.of_classifier(...); `--baseline DIR` on the command line)")}
    parts = {"texture": texture, "baseline": baseline}
    for name, (needed, what) in needs.items():   # the parts the anomaly score reads, and only those
        if needed and parts[name] is None:
            raise ValueError(f"anomaly={cfg.anomaly!r} needs {what}")
        parts[name] = parts[name] if needed else None
        if parts[name] is not None:
            parts[name].intake.plan([p for p, _ in items])
    texture, baseline = parts["texture"], parts["baseline"]
    if baseline is not None:
        baseline.check_parts(SCORE_PARTS.get(cfg.anomaly, ()), cfg.anomaly)
    cls_idx = None if classes is None else [model.class_index(c) for c in classes]
    _claim(out, _run_key(model, cfg, cls_idx, intake, texture, baseline), state)
    if state.is_main_process:
        for msg in intake.warnings([], [p for p, _ in items]):
            print(f"warning: {msg}", file=sys.stderr)
    if limit is not None:
        items = items[:limit]
    done = _already_classified(out)
    todo = [(p, lab) for p, lab in items if str(p) not in done][state.process_index::state.num_processes]
    cfg_run = dataclasses.replace(cfg, temperature=model_temperature(model, cfg, warn=state.is_main_process))
    if cfg.anomaly != "zeta":   # said once here, not per chunk
        model_reference(model.metadata, cfg, warn=state.is_main_process,
                        texture_stage=texture.weights_sha256 if texture is not None else None,
                        baseline=baseline.weights_sha256 if baseline is not None else None)
    if progress and state.is_local_main_process and done:
        print(f"resuming: {len(done)} of {len(items)} images already classified", file=sys.stderr)
    _classify_part(model, todo, out, cfg_run, cls_idx, intake, state, progress, chunk, texture, baseline)
    state.wait_for_everyone()
    if state.is_main_process:
        _merge_parts(out, items, source)
    state.wait_for_everyone()
    table = read_table(out)
    _report_unframed(table, source, out, state, strict)
    return table


def _run_key(model: CytoModel, cfg: ClassifierConfig, cls_idx: list[int] | None, intake: Intake,
             texture: TextureScorer | None = None, baseline: BaselinePart | None = None) -> dict:
    """What makes results reusable: a run computes the same numbers only with the same model, classes, framing and
    settings."""
    return {"model_train_steps": model.metadata.get("train_steps"), "model_data_hash": model.metadata.get("data_hash"),
            "model_created": model.metadata.get("created_utc"), "classes": cls_idx,
            "framing": {"plans": intake.plan_record(), "um_per_px": intake.um_per_px, "stain": intake.stain},
            **({"texture": texture.identity()} if texture is not None else {}),
            **({"baseline": baseline.identity()} if baseline is not None else {}),
            **{k: v for k, v in cfg.to_dict().items() if k not in ("temperature", "batch_size", "image_batch")}}


def _claim(out: Path, run_key: dict, state) -> None:
    """Refuse an ``out`` that holds results of another run; record this run's key beside a new one."""
    key_path = out.with_name(out.name + ".run.json")
    has_results = out.is_file() or any(out.parent.glob(out.name + ".part*"))
    if has_results and key_path.is_file():
        old = json.loads(key_path.read_text())
        diff = {k: (old.get(k), v) for k, v in json.loads(json.dumps(run_key)).items() if old.get(k) != v}
        if diff:
            raise ValueError(f"{out} holds results of another model or classifier setting (or framing) {diff} (before, "
                             "now); write to another file or delete it")
    state.wait_for_everyone()
    if state.is_main_process and not (has_results and key_path.is_file()):
        key_path.write_text(json.dumps(run_key, indent=1) + "\n")


def _parts(out: Path) -> list[Path]:
    return sorted(out.parent.glob(out.name + ".part*"))


def _already_classified(out: Path) -> set[str]:
    """The images in ``out`` and in the part files of an interrupted run."""
    done = set()
    for t in [read_table(out)] + [read_table(p) for p in _parts(out)]:
        if "image" in t:
            done |= set(t["image"].astype(str))
    return done


def _classify_part(model: CytoModel, todo: list[tuple[Path, str | None]], out: Path, cfg_run: ClassifierConfig,
                   cls_idx: list[int] | None, intake: Intake, state, progress: bool, chunk: int,
                   texture: TextureScorer | None = None, baseline: BaselinePart | None = None) -> None:
    """This process's images, ``chunk`` at a time, appended to its part file after each chunk (``cfg_run``: with
    the temperature the run uses)."""
    world = state.num_processes
    part_path = out.with_name(f"{out.name}.part{state.process_index}")
    mine = read_table(part_path)
    bar = None
    if progress and state.is_local_main_process:
        bar = tqdm(total=len(todo), desc="classify" + (f" (process 0 of {world})" if world > 1 else ""),
                   unit="img", dynamic_ncols=True)
    for b in range(0, len(todo), chunk):
        batch = todo[b:b + chunk]
        arrays, names, _, cells = frame_for(model, [p for p, _ in batch], "skip", intake)
        all_names = [str(p) for p, _ in batch]
        if len(arrays):
            est = estimate_errors(model, arrays, cfg_run, classes=cls_idx)
            df = results_frame(model, est, cfg_run, classes=cls_idx, warn=False)
            if texture is not None:
                kept = set(names)
                framed = [p for p, _ in batch if str(p) in kept]
                if baseline is not None:   # read by with_texture's anomaly score
                    for j, (name, values) in enumerate(baseline.columns(framed).items()):
                        df.insert(df.columns.get_loc("zeta") + 2 + j, name, values)
                gains, nulls = texture.profile(framed, list(df["pred_class"]), cfg_run.seed)
                df = with_texture(df, gains, texture.timesteps, model, cfg_run, warn=False,
                                  texture_stage=texture.weights_sha256,
                                  baseline=baseline.weights_sha256 if baseline is not None else None,
                                  null_levels=nulls)
            df.insert(0, "image", names)
            df = pd.DataFrame({"image": all_names}).merge(df, on="image", how="left")
        else:
            df = pd.DataFrame({"image": all_names})
        labels = {str(p): lab for p, lab in batch}
        if any(lab is not None for lab in labels.values()):
            df.insert(1, "label", [labels[n] for n in all_names])
        df = add_framing_columns(df, cells)
        mine = pd.concat([mine, df], ignore_index=True) if len(mine) else df
        write_table(mine, part_path)
        if bar is not None:
            bar.update(len(batch))
    if bar is not None:
        bar.close()


def _merge_parts(out: Path, items: list[tuple[Path, str | None]], source) -> None:
    """``out`` and the processes' part files as one table in input order; the part files removed."""
    order = {str(p): i for i, (p, _) in enumerate(items)}
    tables = [t for t in [read_table(out)] + [read_table(p) for p in _parts(out)] if len(t)]
    if not tables:
        raise DataError(f"no image of {source} could be classified")
    merged = pd.concat(tables, ignore_index=True).drop_duplicates("image", keep="first")
    merged["_order"] = merged["image"].astype(str).map(order).fillna(len(order))
    merged = merged.sort_values("_order", kind="stable").drop(columns="_order").reset_index(drop=True)
    write_table(merged, out)
    for p in out.parent.glob(out.name + ".part*"):
        p.unlink()


def _report_unframed(table: pd.DataFrame, source, out: Path, state, strict: bool) -> None:
    """Say which images could not be framed; none classified, or any with ``strict``, is a DataError."""
    unframed = table[table["pred_class"].isna()] if "pred_class" in table else table
    if len(unframed) and state.is_main_process:
        for _, row in unframed.iterrows():
            print(f"not classified {row['image']}: {row.get('framing_note') or row.get('framing_status')}",
                  file=sys.stderr)
        if not len(classified(table)):
            raise DataError(f"no image of {source} could be framed and classified")
    if strict and len(unframed):
        raise DataError(f"{len(unframed)} image(s) could not be framed (first: {unframed['image'].iloc[0]}: "
                        f"{unframed['framing_note'].iloc[0]}); they are in {out} without a prediction")


def partial_state():
    """accelerate's process state; on a CPU-only machine it must be told so to join a multi-process launch."""
    from accelerate import PartialState  # accelerate: only classify_folder's data-parallel runs need it (~1 s)

    return PartialState(cpu=not torch.cuda.is_available())

