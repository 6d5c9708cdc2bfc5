"""Training a stage: :mod:`.config` (``TrainConfig``, the presets; torch-free), :mod:`.loop` (:func:`train`,
resumable), :mod:`.objectives` (what a step optimises), :mod:`.augmentation` and :mod:`.lab_augmentation` (what a
training image goes through), :mod:`.variants` (held-out-class and low-data variants)."""
from __future__ import annotations

from .._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "TrainConfig": "config", "PRESETS": "config", "load_config": "config",
    "train": "loop",
    "BaseObjective": "objectives", "SuperResObjective": "objectives", "OBJECTIVES": "objectives",
    "augment": "augmentation", "augment_views": "augmentation",
    "LabVariation": "config",
    "holdout_class": "variants", "low_data": "variants", "train_variant": "variants",
})
