"""The baseline CNN's view of a cell as one more part of the diffusion classifier's anomaly score: how far its
features lie from its training cells' (``baseline_neighbours``, the cosine distance to the k-th nearest) and from
every trained class's (``baseline_distance``, relative Mahalanobis; both :mod:`cytomodel.evaluate.feature_density`),
with its uncertainty (``baseline_raw``, 1 − max softmax) written beside them.

Why: on validation cells with ig and with erythroblast held out, the best score adds the discriminative baseline to
the diffusion parts (class-gain, texture gain, texture profile; docs/classifier.md): the two models are unsure about
different cells; its feature distances ranked both held-out classes better than its softmax, the nearest-neighbour
one promyelocytes (the subtype nearest a blast) best. The baseline must know the same classes as the diffusion model
(trained without the same held-out class) and reads each image through its own intake, as ``baseline predict``
would.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cytocore.provenance import sha256_file

from ..data import Intake, framed_arrays
from .config import DENSITY_PARTS, FIT_DENSITY


@dataclass
class BaselinePart:
    """A baseline CNN and its intake; :meth:`columns` are the ``baseline_raw``, ``baseline_distance`` and
    ``baseline_neighbours`` columns of a results table.
    ``classifier``: a :class:`cytomodel.evaluate.BaselineClassifier` (loaded by the caller: evaluate sits above
    classify)."""
    classifier: Any
    intake: Intake
    weights_sha256: str | None = None   # which reference fits it (a reference records the baseline it was fitted with)
    density_sha256: str | None = None   # its feature density's arrays (refitting it changes the distances)

    @classmethod
    def of_classifier(cls, classifier: Any, folder: str | Path, class_names: Sequence[str],
                      um_per_px: float | None = None, stain: str = "auto") -> "BaselinePart":
        """The part for a baseline loaded from ``folder``; refused where it cannot stand beside the diffusion model
        of ``class_names``."""
        if classifier.student is not None:
            raise ValueError(f"{folder} is a distilled student of a diffusion model: it repeats its teacher. Pass a "
                             "baseline CNN trained on labelled cells (`cytomodel baseline train`)")
        if sorted(classifier.class_names) != sorted(class_names):
            raise ValueError(f"the baseline {folder} knows the classes {sorted(classifier.class_names)}, the "
                             f"diffusion model {sorted(class_names)}: train the baseline on the same classes")
        weights = Path(folder) / "model.safetensors"
        density = classifier.density
        return cls(classifier, classifier.intake(um_per_px, stain), sha256_file(weights) if weights.is_file() else None,
                   density.fingerprint() if density is not None else None)

    def check_parts(self, parts: Sequence[str], anomaly: str) -> None:
        """Refuse, before any work, a score that reads a feature statistic this baseline cannot give."""
        density = self.classifier.density
        if density is None and any(c in DENSITY_PARTS for c in parts):
            raise ValueError(f"anomaly={anomaly!r} reads the baseline's feature distance, and this baseline has no "
                             f"feature density: {FIT_DENSITY}")
        if density is not None and density.neighbours is None and "baseline_neighbours" in parts:
            raise ValueError(f"anomaly={anomaly!r} reads the baseline's nearest-neighbour distance, and this "
                             f"baseline's feature density keeps no training features (it was fitted before they "
                             f"were kept): {FIT_DENSITY}")

    def identity(self) -> dict[str, Any]:
        """What makes two runs' baseline columns the same numbers (for a results table's run key and a reference)."""
        return {"baseline_weights_sha256": self.weights_sha256, "baseline_name": self.classifier.metadata.get("name"),
                "baseline_density_sha256": self.density_sha256}

    def columns(self, sources: Sequence) -> dict[str, np.ndarray]:
        """Per source, ``baseline_raw`` (1 − the largest class probability) and, where the baseline has a feature
        density, ``baseline_distance`` and (where it keeps its training features) ``baseline_neighbours``; NaN where
        it could not be framed."""
        density = self.classifier.density
        names = ["baseline_raw"] + (["baseline_distance"] if density is not None else []) + (
            ["baseline_neighbours"] if density is not None and density.neighbours is not None else [])
        out = {c: np.full(len(sources), np.nan) for c in names}
        if not len(sources):
            return out
        arrays, keep = framed_arrays(self.intake.frame(list(sources)), self.classifier.resolution)
        if keep:
            out["baseline_raw"][keep] = 1.0 - self.classifier.predict_proba(arrays).max(axis=1)
            if density is not None:
                distance, neighbours = self.classifier.feature_distances(arrays)
                out["baseline_distance"][keep] = distance
                if neighbours is not None:
                    out["baseline_neighbours"][keep] = neighbours
        return out
