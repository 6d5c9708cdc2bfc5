"""Labelled cell images: discovery (class folders or a manifest CSV), robust decoding, deterministic
preprocessing to the model's resolution, and an on-disk cache so epochs never re-decode JPEGs."""
from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cytocore.provenance import atomic_output, hash_records

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
MANIFEST_NAMES = ("manifest.csv", "labels.csv")
PATH_COLUMNS = ("path", "file")


class DataError(ValueError):
    """Bad dataset layout or content; the message names the file/field and what to do."""


class ImageDecodeError(DataError):
    pass


@dataclass(frozen=True)
class LabelledImage:
    path: Path
    label: str
    split: str | None = None


@dataclass
class ImageArrays:
    """Preprocessed images (N, H, W, 3 uint8), integer labels into ``class_names``, and what was skipped."""
    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    records: list[LabelledImage]
    data_hash: str
    skipped: list[tuple[str, str]] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------- discovery
def scan_dataset(source: str | Path, split: str | Sequence[str] | None = None,
                 classes: Sequence[str] | None = None) -> list[LabelledImage]:
    """List labelled images from a manifest CSV, a folder holding one, or a class-per-folder tree.

    ``split`` keeps only those manifest splits; ``classes`` (e.g. a model's classes) makes any other label an error.
    """
    source = Path(source)
    if not source.exists():
        raise DataError(f"{source} does not exist: pass a folder of class sub-folders or a manifest CSV")
    manifest = source if source.is_file() else next(
        (source / n for n in MANIFEST_NAMES if (source / n).is_file()), None)
    records = _read_manifest(manifest) if manifest else _scan_folders(source)
    if split is not None:
        wanted = {split} if isinstance(split, str) else set(split)
        if manifest is None:
            raise DataError(f"split {sorted(wanted)} requested but {source} has no manifest with a 'split' column")
        records = [r for r in records if r.split in wanted]
        if not records:
            raise DataError(f"{manifest}: no rows with split in {sorted(wanted)}")
    if classes is not None:
        unknown = sorted({r.label for r in records} - set(classes))
        if unknown:
            raise DataError(f"{source}: unknown label(s) {unknown}; expected one of {list(classes)}. "
                            "Rename them or drop those images.")
    return records


def _scan_folders(root: Path) -> list[LabelledImage]:
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DataError(f"{root} has no class sub-folders and no manifest.csv: put each class's images in "
                        "<root>/<class name>/ or pass a CSV with columns path,label[,split]")
    records = []
    for d in class_dirs:
        files = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"class folder {d} has no images ({', '.join(sorted(IMAGE_SUFFIXES))}): "
                            "add images or remove the folder")
        records += [LabelledImage(p, d.name) for p in files]
    return records


def _read_manifest(path: Path) -> list[LabelledImage]:
    with open(path, newline="", encoding="utf-8-sig") as fh:  # utf-8-sig: spreadsheet CSVs start with a BOM
        reader = csv.DictReader(fh)
        cols = reader.fieldnames or []
        path_col = next((c for c in PATH_COLUMNS if c in cols), None)
        if path_col is None:
            raise DataError(f"manifest {path} has no 'path' column (columns: {cols}); "
                            "it needs path,label[,split]")
        if "label" not in cols:
            raise DataError(f"manifest {path} has no 'label' column (columns: {cols}); it needs path,label[,split]")
        has_split = "split" in cols
        records = []
        for i, row in enumerate(reader, start=2):
            rel, label = (row[path_col] or "").strip(), (row["label"] or "").strip()
            if not rel or not label:
                raise DataError(f"manifest {path}, line {i}: empty {'path' if not rel else 'label'}")
            split = (row.get("split") or "").strip() or None if has_split else None
            records.append(LabelledImage(path.parent / rel, label, split))
    if not records:
        raise DataError(f"manifest {path} has no rows")
    return records


def list_inputs(source: str | Path, split: str | None = None) -> list[tuple[Path, str | None]]:
    """(path, label or None) for a manifest, a class-per-folder tree, a flat folder of images, or one image."""
    source = Path(source)
    if not source.exists():
        raise DataError(f"{source} does not exist: pass a folder of images, class sub-folders or a manifest CSV")
    if source.is_file() and source.suffix.lower() in IMAGE_SUFFIXES:
        return [(source, None)]
    if source.is_dir() and split is None and not any((source / m).is_file() for m in MANIFEST_NAMES):
        flat = sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if flat:
            return [(p, None) for p in flat]
    return [(r.path, r.label) for r in scan_dataset(source, split=split)]


# ----------------------------------------------------------------------------------------------- images
def load_image(source: str | Path | bytes | Image.Image) -> Image.Image:
    """Decode any common image into 8-bit RGB: grayscale, palette, RGBA (onto white), CMYK, 16-bit."""
    name = "<image>"
    try:
        if isinstance(source, Image.Image):
            img = source
        else:
            if isinstance(source, (str, Path)):
                name = str(source)
                source = Path(source).read_bytes()
            img = Image.open(io.BytesIO(source))
            img.load()
        img = ImageOps.exif_transpose(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError(f"{name}: cannot decode image ({exc.__class__.__name__}: {exc}); "
                               "replace or remove the file") from None
    return to_rgb(img)


def to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in {"I;16", "I;16B", "I;16L", "I", "F"}:
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if img.mode in {"RGBA", "LA", "PA"} or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def preprocess(img: Image.Image, resolution: int, crop_fraction: float = 1.0, name: str = "<image>") -> np.ndarray:
    """Centre-crop a square of side ``crop_fraction * min(w, h)`` and resize to ``resolution`` (Lanczos)."""
    w, h = img.size
    side = int(round(min(w, h) * crop_fraction))
    if side < resolution:
        raise DataError(f"{name}: image is {w}x{h}; after cropping ({crop_fraction:g}) it is {side}px, "
                        f"smaller than the model's {resolution}px. Use larger images or a smaller model.")
    left, top = (w - side) // 2, (h - side) // 2
    img = img.crop((left, top, left + side, top + side))
    if side != resolution:
        img = img.resize((resolution, resolution), Image.Resampling.LANCZOS)
    return np.asarray(img, dtype=np.uint8)


# ----------------------------------------------------------------------------------------------- arrays + cache
def cache_dir() -> Path:
    return Path(os.environ.get("CYTOSTUDY_CACHE", Path.home() / ".cache" / "cytostudy"))


def load_arrays(records: Sequence[LabelledImage], resolution: int, crop_fraction: float = 1.0,
                class_names: Sequence[str] | None = None, strict: bool = False, use_cache: bool = True,
                progress: bool = False, root: str | Path | None = None) -> ImageArrays:
    """Decode and preprocess ``records``; unreadable files are skipped with a warning (or raise if ``strict``)."""
    if not records:
        raise DataError("no images to load")
    names = list(class_names) if class_names is not None else sorted({r.label for r in records})
    index = {c: i for i, c in enumerate(names)}
    unknown = sorted({r.label for r in records} - set(index))
    if unknown:
        raise DataError(f"unknown label(s) {unknown}; expected one of {names}")
    root = Path(root) if root else Path(os.path.commonpath([str(r.path.parent) for r in records]))
    key = _cache_key(records, resolution, crop_fraction, names)
    cached = cache_dir() / f"images-{key}.npz"
    if use_cache and cached.is_file():
        try:
            with np.load(cached, allow_pickle=False) as z:
                keep = z["keep"]
                kept = [r for r, k in zip(records, keep) if k]
                skipped = [(str(r.path), "unreadable (cached)") for r, k in zip(records, keep) if not k]
                if skipped and strict:
                    raise DataError(f"{skipped[0][0]}: cannot decode image; replace or remove the file")
                return ImageArrays(z["images"], z["labels"], names, kept, str(z["data_hash"]), skipped)
        except (OSError, KeyError, ValueError) as exc:
            if isinstance(exc, DataError):
                raise
            log.warning("ignoring unreadable cache %s (%s)", cached, exc)

    images, labels, keep, hash_rows, skipped = [], [], [], [], []
    iterator: Iterable = records
    if progress:
        from tqdm.auto import tqdm  # model extra only; data/ is imported without it (the study app)
        iterator = tqdm(records, desc="decoding images", unit="img")
    for r in iterator:
        try:
            raw = Path(r.path).read_bytes()
        except OSError as exc:
            raw, err = None, f"cannot read file ({exc})"
        if raw is not None:
            try:
                arr = preprocess(load_image(raw), resolution, crop_fraction, name=str(r.path))
                err = None
            except ImageDecodeError as exc:
                err = str(exc).split(": ", 1)[-1]
            except DataError:
                raise
        if err is not None:
            if strict:
                raise DataError(f"{r.path}: {err}")
            log.warning("skipping %s: %s", r.path, err)
            skipped.append((str(r.path), err))
            keep.append(False)
            continue
        images.append(arr)
        labels.append(index[r.label])
        keep.append(True)
        hash_rows.append((_relative(r.path, root), r.label, hashlib.sha256(raw).hexdigest()))
    if not images:
        raise DataError("none of the images could be decoded: " + "; ".join(f"{p}: {e}" for p, e in skipped[:3]))
    empty = [c for c in names if index[c] not in set(labels)]
    if empty and class_names is None:
        raise DataError(f"class(es) {empty} have no readable images")
    data_hash = hash_records(sorted(hash_rows))
    out = ImageArrays(np.stack(images), np.asarray(labels, dtype=np.int64), names,
                      [r for r, k in zip(records, keep) if k], data_hash, skipped)
    if use_cache:
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            with atomic_output(cached) as tmp:
                np.savez(tmp, images=out.images, labels=out.labels, keep=np.asarray(keep), data_hash=data_hash)
        except OSError as exc:
            log.warning("could not write image cache %s (%s)", cached, exc)
    return out


def _relative(path: Path, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return Path(path).name


def _cache_key(records: Sequence[LabelledImage], resolution: int, crop: float, names: Sequence[str]) -> str:
    h = hashlib.sha256(f"v1|{resolution}|{crop:.6f}|{','.join(names)}".encode())
    for r in records:
        try:
            st = os.stat(r.path)
            h.update(f"{os.path.abspath(r.path)}|{r.label}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{os.path.abspath(r.path)}|{r.label}|missing\n".encode())
    return h.hexdigest()[:24]


def load_dataset(source: str | Path, resolution: int, crop_fraction: float = 1.0, split=None,
                 class_names: Sequence[str] | None = None, strict: bool = False, progress: bool = False,
                 use_cache: bool = True) -> ImageArrays:
    """``scan_dataset`` + ``load_arrays`` in one call."""
    records = scan_dataset(source, split=split, classes=class_names)
    root = Path(source) if Path(source).is_dir() else Path(source).parent
    return load_arrays(records, resolution, crop_fraction, class_names=class_names, strict=strict,
                       progress=progress, use_cache=use_cache, root=root)
