"""The evidence: :mod:`.evaluation` (``cytomodel evaluate``: accuracy, calibration, anomaly, low data, domain shift
against the baseline), :mod:`.metrics` (numpy; scikit-learn for ROC), :mod:`.figures`, and the discriminative
baseline CNN the diffusion model is measured against (:mod:`.baseline`, its training :mod:`.baseline_training`)."""
from __future__ import annotations

from .._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "evaluate": "evaluation", "EvalInputs": "evaluation", "Report": "evaluation", "balanced_items": "evaluation",
    **dict.fromkeys(["classification_metrics", "classification_summary", "reliability_bins", "ece_score",
                     "brier_score", "nll_score", "calibration_summary", "youden_threshold", "anomaly_summary"],
                    "metrics"),
    "BaselineClassifier": "baseline", "ResNetSmall": "baseline", "load_baseline": "baseline",
    "train_baseline": "baseline_training", "train_variant_baseline": "baseline_training",
})
