"""Add each training class's offset of the white-cell size (``framing.cell_class_offsets``,
:func:`cytomodel.data.framing.class_offsets`) to the bundled models' framing records, measured as ``cytomodel
framing measure`` now measures it (``measure_cell`` on every image the record was measured on: PBC train, the
model's own classes) against the record's own ``window_cell`` — without touching the rest of each record.

    python docs/results/framing-one-class/add_class_offsets.py data/models/cpu-32 data/models/cpu-32-lab ...
"""
import json
import sys
from multiprocessing import Pool
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))

from cytomodel.cli.framing import _records  # noqa: E402
from cytomodel.data import load_image, scan_dataset  # noqa: E402
from cytomodel.data.framing import FRAMED_STATUSES, class_offsets, measure_cell  # noqa: E402


def ratio(path):
    m = measure_cell(load_image(path))
    if m.status in FRAMED_STATUSES and m.centre is not None and m.cell_diameter:
        return min(m.size) / m.cell_diameter
    return None


if __name__ == "__main__":
    cache: dict = {}
    for folder in sys.argv[1:]:
        for path, meta in _records(Path(folder)):
            framing = meta.get("framing")
            if not framing or not framing.get("window_cell"):
                print(f"{path}: no white-cell framing record, skipped")
                continue
            classes = meta.get("class_names") or meta.get("classes")
            data = Path(framing["data"]) if Path(framing["data"]).is_absolute() else REPO / framing["data"]
            key = (str(data), framing.get("split"), tuple(classes or ()))
            if key not in cache:
                records = [r for r in scan_dataset(data, split=framing.get("split"))
                           if not classes or r.label in classes]
                with Pool(2) as pool:
                    ratios = pool.map(ratio, [r.path for r in records], chunksize=64)
                kept = [(v, r.label) for v, r in zip(ratios, records) if v is not None]
                cache[key] = class_offsets([v for v, _ in kept], [lab for _, lab in kept], framing["window_cell"])
            framing["cell_class_offsets"] = cache[key]
            indent = len(path.read_text().splitlines()[1]) - len(path.read_text().splitlines()[1].lstrip())
            path.write_text(json.dumps(meta, indent=indent) + "\n")  # the file's own layout: only new lines differ
            print(f"{path}: class offsets {cache[key]}")
