"""``cytomodel map`` end to end (:func:`build_map`): sample and frame the cells, embed them in every representation,
project (UMAP), cluster inside each class (HDBSCAN) with reruns for stability, run the subtype check, and write the
tables, figures, contact sheets, the interactive HTML map and the provenance record."""
from __future__ import annotations

import importlib.metadata
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from cytocore.provenance import atomic_write_text, hash_records, provenance_record, sha256_file, write_json

from ..classify.batch import write_table
from ..data import DataError, framed_arrays
from ..evaluate.baseline import WEIGHTS_FILE as BASELINE_WEIGHTS, load_baseline
from ..models.loading import base_folder, load_base
from ..runtime import configure_runtime, resolve_device
from .cells import list_added, manifest_of, sample_cells
from .config import MapConfig
from .check import TRAINED, Reducer, checkable, class_probe, subtype_check, subtype_counts, umap_embed
from .figures import contact_sheet, fig_check, fig_map
from .html import summary_rows, write_map_html
from .representations import baseline_features, diffusion_features, error_features, pixel_features
from .stability import ClassClusters, cluster_class


@dataclass
class MapResult:
    out: Path
    cells: pd.DataFrame
    check: pd.DataFrame
    candidates: pd.DataFrame
    features: dict[str, np.ndarray]
    coords: dict[str, np.ndarray]
    added: pd.DataFrame | None = None
    files: list[Path] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def build_map(model_dir: str | Path, data: str | Path, out: str | Path, config: MapConfig | None = None,
              baseline_dir: str | Path | None = None, add: str | Path | None = None, device=None,
              progress: bool = True) -> MapResult:
    """Draw the map of ``data``'s cells in the model's own representation and the references, check it against the
    subtypes, and write everything to ``out`` (see docs/cytomodel.md, "A map of what the model has learned")."""
    cfg = (config or MapConfig()).validate()
    out = Path(out)
    clock: dict[str, float] = {}
    t0 = time.perf_counter()
    configure_runtime()
    dev = resolve_device(device)
    model = load_base(model_dir, device=dev)
    baseline = load_baseline(baseline_dir, device=dev) if baseline_dir else None
    added_paths = list_added(add) if add else []
    cells = sample_cells(data, cfg.split, cfg.per_class, cfg.classes, cfg.seed, cfg.subtype_column)
    if len(cells) < 10:
        raise DataError(f"{data}: only {len(cells)} cells{f' in split {cfg.split}' if cfg.split else ''}; a map needs "
                        "at least 10 (raise --per-class or choose another split)")
    for sub in ("figures", "candidates", "tables"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for old in (out / "candidates").glob("*/*.png"):       # an earlier run's sheets would pass for this run's
        old.unlink()
    clock["load"] = time.perf_counter() - t0

    t = time.perf_counter()
    cells, images, b_images, skipped = _frame(model, baseline, cells, cfg, progress)
    added, a_images, a_b_images, a_skipped = None, None, None, []
    if added_paths:
        added = pd.DataFrame({"path": [str(p) for p in added_paths]})
        added, a_images, a_b_images, a_skipped = _frame(model, baseline, added, cfg, progress)
        if not len(added):
            raise DataError(f"--add {add}: none of its {len(added_paths)} images could be framed (first: "
                            f"{a_skipped[0][0]}: {a_skipped[0][1]}); crop each cell to its own image")
    clock["framing"] = time.perf_counter() - t

    t = time.perf_counter()
    features, added_features = _represent(model, baseline, cfg, images, b_images, a_images, a_b_images, progress)
    clock["representations"] = time.perf_counter() - t

    t = time.perf_counter()
    coords, added_coords, nearest = _project(features, added_features, cells, cfg, progress)
    clock["projection"] = time.perf_counter() - t

    t = time.perf_counter()
    clustered = _cluster(features, cells, cfg, progress)
    clock["clustering"] = time.perf_counter() - t

    t = time.perf_counter()
    labels, subtypes = cells["label"].to_numpy(), cells["subtype"].to_numpy()
    reference = {(c.representation, c.label): c.reference for c in clustered}
    runs = {(c.representation, c.label): c.runs for c in clustered}
    check = subtype_check(features, labels, subtypes, cfg.seed, cfg.settings(), reference, runs, cfg.knn_k,
                          cfg.folds, cfg.min_per_subtype, cfg.permutations)
    check = pd.concat([check, class_probe(features, labels, cfg.seed, cfg.knn_k, cfg.folds, cfg.permutations)],
                      ignore_index=True)
    clock["check"] = time.perf_counter() - t

    t = time.perf_counter()
    candidates = _candidates(clustered, cells, cfg, out)
    cluster_names = _cluster_names(clustered, cells, list(features))
    for rep in features:
        cells[f"x_{rep}"], cells[f"y_{rep}"] = coords[rep][:, 0], coords[rep][:, 1]
        cells[f"cluster_{rep}"] = cluster_names[rep]
    if added is not None:
        for rep in features:
            added[f"x_{rep}"], added[f"y_{rep}"] = added_coords[rep][:, 0], added_coords[rep][:, 1]
            added[f"nearest_class_{rep}"], added[f"nearest_share_{rep}"] = nearest[rep]
        added["nearest_class"] = ["; ".join(f"{rep} {added.at[i, f'nearest_class_{rep}']}" for rep in features)
                                  for i in added.index]
    files = _write(out, cfg, cells, check, candidates, features, coords, added, added_coords, cluster_names)
    prov = _provenance(model_dir, model, baseline_dir, data, add, cfg, cells, skipped, added, a_skipped, clock,
                       device=str(dev))
    files.append(_write_html(out, cfg, cells, check, candidates, coords, added, added_coords, cluster_names, prov,
                             model_dir, data))
    clock["outputs"] = time.perf_counter() - t
    clock["total"] = time.perf_counter() - t0
    prov["seconds"] = {k: round(v, 2) for k, v in clock.items()}
    files.append(_write_summary(out, cfg, cells, check, candidates, clock, model_dir, data))
    prov["outputs"] = sorted(str(p.relative_to(out)) for p in files) + ["provenance.json"]
    write_json(out / "provenance.json", prov)
    files.append(out / "provenance.json")
    return MapResult(out, cells, check, candidates, features, coords, added, files, clock)


# ----------------------------------------------------------------------------------------------- steps
def _frame(model, baseline, table: pd.DataFrame, cfg: MapConfig, progress: bool):
    """The rows of ``table`` whose image the model's intake frames (and the baseline's, when it frames
    differently), their arrays for each network, and [(path, why)] of the others."""
    paths = table["path"].tolist()
    arrays, names, skipped = _framed(model, paths, model.intake(cfg.um_per_px, cfg.stain), progress)
    b_arrays = None
    if baseline is not None:
        same = (baseline.resolution == model.resolution and baseline.metadata.get("framing") ==
                model.metadata.get("framing") and float(baseline.metadata.get("crop_fraction") or 1.0) ==
                float(model.crop_fraction))
        if same:
            b_arrays = arrays
        else:
            b_arrays, b_names, b_skipped = _framed(baseline, names, baseline.intake(cfg.um_per_px, cfg.stain),
                                                   progress)
            keep = set(b_names)
            arrays = arrays[[i for i, n in enumerate(names) if n in keep]]
            skipped += [(n, f"baseline: {why}") for n, why in b_skipped]
            names = b_names
    keep = set(names)
    table = table[table["path"].isin(keep)].reset_index(drop=True)
    return table, arrays, b_arrays, skipped


def _framed(net, paths: list[str], intake, progress: bool):
    """(arrays, names, [(name, why)] not framed) of ``paths`` through ``intake`` (one scale per image size, planned
    over all of them, as ``classify`` does)."""
    cells = intake.frame(paths, paths, progress=progress)
    arrays, keep = framed_arrays(cells, net.resolution)
    kept = set(keep)
    return arrays, [paths[i] for i in keep], [(paths[i], c.message or c.status) for i, c in enumerate(cells)
                                             if i not in kept]


def _represent(model, baseline, cfg: MapConfig, images, b_images, a_images, a_b_images, progress: bool):
    """{representation: (N, D)} for the cells and for the added cells."""
    feats: dict[str, np.ndarray] = {}
    added: dict[str, np.ndarray] = {}

    def both(name: str, fn, x, xa):
        feats[name] = fn(x)
        if xa is not None:
            added[name] = fn(xa)

    for t in cfg.noise_levels:
        both(f"diffusion_t{t}", lambda x, t=t: diffusion_features(
            model, x, noise_level=t, draws=cfg.draws, seed=cfg.seed, precision=cfg.precision,
            lab_condition=cfg.lab_condition, progress=progress), images, a_images)
    if cfg.errors:
        both("denoising_errors", lambda x: error_features(
            model, x, trials=cfg.error_trials, seed=cfg.seed, precision=cfg.error_precision,
            lab_condition=cfg.lab_condition, progress=progress), images, a_images)
    if baseline is not None:
        both("baseline_cnn", lambda x: baseline_features(baseline, x), b_images, a_b_images)
    if cfg.pixels:
        both("pixels", pixel_features, images, a_images)
    return feats, added


def _project(features, added_features, cells: pd.DataFrame, cfg: MapConfig, progress: bool):
    """2-D UMAP of every representation (fitted on the cells; added cells placed with ``transform``) and each
    added cell's nearest trained class (majority of its ``knn_k`` nearest cells, standardised PCA space)."""
    from sklearn.neighbors import KNeighborsClassifier  # scikit-learn: only the map's analysis needs it

    coords, added_coords, nearest = {}, {}, {}
    labels = cells["label"].to_numpy()
    for rep, x in tqdm(features.items(), desc="UMAP", unit="representation", disable=not progress):
        red = Reducer(cfg.seed)
        z = red.fit_transform(x)
        reducer = umap_embed(z, cfg.seed, n_components=2, n_neighbors=cfg.n_neighbors, min_dist=0.1)
        coords[rep] = reducer.embedding_.astype(np.float32)
        if rep in added_features:
            za = red.transform(added_features[rep])
            added_coords[rep] = reducer.transform(za).astype(np.float32)
            knn = KNeighborsClassifier(n_neighbors=min(cfg.knn_k, len(z))).fit(z, labels)
            proba = knn.predict_proba(za)
            nearest[rep] = (knn.classes_[proba.argmax(1)].tolist(), proba.max(1).round(3).tolist())
    return coords, added_coords, nearest


def _cluster(features, cells: pd.DataFrame, cfg: MapConfig, progress: bool) -> list[ClassClusters]:
    labels = cells["label"].to_numpy()
    tasks = [(rep, c) for rep in features for c in dict.fromkeys(labels)]
    out = []
    for rep, c in tqdm(tasks, desc=f"clusters ({cfg.runs} reruns each)", unit="class", disable=not progress):
        members = np.flatnonzero(labels == c)
        out.append(cluster_class(features[rep][members], rep, c, members, cfg.seed, cfg.runs, cfg.subsample,
                                 cfg.settings()))
    return out


def _cluster_names(clustered: list[ClassClusters], cells: pd.DataFrame, reps: Sequence[str]) -> dict[str, list[str]]:
    names = {rep: [""] * len(cells) for rep in reps}
    for c in clustered:
        for m, k in zip(c.members, c.reference):
            names[c.representation][m] = f"{c.label} {'noise' if k < 0 else f'c{k}'}"
    return names


def _candidates(clustered: list[ClassClusters], cells: pd.DataFrame, cfg: MapConfig, out: Path) -> pd.DataFrame:
    """One row per cluster of every (representation, class): size, stability, subtype make-up; a stable cluster
    of a class that splits into two or more is a candidate, with a contact sheet of its most typical cells."""
    rows = []
    raw = cells["subtype_raw"].fillna("").to_numpy()
    paths = cells["path"].to_numpy()
    for c in clustered:
        stab = c.stability() if c.runs else {}
        typ = c.typicality() if c.runs else np.full(len(c.members), np.nan)
        n_clusters = len(set(c.reference.tolist()) - {-1})
        for k in sorted(set(c.reference.tolist()) - {-1}):
            idx = np.flatnonzero(c.reference == k)
            s = stab.get(k, float("nan"))
            order = idx[np.argsort(-np.nan_to_num(typ[idx], nan=-1.0), kind="stable")]
            typical = [str(paths[c.members[i]]) for i in order[:cfg.typical]]
            counts = pd.Series(raw[c.members[idx]]).replace("", "(none)").value_counts()
            candidate = bool(n_clusters >= 2 and np.isfinite(s) and s >= cfg.stable_jaccard)
            sheet = ""
            if candidate:
                folder = out / "candidates" / c.representation
                folder.mkdir(parents=True, exist_ok=True)
                f = folder / f"{c.label}-c{k}.png"
                contact_sheet(typical, f, f"{c.representation} · {c.label} c{k} · {len(idx)} cells · stability "
                              f"{s:.2f} · " + ", ".join(f"{n} {v}" for n, v in counts.items()))
                sheet = str(f.relative_to(out))
            rows.append({"representation": c.representation, "class": c.label, "cluster": int(k),
                         "size": int(len(idx)), "class_cells": int(len(c.members)), "clusters_in_class": n_clusters,
                         "stability": round(s, 4) if np.isfinite(s) else s, "candidate": candidate,
                         "subtypes": ", ".join(f"{n} {v}" for n, v in counts.items()),
                         "typical_cells": " ".join(typical), "sheet": sheet})
    return pd.DataFrame(rows, columns=["representation", "class", "cluster", "size", "class_cells",
                                       "clusters_in_class", "stability", "candidate", "subtypes", "typical_cells",
                                       "sheet"])


def _write(out: Path, cfg: MapConfig, cells, check, candidates, features, coords, added, added_coords,
           cluster_names) -> list[Path]:
    files = []
    tables = out / "tables"
    for name, df in (("cells.csv", cells), ("check.csv", check), ("candidates.csv", candidates),
                     ("subtype_counts.csv", subtype_counts(cells["label"], cells["subtype_raw"]))):
        write_table(df, tables / name)
        files.append(tables / name)
    if added is not None:
        write_table(added, tables / "added.csv")
        files.append(tables / "added.csv")
    np.savez_compressed(out / "features.npz", **{f"cells_{k}": v for k, v in features.items()})
    files.append(out / "features.npz")
    sub_classes = list(checkable(cells["label"], cells["subtype"], cfg.min_per_subtype))
    files += fig_map(coords, cells, out / "figures" / "map", added_coords, sub_classes)
    if not check[check["class"] != TRAINED].empty:
        files += fig_check(check[check["class"] != TRAINED], out / "figures" / "check")
    files += sorted((out / "candidates").rglob("*.png"))
    return files


def _intro(cfg: MapConfig, n: int, model_dir, data) -> str:
    return (f"{n} cells of {data}{f' (split {cfg.split})' if cfg.split else ''}, framed like the training cells of "
            f"{model_dir}, placed by UMAP (seed {cfg.seed}) in each representation: the diffusion model's UNet "
            f"mid-block at noise level(s) {', '.join(map(str, cfg.noise_levels)) or '—'} (null class, {cfg.draws} "
            f"draws averaged){', its per-class denoising-error profile' if cfg.errors else ''}, and references. "
            "Hover a point for the cell; the buttons switch the representation. Subtypes were never a training label.")


def _write_html(out: Path, cfg: MapConfig, cells, check, candidates, coords, added, added_coords, cluster_names,
                prov, model_dir, data) -> Path:
    return write_map_html(out / "map.html", coords, cells, cluster_names, check, candidates, prov,
                          "A map of what the model has learned", added, added_coords, cfg.thumb_px,
                          _intro(cfg, len(cells), model_dir, data))


def _write_summary(out: Path, cfg: MapConfig, cells, check, candidates, clock, model_dir, data) -> Path:
    n_cand = candidates.groupby("representation")["candidate"].sum() if len(candidates) else pd.Series(dtype=int)
    md = ["# A map of what the model has learned", "", _intro(cfg, len(cells), model_dir, data), "",
          "## Subtype check (clusters inside a class vs the subtypes no model trained on)", "",
          *summary_rows(check), "",
          "AMI: 0 = chance, 1 = the clusters are the subtypes (HDBSCAN: the reference clustering, and mean / sd over "
          f"{cfg.runs} reruns on {cfg.subsample:.0%} subsamples; k-means: told the number of subtypes). "
          f"knn_balanced_accuracy: stratified {cfg.folds}-fold cross-validation, k = {cfg.knn_k}; knn_chance = 1 / "
          f"number of subtypes; knn_p_value: {cfg.permutations} label permutations. The `{TRAINED}` rows: the same "
          "probe for the trained classes over all cells (how well the representation separates what was trained).",
          "",
          "## Stable candidates", "",
          *[f"- {rep}: {int(v)} stable cluster(s) (Jaccard ≥ {cfg.stable_jaccard} over {cfg.runs} reruns) in classes "
            "that split" for rep, v in n_cand.items()], "",
          "Contact sheets: `candidates/<representation>/<class>-c<k>.png`; every cluster: `tables/candidates.csv`.",
          "", "Seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in clock.items()) + "."]
    path = out / "summary.md"
    atomic_write_text(path, "\n".join(md) + "\n")
    return path


def _provenance(model_dir, model, baseline_dir, data, add, cfg: MapConfig, cells: pd.DataFrame, skipped,
                added, a_skipped, clock, device: str) -> dict[str, Any]:
    base = base_folder(model_dir)
    manifest = manifest_of(data)
    cells_hash = hash_records((r.path, r.label, r.subtype_raw or "", sha256_file(r.path))
                              for r in cells.itertuples(index=False))
    baseline = None
    if baseline_dir:
        meta = json.loads((Path(baseline_dir) / "baseline.json").read_text())
        w = Path(baseline_dir) / BASELINE_WEIGHTS
        baseline = {"folder": str(baseline_dir), "weights_sha256": sha256_file(w) if w.is_file() else None,
                    **{k: meta.get(k) for k in ("name", "data_hash", "code_version", "seed")}}
    versions = {}
    for pkg in ("torch", "diffusers", "umap-learn", "scikit-learn", "plotly", "numpy"):
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    return provenance_record(
        config=cfg.to_dict(), data_hash=cells_hash, command="cytomodel map", device=device,
        model={"folder": str(model_dir), "base_folder": str(base), **model.weights_summary(base),
               "data_hash": model.metadata.get("data_hash"), "code_version": model.metadata.get("code_version"),
               "name": model.metadata.get("name")},
        baseline=baseline,
        data={"source": str(data), "split": cfg.split, "manifest": str(manifest) if manifest else None,
              "manifest_sha256": sha256_file(manifest) if manifest else None, "cells": len(cells),
              "data_hash_of": "sha256 over (path, label, subtype, file sha256) of the mapped cells",
              "not_framed": [list(s) for s in skipped]},
        added=None if added is None else {
            "folder": str(add), "cells": len(added), "not_framed": [list(s) for s in a_skipped],
            "hash": hash_records((p, sha256_file(p)) for p in added["path"])},
        packages=versions, seconds={k: round(v, 2) for k, v in clock.items()})
