"""Leak audit: can anything a browser sees, other than the pixels themselves, tell real from synthetic stimuli?

Features per stimulus (all of what reaches the participant's browser apart from the image content):

* ``file``: byte size, decoded width and height, PNG chunk layout (types and lengths), the header bytes up to
  the first pixel;
* ``url``: the opaque stimulus id and the media URL Streamlit serves the image under (a content hash);
* ``order``: the position in the manifest and the mean / first position in simulated participants' sequences.

(The page's HTML is produced by the same code for every stimulus: the image element carries no per-stimulus alt
text, title or class, so there is nothing per-stimulus to measure there.)

For each feature group and for all features together, a random forest is scored by repeated stratified
cross-validated AUROC (real vs synthetic). A constant feature gives exactly 0.5. The audit **fails** when the AUROC
exceeds ``threshold`` (0.6) and a permutation test says the separation is not chance (p < 0.05: with few stimuli,
random ids alone can reach 0.6 by luck); both numbers are reported.
"""
from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


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


def media_url_id(data: bytes, mimetype: str = "image/png") -> str:
    """The id Streamlit's media file manager gives these bytes (the served URL is /media/<id>.png)."""
    try:
        from streamlit.runtime.memory_media_file_storage import _calculate_file_id
        return _calculate_file_id(data, mimetype)
    except Exception:  # pragma: no cover - private API moved: fall back to a content hash (same information)
        return hashlib.sha224(data + mimetype.encode()).hexdigest()


def _hex_features(s: str, n: int = 4) -> list[float]:
    s = "".join(ch for ch in s.lower() if ch in "0123456789abcdef") or "0"
    return [int(s[i * 2:(i + 1) * 2] or "0", 16) for i in range(n)] + [len(s)]


def browser_features(manifest: pd.DataFrame, study_dir: str | Path,
                     sequences: list[list[str]] | None = None) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """One row of browser-visible features per stimulus, and the feature groups."""
    from PIL import Image
    import io

    study_dir = Path(study_dir)
    rows = []
    pos_sum: dict[str, list[int]] = {}
    for seq in sequences or []:
        for i, sid in enumerate(seq):
            pos_sum.setdefault(sid, []).append(i)
    for order, r in enumerate(manifest.itertuples(index=False)):
        data = (study_dir / r.file).read_bytes()
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            fmt = im.format
        chunks = png_chunks(data) if data[:8] == b"\x89PNG\r\n\x1a\n" else []
        feat: dict[str, Any] = {
            "file_bytes": len(data), "file_width": w, "file_height": h, "file_format_png": float(fmt == "PNG"),
            "file_n_chunks": len(chunks),
            "file_chunk_layout": int(hashlib.sha1(repr(chunks).encode()).hexdigest()[:8], 16),
        }
        # header bytes up to the first pixel: signature, IHDR, any ancillary chunks, the IDAT length and the
        # zlib / deflate block headers (the pixel bytes that follow are the image itself, not a leak)
        idat = data.find(b"IDAT")
        head = data[:idat + 4 + 7] if idat > 0 else data[:64]
        for i, b in enumerate(head[:96]):
            feat[f"file_head_{i:02d}"] = b
        feat["file_head_len"] = len(head)
        for i, v in enumerate(_hex_features(str(r.stimulus_id))):
            feat[f"url_id_{i}"] = v
        for i, v in enumerate(_hex_features(media_url_id(data))):
            feat[f"url_media_{i}"] = v
        feat["order_manifest"] = order
        ps = pos_sum.get(r.stimulus_id)
        if sequences:
            feat["order_mean_position"] = float(np.mean(ps)) if ps else -1.0
            feat["order_first_position"] = float(np.min(ps)) if ps else -1.0
        rows.append(feat)
    X = pd.DataFrame(rows, index=manifest["stimulus_id"].to_numpy()).fillna(-1)
    groups = {g: [c for c in X.columns if c.startswith(g + "_")] for g in ("file", "url", "order")}
    return X, groups


def _cv_auroc(X: np.ndarray, y: np.ndarray, seed: int, repeats: int = 3) -> float:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    if X.shape[1] == 0 or np.all(X == X[0]):
        return 0.5
    keep = ~np.all(X == X[0], axis=0)
    X = X[:, keep]
    n_min = int(min(np.sum(y), np.sum(1 - y)))
    k = max(2, min(5, n_min))
    scores = []
    for rep in range(repeats):
        oof = np.zeros(len(y))
        for tr, te in StratifiedKFold(k, shuffle=True, random_state=seed + rep).split(X, y):
            clf = RandomForestClassifier(n_estimators=25, max_depth=4, min_samples_leaf=2, random_state=seed + rep,
                                         n_jobs=1).fit(X[tr], y[tr])
            oof[te] = clf.predict_proba(X[te])[:, 1]
        scores.append(roc_auc_score(y, oof))
    return float(np.mean(scores))


@dataclass
class AuditResult:
    n_real: int
    n_synthetic: int
    auroc: dict[str, float]
    p_value: dict[str, float | None]
    constant: dict[str, bool]
    threshold: float
    passed: bool
    notes: list[str] = field(default_factory=list)

    @property
    def max_auroc(self) -> float:
        return max(self.auroc.values())

    def to_dict(self) -> dict[str, Any]:
        return {"n_real": self.n_real, "n_synthetic": self.n_synthetic, "auroc": self.auroc, "p_value": self.p_value,
                "constant_within_group": self.constant, "threshold": self.threshold, "passed": self.passed,
                "max_auroc": self.max_auroc, "notes": self.notes, "method": __doc__.split("\n\n")[-1].strip()}

    def summary(self) -> str:
        parts = ", ".join(f"{g} {a:.3f}" for g, a in self.auroc.items())
        verdict = "PASS" if self.passed else "FAIL"
        return (f"leak audit {verdict}: AUROC real vs synthetic from browser-visible features ({self.n_real} real, "
                f"{self.n_synthetic} synthetic): {parts} (fail above {self.threshold})")


def leak_audit(manifest: pd.DataFrame, study_dir: str | Path, threshold: float = 0.6,
               sequences: list[list[str]] | None = None, seed: int = 0, n_permutations: int = 30) -> AuditResult:
    X, groups = browser_features(manifest, study_dir, sequences)
    y = (manifest["source"].to_numpy() == "synthetic").astype(int)
    if y.min() == y.max():
        raise LeakAuditError("the leak audit needs both real and synthetic stimuli")
    groups = {**{g: c for g, c in groups.items() if c}, "all": list(X.columns)}
    auroc, pvals, const, notes = {}, {}, {}, []
    rng = np.random.default_rng(seed)
    for g, cols in groups.items():
        M = X[cols].to_numpy(dtype=float)
        const[g] = bool(np.all(M == M[0]))
        a = _cv_auroc(M, y, seed)
        auroc[g] = round(a, 4)
        pvals[g] = None
        if a > threshold:  # only then is the permutation null needed to decide
            null = [_cv_auroc(M, rng.permutation(y), seed, repeats=1) for _ in range(n_permutations)]
            pvals[g] = round((1 + sum(v >= a for v in null)) / (1 + n_permutations), 4)
    sizes = X["file_bytes"].unique()
    notes.append(f"file sizes: {len(sizes)} distinct value(s) ({', '.join(map(str, sizes[:4]))} bytes)")
    dims = X[["file_width", "file_height"]].drop_duplicates()
    notes.append(f"dimensions: {', '.join(f'{w}x{h}' for w, h in dims.to_numpy()[:4])}")
    failed = [g for g in auroc if auroc[g] > threshold and (pvals[g] is not None and pvals[g] < 0.05)]
    chance = [g for g in auroc if auroc[g] > threshold and g not in failed]
    if chance:
        notes.append(f"groups {chance} exceed {threshold} but not beyond chance (permutation p >= 0.05); "
                     "with this few stimuli the audit has little power: build a larger set to be sure")
    return AuditResult(int((y == 0).sum()), int((y == 1).sum()), auroc, pvals, const, threshold, not failed, notes)
