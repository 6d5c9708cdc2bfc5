"""How a model's training files were saved (JPEG quantisation tables and chroma subsampling), and saving any framed
cell the same way before a score that reads fine detail.

Why: fine detail carries the compression it was saved with. The 128-px stage of the bundled cascade learned the
residual detail of PBC cells that were resized to 128 px and saved as JPEG (quality 93); the same cells framed by the
intake from their 360-px originals are crisper, and its texture score read that as unusual (3.1 % of the 128-px
copies over the PBC validation threshold, 31 % of the same cells from their originals; 4.4 % after this round trip,
docs/classifier.md). Framing makes the cell the same size; this makes its detail the same kind. A round trip with
the same tables leaves a cell that already went through it nearly unchanged (the copies: 3.8 % before and after).
"""
from __future__ import annotations

import io
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from PIL import Image, JpegImagePlugin

SAMPLE = 50   # training files whose encoding is read (the most common encoding among them is recorded)


def file_encoding(img: Image.Image) -> dict[str, Any] | None:
    """The JPEG quantisation tables and subsampling of an opened file, or None for a lossless format."""
    if img.format != "JPEG" or not getattr(img, "quantization", None):
        return None
    return {"format": "JPEG", "subsampling": int(JpegImagePlugin.get_sampling(img)),
            "quantization": [list(map(int, img.quantization[k])) for k in sorted(img.quantization)]}


def measure_encoding(paths: Iterable[str | Path], limit: int = SAMPLE) -> dict[str, Any]:
    """The most common encoding among (up to ``limit`` of) ``paths``, with the share of files that have it:
    ``{"format": "JPEG", "subsampling", "quantization", "share", "files_read"}`` or ``{"format": "lossless", ...}``."""
    seen: Counter = Counter()
    kinds: dict[str, dict[str, Any] | None] = {}
    for path in list(paths)[:limit]:
        with Image.open(path) as img:
            enc = file_encoding(img)
        key = repr(enc)
        kinds[key] = enc
        seen[key] += 1
    if not seen:
        raise ValueError("no training files to read the encoding of")
    key, count = seen.most_common(1)[0]
    enc = kinds[key] or {"format": "lossless"}
    return {**enc, "share": round(count / sum(seen.values()), 4), "files_read": int(sum(seen.values()))}


def encode_like(images: np.ndarray, encoding: dict[str, Any] | None) -> np.ndarray:
    """(N, H, W, 3) uint8 cells saved and decoded with ``encoding`` (a record of :func:`measure_encoding`); returned
    unchanged when it is None or lossless."""
    arr = np.asarray(images)
    if not encoding or encoding.get("format") != "JPEG":
        return arr
    tables = [list(t) for t in encoding["quantization"]]
    out = np.empty_like(arr)
    for i, cell in enumerate(arr):
        buf = io.BytesIO()
        Image.fromarray(cell).save(buf, "JPEG", qtables=tables, subsampling=int(encoding.get("subsampling", 2)))
        buf.seek(0)
        with Image.open(buf) as img:
            out[i] = np.asarray(img.convert("RGB"))
    return out
