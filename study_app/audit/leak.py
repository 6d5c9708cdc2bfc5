"""Leak audit: can anything a browser sees, other than the pixels themselves, tell real from synthetic stimuli?

Features per stimulus (what reaches the participant's browser apart from the image content):

* ``file``: byte size, decoded width and height, PNG chunk layout (types and lengths), the header bytes up to the
  compressed pixels (what HTTP adds is the same for every stimulus: type and length);
* ``order``: the position in the manifest and the mean / first position in simulated participants' sequences;
* ``url``: the name the server serves each image under. It is drawn at random for every presentation
  (:mod:`study_app.serve.media`), so it is checked as a property rather than tested statistically: two
  presentations of the same image get different names, and no name contains the stimulus id or a hash of the
  bytes (what Streamlit's own media URLs are, and what anyone holding the public images could compute).

(The page's HTML is produced by the same code for every stimulus: the image element carries no per-stimulus alt
text, title or class, and the stimulus id never reaches the browser.)

For ``file`` and ``order``, each feature's real-vs-synthetic AUROC is folded two-sided (:mod:`.stats`); a group's
statistic is its largest. The audit **fails** when the served names are not random, or when a group's folded
AUROC exceeds ``threshold`` (0.6) *and* its permutation p-value, after Holm's correction over the groups, is
below 0.01 (``n_permutations`` label permutations, 2000 by default: with
few stimuli random features alone reach 0.6 by luck, and a few hundred permutations are needed for a verdict that
does not change with the seed).
"""
from __future__ import annotations

import hashlib
import io
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from .stats import permutation_tests

ALPHA = 0.01
GROUPS = ("file", "order")


class LeakAuditError(RuntimeError):
    pass


def png_chunks(data: bytes) -> list[tuple[str, int]]:
    out = []
    pos = 8
    while pos + 8 <= len(data):
        length, ctype = struct.unpack(">I4s", data[pos:pos + 8])
        out.append((ctype.decode("latin-1"), int(length)))
        pos += 12 + length
    return out


def _file_features(data: bytes) -> dict[str, Any]:
    with Image.open(io.BytesIO(data)) as im:
        (w, h), fmt = im.size, im.format
    chunks = png_chunks(data) if data[:8] == b"\x89PNG\r\n\x1a\n" else []
    feat: dict[str, Any] = {"file_bytes": len(data), "file_width": w, "file_height": h,
                            "file_format_png": float(fmt == "PNG"), "file_n_chunks": len(chunks),
                            "file_chunk_layout": int(hashlib.sha1(repr(chunks).encode()).hexdigest()[:8], 16)}
    # header bytes up to the compressed pixels: signature, IHDR, any ancillary chunks, the IDAT length and the zlib
    # header (the deflate stream that follows encodes the pixels: the image itself, not a leak)
    idat = data.find(b"IDAT")
    head = data[:idat + 4 + 2] if idat > 0 else data[:64]
    feat.update({f"file_head_{i:02d}": b for i, b in enumerate(head[:96])})
    feat["file_head_len"] = len(head)
    return feat


def content_hashes(data: bytes) -> list[str]:
    """Names derivable from the bytes alone: Streamlit's media id, plain digests."""
    out = [hashlib.sha256(data).hexdigest(), hashlib.sha224(data).hexdigest(), hashlib.md5(data).hexdigest()]
    try:
        from streamlit.runtime.memory_media_file_storage import _calculate_file_id
        out.append(_calculate_file_id(data, "image/png"))
    except Exception:  # noqa: BLE001 - private API moved: the plain digests remain
        pass
    return out


def served_names_problems(manifest: pd.DataFrame, study_dir: Path, presentations: int = 3) -> list[str]:
    """What would let a served name identify its image (empty: the names are random per presentation)."""
    from ..serve.media import served_name

    problems = []
    for r in manifest.itertuples(index=False):
        data = (study_dir / r.file).read_bytes()
        names = [served_name() for _ in range(presentations)]
        derived = [h[:16] for h in content_hashes(data)] + [str(r.stimulus_id)]
        if len(set(names)) < len(names):
            problems.append(f"stimulus {r.stimulus_id}: the same name in two presentations")
        if any(d in n for n in names for d in derived):
            problems.append(f"stimulus {r.stimulus_id}: a served name contains its id or a hash of its bytes")
    return problems[:5]


def browser_features(manifest: pd.DataFrame, study_dir: str | Path,
                     sequences: list[list[str]] | None = None) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """One row of browser-visible features per stimulus (file, order), and the feature groups."""
    study_dir = Path(study_dir)
    positions: dict[str, list[int]] = {}
    for seq in sequences or []:
        for i, sid in enumerate(seq):
            positions.setdefault(sid, []).append(i)
    rows = []
    for order, r in enumerate(manifest.itertuples(index=False)):
        feat = _file_features((study_dir / r.file).read_bytes())
        feat["order_manifest"] = order
        if sequences:
            ps = positions.get(r.stimulus_id)
            feat["order_mean_position"] = float(np.mean(ps)) if ps else -1.0
            feat["order_first_position"] = float(np.min(ps)) if ps else -1.0
        rows.append(feat)
    X = pd.DataFrame(rows, index=manifest["stimulus_id"].to_numpy()).fillna(-1)
    return X, {g: [c for c in X.columns if c.startswith(g + "_")] for g in GROUPS}


@dataclass
class AuditResult:
    n_real: int
    n_synthetic: int
    auroc: dict[str, float]                 # folded two-sided AUROC per group (0.5 = no separation)
    p_value: dict[str, float]               # permutation p, Holm-corrected over the groups
    constant: dict[str, bool]
    threshold: float
    passed: bool
    n_permutations: int
    top_feature: dict[str, str | None] = field(default_factory=dict)
    url_problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def max_auroc(self) -> float:
        return max(self.auroc.values())

    def to_dict(self) -> dict[str, Any]:
        return {"n_real": self.n_real, "n_synthetic": self.n_synthetic, "auroc": self.auroc,
                "p_value": self.p_value, "top_feature": self.top_feature, "constant_within_group": self.constant,
                "threshold": self.threshold, "alpha": ALPHA, "n_permutations": self.n_permutations,
                "served_names_random": not self.url_problems, "url_problems": self.url_problems,
                "passed": self.passed, "max_auroc": self.max_auroc, "notes": self.notes,
                "method": __doc__.split("\n\n")[-1].strip()}

    def summary(self) -> str:
        parts = ", ".join(f"{g} {a:.3f} (p {self.p_value[g]:.3g})" for g, a in self.auroc.items())
        urls = "served names random per presentation" if not self.url_problems else \
            f"SERVED NAMES IDENTIFY IMAGES ({self.url_problems[0]})"
        return (f"leak audit {'PASS' if self.passed else 'FAIL'}: two-sided AUROC real vs synthetic from "
                f"browser-visible features ({self.n_real} real, {self.n_synthetic} synthetic, "
                f"{self.n_permutations} permutations): {parts} (fail above {self.threshold} with p < {ALPHA}); "
                f"{urls}")


def leak_audit(manifest: pd.DataFrame, study_dir: str | Path, threshold: float = 0.6,
               sequences: list[list[str]] | None = None, seed: int = 0, n_permutations: int = 2000) -> AuditResult:
    X, groups = browser_features(manifest, study_dir, sequences)
    y = (manifest["source"].to_numpy() == "synthetic").astype(int)
    if y.min() == y.max():
        raise LeakAuditError("the leak audit needs both real and synthetic stimuli")
    names = list(X.columns)
    idx = {g: [names.index(c) for c in cols] for g, cols in groups.items() if cols}
    tests = permutation_tests(X.to_numpy(dtype=float), y, idx, names, n_permutations, seed)
    M = {g: X[groups[g]].to_numpy(dtype=float) for g in idx}
    failed = [g for g, t in tests.items() if t.auroc > threshold and t.p_holm < ALPHA]
    url_problems = served_names_problems(manifest, Path(study_dir))
    notes = [f"file sizes: {X['file_bytes'].nunique()} distinct value(s) "
             f"({', '.join(map(str, X['file_bytes'].unique()[:4]))} bytes)",
             "dimensions: " + ", ".join(f"{w}x{h}" for w, h in
                                       X[["file_width", "file_height"]].drop_duplicates().to_numpy()[:4])]
    chance = [g for g, t in tests.items() if t.auroc > threshold and g not in failed]
    if chance:
        notes.append(f"groups {chance} exceed {threshold} but not beyond chance (Holm-corrected p >= {ALPHA}): "
                     "with this few stimuli single random features reach it by luck")
    return AuditResult(int((y == 0).sum()), int((y == 1).sum()), {g: t.auroc for g, t in tests.items()},
                       {g: t.p_holm for g, t in tests.items()}, {g: bool(np.all(M[g] == M[g][0])) for g in M},
                       threshold, not failed and not url_problems, n_permutations,
                       {g: t.feature for g, t in tests.items()}, url_problems, notes)
