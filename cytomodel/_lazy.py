"""Packages that export their public names lazily, as diffusers' do: ``from cytomodel.classify import
ClassifierConfig`` loads ``classify/config.py`` only, so a light module (a config, triage, the metrics, the command
line's parser) never pulls in torch through its package."""
from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], list[str]]:
    """``(__getattr__, __all__)`` for ``package``, whose name ``n`` lives in its module ``exports[n]``."""
    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__, sorted(exports)
