"""A built study folder, as the server, the export and the audit read it (no model needed); its file names are
:mod:`cytocore.study_files`'."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from cytocore.study_files import AUDIT_FILE, CONFIG_FILE, MANIFEST_FILE, STUDY_FILE

from .config import StudyConfig, load_study_config


@dataclass
class Study:
    """A built study folder, loaded: config, manifest (indexed by stimulus id), classes, metadata."""
    path: Path
    config: StudyConfig
    manifest: pd.DataFrame
    meta: dict[str, Any]

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def content_hash(self) -> str:
        return str(self.meta["content_hash"])

    def stimulus(self, stimulus_id: str) -> dict[str, Any]:
        return self.manifest.loc[stimulus_id].to_dict() | {"stimulus_id": stimulus_id}

    def image_path(self, stimulus_id: str) -> Path:
        return self.path / self.manifest.at[stimulus_id, "file"]


def read_manifest(source) -> pd.DataFrame:
    """manifest.csv (a path or a text buffer) indexed by stimulus id."""
    manifest = pd.read_csv(source, dtype={"stimulus_id": str, "model_pred_class": object})
    manifest = manifest.set_index("stimulus_id", drop=False)
    manifest.index.name = None
    return manifest


def load_study(path: str | Path) -> Study:
    path = Path(path)
    if not (path / STUDY_FILE).is_file():
        hint = f" (its leak audit failed: see {AUDIT_FILE})" if (path / AUDIT_FILE).is_file() else ""
        raise FileNotFoundError(f"{path} is not a built study (no {STUDY_FILE}){hint}; "
                                "build one with `cytostudy build`")
    meta = json.loads((path / STUDY_FILE).read_text())
    cfg = load_study_config(path / CONFIG_FILE)
    return Study(path, cfg, read_manifest(path / MANIFEST_FILE), meta)


def audit_population(manifest: pd.DataFrame) -> pd.DataFrame:
    """The stimuli whose source a participant must not be able to infer: all but the example cells, which the
    instructions show labelled as real."""
    return manifest[manifest["role"] != "example"].reset_index(drop=True)
