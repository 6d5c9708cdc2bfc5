"""Building a leak-proof stimulus set: ``build_study(data, model, out, cfg)``.

Real images go through exactly the path generated ones take: decode -> centre crop -> resize to the model's
resolution (the model's own preprocessing) -> the same upscale filter to ``display_px`` -> PNG with
``compress_level=0`` and no metadata chunks. Uncompressed PNGs of equal dimensions have identical byte sizes and
identical headers, so file size, dimensions and header bytes are constant across the whole set; file names are random
ids. A leak audit (:mod:`study_app.audit`) checks this at the end of every build and fails the build otherwise.

The study folder::

    study.toml      the resolved study config
    study.json      study id, config hash, content hash, provenance, leak-audit result (written last)
    manifest.csv    one row per stimulus (server side only; never served)
    audit.json      the leak audit
    stimuli/<id>.png
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
from PIL import Image

from cytocore.provenance import hash_records, provenance_record, sha256_file, write_json

from .audit import LeakAuditError, leak_audit
from .config import StudyConfig, config_hash, config_to_toml, load_study_config

log = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.csv"
STUDY_FILE = "study.json"
CONFIG_FILE = "study.toml"
AUDIT_FILE = "audit.json"
STIMULI_DIR = "stimuli"
MODEL_COLUMNS = ("model_pred_class", "model_runner_up", "model_confidence", "model_entropy", "model_margin",
                 "model_anomaly", "model_unet_calls")
_FILTERS = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
            "bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS}


class StudyBuildError(ValueError):
    pass


def render_stimulus(array: np.ndarray, display_px: int, upscale: str) -> bytes:
    """(h, w, 3) uint8 at model resolution -> PNG bytes: upscaled with ``upscale``, uncompressed, no metadata."""
    import io

    img = Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8), "RGB")
    if img.size != (display_px, display_px):
        img = img.resize((display_px, display_px), _FILTERS[upscale])
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=0, optimize=False)
    return buf.getvalue()


def new_id(taken: set[str]) -> str:
    while True:
        sid = secrets.token_hex(8)
        if sid not in taken:
            taken.add(sid)
            return sid


def _classifier():
    try:
        from cytomodel.classifier import classify_arrays  # noqa: F401
        return classify_arrays
    except ModuleNotFoundError as exc:
        if exc.name == "cytomodel.classifier":
            return None
        raise


def model_outputs(model, arrays: np.ndarray, classes: Sequence[str], enabled: bool = True, seed: int = 0,
                  progress: bool = False, overrides: dict | None = None) -> tuple[pd.DataFrame, str]:
    """The diffusion classifier's judgement of every stimulus (model_* columns), and a status line."""
    cols = list(MODEL_COLUMNS) + [f"model_prob_{c}" for c in classes]
    empty = pd.DataFrame({c: [np.nan] * len(arrays) for c in cols})
    empty["model_pred_class"] = empty["model_pred_class"].astype(object)
    empty["model_runner_up"] = empty["model_runner_up"].astype(object)
    if not enabled:
        return empty, "classifier disabled in the study config (stimuli.classify = false): model columns are NaN"
    fn = _classifier()
    if fn is None:
        msg = "cytomodel.classifier is not available: model columns are NaN"
        log.warning(msg)
        return empty, msg
    t0 = time.perf_counter()
    config = None
    if overrides:
        from cytomodel.classifier import ClassifierConfig
        config = ClassifierConfig.from_dict(dict(overrides))
    import warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = fn(model, arrays, config=config, seed=seed, progress=progress).reset_index(drop=True)
    notes = "; ".join(sorted({str(w.message).split(";")[0] for w in caught}))
    out = pd.DataFrame({
        "model_pred_class": res["pred_class"].astype(str), "model_runner_up": res.get("runner_up"),
        "model_confidence": res["confidence"].astype(float), "model_entropy": res.get("entropy"),
        "model_margin": res["margin"].astype(float), "model_anomaly": res["anomaly_score"].astype(float),
        "model_unet_calls": res.get("unet_calls"),
    })
    for c in model.class_names:
        if c in classes:
            out[f"model_prob_{c}"] = res[f"prob_{c}"].astype(float)
    # renormalise over the study's classes when the study uses a subset of the model's classes
    pc = [f"model_prob_{c}" for c in classes]
    tot = out[pc].sum(axis=1)
    if len(classes) < len(model.class_names):
        out[pc] = out[pc].div(tot.where(tot > 0, 1.0), axis=0)
    status = f"diffusion classifier ran on {len(arrays)} stimuli in {time.perf_counter() - t0:.1f} s"
    return out[cols], status + (f" ({notes})" if notes else "")


def audit_population(manifest: pd.DataFrame) -> pd.DataFrame:
    """The stimuli whose source a participant must not be able to infer: all but the example cells, which the
    instructions show labelled as real."""
    return manifest[manifest["role"] != "example"].reset_index(drop=True)


@dataclass
class _Item:
    role: str
    source: str
    true_class: str
    morph_strength: float
    array: np.ndarray
    origin: str
    seed: int | None = None


def _select_real(records, classes: Sequence[str], cfg: StudyConfig, rng: np.random.Generator) -> dict[str, dict]:
    """Disjoint real images per class for: main, morph sources, examples; and pools for practice / attention."""
    s = cfg.stimuli
    n_morph = (s.n_morph_per_class if s.n_morph_per_class is not None else s.n_per_class) * len(s.morph_strengths)
    n_extra_prac = math.ceil(s.practice_per_source / len(classes))
    n_extra_att = math.ceil(s.attention_per_source / len(classes)) if cfg.design.attention_checks else 0
    need = s.n_per_class + n_morph + s.examples_per_class + n_extra_prac + n_extra_att
    out = {}
    for c in classes:
        paths = sorted(str(r.path) for r in records if r.label == c)
        if len(paths) < need:
            raise StudyBuildError(
                f"class {c!r} has {len(paths)} real images but this config needs {need} distinct ones "
                f"({s.n_per_class} main + {n_morph} morph sources + {s.examples_per_class} examples + "
                f"{n_extra_prac} practice + {n_extra_att} attention); lower stimuli.n_per_class / morph settings")
        rng.shuffle(paths)
        it = iter(paths)
        out[c] = {"main": [next(it) for _ in range(s.n_per_class)],
                  "morph": [next(it) for _ in range(n_morph)],
                  "example": [next(it) for _ in range(s.examples_per_class)],
                  "practice": [next(it) for _ in range(n_extra_prac)],
                  "attention": [next(it) for _ in range(n_extra_att)]}
    return out


def build_study(data: str | Path, model_dir: str | Path, out: str | Path, cfg: StudyConfig | str | Path | None = None,
                overwrite: bool = False, progress: bool = False,
                on_step: Callable[[str], None] | None = None) -> Path:
    """Build a study folder (see module docstring). Raises :class:`LeakAuditError` when the audit fails."""
    from cytomodel.data import load_image, preprocess, scan_dataset
    from cytomodel.generation import generate_images, sdedit_images
    from cytomodel.model import load_model
    from cytomodel.runtime import configure_runtime

    say = on_step or (lambda m: log.info(m))
    if cfg is None or isinstance(cfg, (str, Path)):
        cfg = load_study_config(cfg)
    s = cfg.stimuli
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise StudyBuildError(f"{out} exists and is not empty; choose a new folder or pass --overwrite")
        if (out / "study.db").exists():
            raise StudyBuildError(f"{out} holds a study database (study.db) with participants' answers; "
                                  "refusing to overwrite it: build into a new folder")
        shutil.rmtree(out)
    t_start = time.perf_counter()
    configure_runtime()
    model = load_model(model_dir)
    records = scan_dataset(data)
    labels = sorted({r.label for r in records})
    classes = list(s.classes) if s.classes else [c for c in model.class_names if c in labels]
    missing = [c for c in classes if c not in model.class_names]
    if missing:
        raise StudyBuildError(f"classes {missing} are not known to the model ({', '.join(model.class_names)})")
    if len(classes) < 2:
        raise StudyBuildError(f"need at least two classes shared by the data ({labels}) and the model "
                              f"({model.class_names})")
    rng = np.random.default_rng([s.seed, 0xB011D])
    crop = s.real_crop_fraction if s.real_crop_fraction is not None else model.crop_fraction
    res = model.resolution
    picked = _select_real(records, classes, cfg, rng)
    data_root = Path(data) if Path(data).is_dir() else Path(data).parent

    def real_array(path: str) -> np.ndarray:
        return preprocess(load_image(path), res, crop, name=path)

    def rel(path: str) -> str:
        try:
            return Path(path).resolve().relative_to(data_root.resolve()).as_posix()
        except ValueError:
            return Path(path).name

    items: list[_Item] = []
    say(f"real images: preprocessing to {res}px (crop {crop:g})")
    real_hash_rows = []
    for c in classes:
        for role in ("main", "example", "practice", "attention"):
            for p in picked[c][role]:
                items.append(_Item(role, "real", c, 0.0, real_array(p), rel(p)))
                real_hash_rows.append((rel(p), c, sha256_file(p)))

    n_syn = s.n_synthetic_per_class if s.n_synthetic_per_class is not None else s.n_per_class
    n_extra = math.ceil(s.practice_per_source / len(classes)) + (
        math.ceil(s.attention_per_source / len(classes)) if cfg.design.attention_checks else 0)
    say(f"generating {n_syn + n_extra} synthetic images per class ({s.steps} steps, guidance {s.guidance})")
    gen = generate_images(model, classes, n_syn + n_extra, guidance=s.guidance, steps=s.steps, seed=s.seed,
                          progress=progress)
    per_class_syn: dict[str, list[tuple[np.ndarray, int]]] = {c: [] for c in classes}
    for arr, row in zip(gen.images, gen.records.itertuples()):
        per_class_syn[row.class_name].append((arr, int(row.seed)))
    extra_syn: list[_Item] = []
    for c in classes:
        for j, (arr, seed) in enumerate(per_class_syn[c]):
            it = _Item("main", "synthetic", c, 1.0, arr, "generated", seed)
            (items if j < n_syn else extra_syn).append(it)
    # the extra synthetic images fill the practice pool, then the attention pool (random classes)
    order = rng.permutation(len(extra_syn))
    n_att = s.attention_per_source if cfg.design.attention_checks else 0
    for rank, j in enumerate(order):
        if rank < s.practice_per_source:
            extra_syn[j].role = "practice"
        elif rank < s.practice_per_source + n_att:
            extra_syn[j].role = "attention"
        else:
            continue
        items.append(extra_syn[j])
    # trim the real practice / attention pools (one candidate per class) to the configured sizes, random classes
    for role, n in (("practice", s.practice_per_source), ("attention", n_att)):
        pool = [it for it in items if it.role == role and it.source == "real"]
        for j in sorted(rng.permutation(len(pool))[n:]):
            items.remove(pool[j])
    n_morph = s.n_morph_per_class if s.n_morph_per_class is not None else s.n_per_class
    for k, strength in enumerate(s.morph_strengths):
        srcs, cls = [], []
        for c in classes:
            for p in picked[c]["morph"][k * n_morph:(k + 1) * n_morph]:
                srcs.append(p)
                cls.append(c)
        if not srcs:
            continue
        say(f"SDEdit morphs at strength {strength:g}: {len(srcs)} images")
        arrays = np.stack([real_array(p) for p in srcs])
        batch = sdedit_images(model, arrays, cls, strength, guidance=s.guidance, steps=s.steps,
                              seed=s.seed + 10_000 * (k + 1), names=[rel(p) for p in srcs], progress=progress)
        for arr, row in zip(batch.images, batch.records.itertuples()):
            items.append(_Item("main", "synthetic", row.class_name, float(strength), arr, row.init_image,
                               int(row.seed)))

    say(f"running the diffusion classifier on {len(items)} stimuli")
    arrays = np.stack([it.array for it in items])
    mo, classifier_status = model_outputs(model, arrays, classes, enabled=s.classify, seed=s.seed, progress=progress,
                                          overrides=s.classifier)
    say(classifier_status)

    say(f"rendering {len(items)} stimuli at {s.display_px}px ({s.upscale})")
    out.mkdir(parents=True, exist_ok=True)
    (out / STIMULI_DIR).mkdir(exist_ok=True)
    taken: set[str] = set()
    rows = []
    for it, m in zip(items, mo.to_dict("records")):
        sid = new_id(taken)
        f = f"{STIMULI_DIR}/{sid}.png"
        png = render_stimulus(it.array, s.display_px, s.upscale)
        (out / f).write_bytes(png)
        rows.append({"stimulus_id": sid, "file": f, "role": it.role, "source": it.source,
                     "true_class": it.true_class, "morph_strength": it.morph_strength, "origin": it.origin,
                     "seed": it.seed, "guidance": None if it.source == "real" else s.guidance,
                     "steps": None if it.source == "real" else s.steps,
                     "sha256": hashlib.sha256(png).hexdigest(), **m})
    manifest = pd.DataFrame(rows).sort_values("stimulus_id").reset_index(drop=True)  # random order
    manifest.to_csv(out / MANIFEST_FILE, index=False)
    (out / CONFIG_FILE).write_text(config_to_toml(cfg))

    say("leak audit")
    from .design import trial_sequence
    seqs = [[t.stimulus_id for t in trial_sequence(manifest, cfg, k) if t.phase == "main"] for k in range(24)]
    audit = leak_audit(audit_population(manifest), out, threshold=s.leak_auroc_max, sequences=seqs, seed=s.seed)
    write_json(out / AUDIT_FILE, audit.to_dict())
    say(audit.summary())
    if not audit.passed:
        raise LeakAuditError(audit.summary() + f"; details in {out / AUDIT_FILE}. The study was NOT finalised.")

    content_hash = hash_records([(config_hash(cfg),)] + [
        (r["stimulus_id"], r["role"], r["source"], r["true_class"], r["morph_strength"], r["sha256"]) for r in rows])
    meta = model.metadata
    study = {
        "study_id": cfg.id, "title": cfg.title, "classes": classes, "config_hash": config_hash(cfg),
        "content_hash": content_hash, "n_stimuli": len(manifest),
        "counts": manifest.groupby(["role", "source"]).size().rename("n").reset_index().to_dict("records"),
        "classifier": classifier_status, "leak_audit": {"passed": audit.passed, "auroc": audit.auroc},
        "provenance": provenance_record(
            config=cfg.to_dict(), data_hash=hash_records(sorted(real_hash_rows)), data_source=str(data),
            model_dir=str(model_dir), model_name=meta.get("name"), model_code_version=meta.get("code_version"),
            model_data_hash=meta.get("data_hash"), model_train_steps=meta.get("train_steps"),
            model_resolution=res, real_crop_fraction=crop, build_seconds=round(time.perf_counter() - t_start, 1)),
    }
    write_json(out / STUDY_FILE, study)
    say(f"study {cfg.id!r} built in {out} ({len(manifest)} stimuli, {time.perf_counter() - t_start:.0f} s)")
    return out


@dataclass
class Study:
    """A built study folder, loaded: config, manifest (indexed by stimulus id), classes, metadata."""
    path: Path
    config: StudyConfig
    manifest: pd.DataFrame
    meta: dict[str, Any]

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    def stimulus(self, stimulus_id: str) -> dict[str, Any]:
        return self.manifest.loc[stimulus_id].to_dict() | {"stimulus_id": stimulus_id}

    def image_path(self, stimulus_id: str) -> Path:
        return self.path / self.manifest.at[stimulus_id, "file"]


def load_study(path: str | Path) -> Study:
    path = Path(path)
    if not (path / STUDY_FILE).is_file():
        hint = " (its leak audit failed: see audit.json)" if (path / AUDIT_FILE).is_file() else ""
        raise FileNotFoundError(f"{path} is not a built study (no {STUDY_FILE}){hint}; "
                                "build one with `cytostudy build`")
    meta = json.loads((path / STUDY_FILE).read_text())
    cfg = load_study_config(path / CONFIG_FILE)
    manifest = pd.read_csv(path / MANIFEST_FILE, dtype={"stimulus_id": str, "model_pred_class": object})
    manifest = manifest.set_index("stimulus_id", drop=False)
    manifest.index.name = None
    return Study(path, cfg, manifest, meta)
