"""Add the training images' light and stain (``framing.stain``, the target of ``--stain-normalisation
optical-density``) to the bundled models' framing records, measured exactly as ``cytomodel framing measure`` now
measures it (``measure_contract`` → ``measure_stain``) on the images the records name (PBC train, the model's own
classes; all of them, where ``framing measure`` takes a uniform sample of 4,000), without re-measuring — and so
without touching — the rest of each record. Run again on 2026-12-07 after the stain statistics gained their
per-compartment moments and shares (``framing.stain.compartments``, ``compartment_shares``; the all-pixel
``od_moment`` came out identical).

    python docs/results/stain-normalisation-od/add_stain.py data/models/cpu-32 data/models/cpu-32-lab ...
"""
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))

from cytomodel.cli.framing import _records  # noqa: E402
from cytomodel.data import load_image, scan_dataset  # noqa: E402
from cytomodel.data.stain import measure_stain  # noqa: E402

cache: dict = {}
for folder in sys.argv[1:]:
    for path, meta in _records(Path(folder)):
        framing = meta.get("framing")
        if not framing:
            print(f"{path}: no framing record, skipped")
            continue
        classes = meta.get("class_names") or meta.get("classes")
        data = Path(framing["data"]) if Path(framing["data"]).is_absolute() else REPO / framing["data"]
        key = (str(data), framing.get("split"), tuple(classes or ()))
        if key not in cache:
            records = [r for r in scan_dataset(data, split=framing.get("split")) if not classes or r.label in classes]
            cache[key] = measure_stain([load_image(r.path) for r in records]).to_dict()
        framing["stain"] = cache[key]
        indent = len(path.read_text().splitlines()[1]) - len(path.read_text().splitlines()[1].lstrip())
        path.write_text(json.dumps(meta, indent=indent) + "\n")  # the file's own layout: only the new lines differ
        print(f"{path}: stain of {cache[key]['n_images']} images ({framing['data']}, {framing.get('split')}): "
              f"background {cache[key]['background']}")
