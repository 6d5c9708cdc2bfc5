"""cytomodel: a class-conditional diffusion model of blood cells that generates, classifies and explains.

Public API (imported lazily so that ``cytomodel.provenance`` stays light)::

    load_model, CytoModel, load_config, TrainConfig, load_dataset, scan_dataset, train,
    generate_images, sdedit_images, load_generator (a cascade or a base stage), Cascade, assemble_cascade
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "load_model": "model", "CytoModel": "model", "bundled_model_path": "model",
    "load_config": "config", "TrainConfig": "config", "PRESETS": "config",
    "load_dataset": "data", "scan_dataset": "data", "load_image": "data", "DataError": "data",
    "train": "training",
    "Cascade": "cascade", "load_generator": "cascade", "load_base": "cascade", "assemble_cascade": "cascade",
    "SuperResModel": "superres", "super_resolve": "superres",
    "generate_images": "generation", "sdedit_images": "generation", "save_generated": "generation",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'cytomodel' has no attribute {name!r}")
