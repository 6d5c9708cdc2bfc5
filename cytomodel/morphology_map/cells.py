"""Which cells go on the map: a seeded sample per trained class with each cell's finer label (``subtype``, a
manifest column no model trained on), and a lab's own images to place on it (``--add``). numpy, pandas and the
data package only (no torch)."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..data import IMAGE_SUFFIXES, MANIFEST_NAMES, DataError, scan_dataset

PATH_COLUMNS = ("path", "file")


def manifest_of(source: str | Path) -> Path | None:
    """The manifest CSV ``source`` names or holds, None for a class-per-folder tree."""
    source = Path(source)
    if source.is_file():
        return source
    return next((source / n for n in MANIFEST_NAMES if (source / n).is_file()), None)


def read_subtypes(manifest: Path, column: str = "subtype") -> dict[str, str] | None:
    """{resolved image path: subtype} from ``column`` of the manifest, None when it has no such column (a lab's
    own data usually has none: the map is drawn, the subtype check is skipped)."""
    with open(manifest, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        cols = reader.fieldnames or []
        if column not in cols:
            return None
        path_col = next((c for c in PATH_COLUMNS if c in cols), None)
        if path_col is None:
            raise DataError(f"manifest {manifest} has no 'path' column (columns: {cols}); it needs path,label[,split]")
        return {str(manifest.parent / (row[path_col] or "").strip()): (row[column] or "").strip() for row in reader}


def unspecified(label: str, subtype: str | None) -> bool:
    """A subtype that says no more than the class: empty, or the class's own name (PBC codes ``IG`` inside ``ig`` and
    ``NEUTROPHIL`` inside ``neutrophil`` for cells its annotators did not subtype)."""
    return not subtype or subtype.strip().lower() == str(label).strip().lower()


def sample_cells(source: str | Path, split: str | None = None, per_class: int | None = 100,
                 classes: Sequence[str] | None = None, seed: int = 0, subtype_column: str = "subtype"
                 ) -> pd.DataFrame:
    """At most ``per_class`` cells of each class (seeded, each class's cells in listing order), with their subtype.

    Columns: path, label, subtype (None where the manifest has none or it is unspecified, see :func:`unspecified`),
    subtype_raw. ``classes`` keeps only those labels (each must occur in the data)."""
    records = scan_dataset(source, split=split)
    by: dict[str, list] = {}
    for r in records:
        by.setdefault(r.label, []).append(r)
    if classes is not None:
        missing = [c for c in classes if c not in by]
        if missing:
            raise DataError(f"{source}{f' (split {split})' if split else ''} has no cells of class(es) {missing}; "
                            f"it has {sorted(by)}")
        names = list(classes)
    else:
        names = sorted(by)
    manifest = manifest_of(source)
    subtypes = read_subtypes(manifest, subtype_column) if manifest is not None else None
    rng = np.random.default_rng(seed)
    rows = []
    for c in names:
        rs = by[c]
        idx = np.sort(rng.permutation(len(rs))[:per_class]) if per_class else np.arange(len(rs))
        for i in idx:
            raw = subtypes.get(str(rs[i].path)) if subtypes is not None else None
            rows.append({"path": str(rs[i].path), "label": c, "subtype_raw": raw,
                         "subtype": None if unspecified(c, raw) else raw})
    return pd.DataFrame(rows, columns=["path", "label", "subtype", "subtype_raw"])


def list_added(folder: str | Path) -> list[Path]:
    """The images of a folder (and its sub-folders) to place on the map, sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"--add {folder}: not a folder; pass a folder of cell images (.jpg, .png, ...)")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"--add {folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in it or its sub-folders")
    return files
