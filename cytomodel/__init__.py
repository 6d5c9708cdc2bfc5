"""cytomodel: a class-conditional diffusion model of blood cells that generates, classifies and explains.

The packages, bottom to top (each imports only those before it)::

    data/       images in: datasets, framing, the intake every model's input goes through
    models/     the stages (base, super-resolution, cascade), the lab-variation embedding, the loader registry
    pipelines/  sampling: scheduling and seeded noise, base stage, super-resolution, cascade, generate
    classify/   the diffusion classifier: config, noise-draw plan, errors, scores, batches, heat maps, triage
    train/      training: configs and presets, the loop, objectives, augmentation, variants
    evaluate/   the evidence: evaluation, metrics, figures, the baseline CNN
    morphology_map/  the model's map of cell morphology (``cytomodel map``), checked against subtypes
    cli/        the ``cytomodel`` command

Public API, loaded on first use (``import cytomodel`` costs nothing)::

    load_model, load_generator, load_base, CytoModel, SuperResModel, Cascade, assemble_cascade,
    generate_images, sdedit_images, save_generated, super_resolve, load_config, TrainConfig, PRESETS,
    load_dataset, scan_dataset, load_image, DataError, bundled_model_path, bundled_baseline_path

(training: ``cytomodel.train.train``; the classifier: ``cytomodel.classify``.)
"""
from __future__ import annotations

from pathlib import Path

from ._lazy import lazy_exports

__getattr__, _lazy = lazy_exports(__name__, {
    "load_model": "models", "load_generator": "models", "load_base": "models", "CytoModel": "models",
    "SuperResModel": "models", "Cascade": "models", "assemble_cascade": "models",
    "generate_images": "pipelines", "sdedit_images": "pipelines", "save_generated": "pipelines",
    "super_resolve": "pipelines",
    "load_config": "train.config", "TrainConfig": "train.config", "PRESETS": "train.config",
    "load_dataset": "data", "scan_dataset": "data", "load_image": "data", "DataError": "data",
})
__all__ = sorted([*_lazy, "bundled_model_path", "bundled_classifier_path", "bundled_baseline_path"])

_MODELS = Path(__file__).resolve().parent.parent / "data" / "models"


def bundled_model_path() -> Path:
    """The base stage shipped in the repository's data/ folder."""
    return _MODELS / "cpu-32"


def bundled_classifier_path() -> Path:
    """The base stage the classification commands use by default: the bundled model fine-tuned for other labs'
    stains and scopes (data/models/cpu-32-lab; docs/real-images.md), else the bundled base stage."""
    lab = _MODELS / "cpu-32-lab"
    return lab if (lab / "cytomodel.json").is_file() else bundled_model_path()


def bundled_baseline_path() -> Path:
    """The baseline CNN shipped in the repository's data/ folder."""
    return _MODELS / "baseline-32"
