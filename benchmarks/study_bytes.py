"""Bytes per stimulus and per participant session of a built study, and the same study re-encoded with the other
stimulus encoding (for a before / after comparison on the same pixels).

  python benchmarks/study_bytes.py STUDY                       # the study as built
  python benchmarks/study_bytes.py STUDY --write OUT --encoding uncompressed   # a copy with the old encoding
  python benchmarks/study_bytes.py STUDY --write OUT --encoding compressed     # a copy with the current one

Encodings: ``uncompressed`` (the encoder before issue 21: PNG with compress_level 0, every file the same size by
construction) and ``compressed`` (study_app.build.render: deflate level 9, padded inside the stream to the largest
file + 9 bytes). Re-encoding is lossless: the decoded pixels of every file are checked to be unchanged.

Per session = the stimuli one participant's browser downloads: each practice and main image (and attention check)
once (the practice feedback shows the trial's image again under the same name, from the browser's cache; before
issue 21 it downloaded it again). The instruction page's example cells come on top (Streamlit re-encodes them at
150 px: about 0.2 MB for 8); a reload or a retry adds one image each. ``benchmarks/study_screenshot.py`` measures
what the browser really receives.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def encode(arr: np.ndarray, encoding: str) -> bytes:
    from study_app.build.render import render_stimulus
    if encoding == "compressed":
        return render_stimulus(arr, arr.shape[0], "bicubic")     # at its own size: no resampling
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, format="PNG", compress_level=0, optimize=False)
    return buf.getvalue()


def rewrite(study: Path, out: Path, encoding: str) -> Path:
    """A copy of ``study`` whose stimuli are re-encoded (same pixels), with its manifest hashes, content hash and
    stimulus size updated."""
    from study_app.build.render import pad_stimulus, padded_size
    from study_app.build.steps import _content_hash
    from cytocore.study_files import MANIFEST_FILE, STUDY_FILE
    from study_app.study import load_study

    shutil.copytree(study, out, ignore=shutil.ignore_patterns("study.db*", "exports", "manifests"))
    st = load_study(out)
    pixels = {r.file: np.asarray(Image.open(out / r.file).convert("RGB")) for r in st.manifest.itertuples()}
    data = {f: encode(a, encoding) for f, a in pixels.items()}
    if encoding == "compressed":
        size = padded_size(len(d) for d in data.values())
        data = {f: pad_stimulus(d, size) for f, d in data.items()}
    for f, d in data.items():
        if not (np.asarray(Image.open(io.BytesIO(d)).convert("RGB")) == pixels[f]).all():
            raise RuntimeError(f"{f}: the pixels changed (the encoding must be lossless)")
        (out / f).write_bytes(d)
    m = st.manifest.copy()
    m["sha256"] = [hashlib.sha256(data[f]).hexdigest() for f in m["file"]]
    m.to_csv(out / MANIFEST_FILE, index=False)
    meta = json.loads((out / STUDY_FILE).read_text())
    meta["content_hash"] = _content_hash(st.config, m)
    meta["manifest_sha256"] = hashlib.sha256((out / MANIFEST_FILE).read_bytes()).hexdigest()
    meta["stimulus_bytes"] = len(next(iter(data.values())))
    (out / STUDY_FILE).write_text(json.dumps(meta, indent=2))
    return out


def session_images(st) -> dict[str, int]:
    """How many images one participant downloads, by kind."""
    from study_app.design import trial_sequence
    seq = trial_sequence(st.manifest, st.config, 0, 0)
    n_practice = sum(t.phase == "practice" for t in seq)
    n_main = sum(t.phase == "main" for t in seq)
    return {"practice": n_practice, "main (incl. attention checks)": n_main}


def report(study: Path) -> dict:
    from study_app.audit import leak_audit
    from study_app.study import audit_population, load_study

    st = load_study(study)
    sizes = pd.Series({r.stimulus_id: (study / r.file).stat().st_size for r in st.manifest.itertuples()})
    counts = session_images(st)
    stim = st.manifest[st.manifest["role"] != "example"]
    per_image = sizes[stim["stimulus_id"]]
    session = int(sum(counts.values()) * per_image.max())
    audit = leak_audit(audit_population(st.manifest), study, n_permutations=500)
    out = {"study": str(study), "n_files": len(sizes), "distinct_sizes": sorted(set(per_image)),
           "bytes_per_image": int(per_image.max()), "images_per_session": counts, "stimulus_bytes_per_session": session,
           "leak_audit": audit.summary()}
    print(json.dumps(out, indent=2))
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("study")
    ap.add_argument("--write", help="write a re-encoded copy of the study here, then report on it")
    ap.add_argument("--encoding", choices=("compressed", "uncompressed"), default="compressed")
    args = ap.parse_args()
    study = Path(args.study)
    if args.write:
        study = rewrite(study, Path(args.write), args.encoding)
    report(study)
    return 0


if __name__ == "__main__":
    sys.exit(main())
