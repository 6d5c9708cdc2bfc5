"""The baseline CNN's uncertainty (1 − max softmax) as one more part of the diffusion classifier's anomaly score.

Why: on validation cells with ig and with erythroblast held out, the best score adds the discriminative baseline's
uncertainty to the diffusion parts (class-gain, texture gain, texture profile; docs/classifier.md): the two models
are unsure about different cells. The baseline must know the same classes as the diffusion model (trained without
the same held-out class) and reads each image through its own intake, as ``baseline predict`` would.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cytocore.provenance import sha256_file

from ..data import Intake, framed_arrays


@dataclass
class BaselinePart:
    """A baseline CNN and its intake; :meth:`uncertainty` is the ``baseline_raw`` column of a results table.
    ``classifier``: a :class:`cytomodel.evaluate.BaselineClassifier` (loaded by the caller: evaluate sits above
    classify)."""
    classifier: Any
    intake: Intake
    weights_sha256: str | None = None   # which reference fits it (a reference records the baseline it was fitted with)

    @classmethod
    def of_classifier(cls, classifier: Any, folder: str | Path, class_names: Sequence[str],
                      um_per_px: float | None = None, stain: str = "none") -> "BaselinePart":
        """The part for a baseline loaded from ``folder``; refused where it cannot stand beside the diffusion model
        of ``class_names``."""
        if classifier.student is not None:
            raise ValueError(f"{folder} is a distilled student of a diffusion model: it repeats its teacher. Pass a "
                             "baseline CNN trained on labelled cells (`cytomodel baseline train`)")
        if sorted(classifier.class_names) != sorted(class_names):
            raise ValueError(f"the baseline {folder} knows the classes {sorted(classifier.class_names)}, the "
                             f"diffusion model {sorted(class_names)}: train the baseline on the same classes")
        weights = Path(folder) / "model.safetensors"
        return cls(classifier, classifier.intake(um_per_px, stain), sha256_file(weights) if weights.is_file() else None)

    def identity(self) -> dict[str, Any]:
        """What makes two runs' baseline columns the same numbers (for a results table's run key and a reference)."""
        return {"baseline_weights_sha256": self.weights_sha256, "baseline_name": self.classifier.metadata.get("name")}

    def uncertainty(self, sources: Sequence) -> np.ndarray:
        """Per source, 1 − the baseline's largest class probability; NaN where it could not be framed."""
        out = np.full(len(sources), np.nan)
        if not len(sources):
            return out
        arrays, keep = framed_arrays(self.intake.frame(list(sources)), self.classifier.resolution)
        if keep:
            out[keep] = 1.0 - self.classifier.predict_proba(arrays).max(axis=1)
        return out
