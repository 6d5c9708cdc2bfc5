"""The participant's session as plain Python: the Streamlit pages and the simulated raters both call
:class:`StudyService`, so there is exactly one code path from an answer to the database.

Access is by a secret token (only its sha256 is stored); every call checks that the trial belongs to the token's
participant. The rules for joining are in :mod:`.joining`, for trials and answers in :mod:`.trials`, for the
admin page in :mod:`.monitoring`, for the tab that shows a trial in :mod:`.presenting`.
"""
from __future__ import annotations

import io
import json
from functools import lru_cache
from pathlib import Path

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cytocore.study_files import MANIFEST_FILE, STUDY_FILE

from ..study import Study, load_study, read_manifest
from ..storage import (DEFAULT_RETRY_SECONDS, Database, ManifestVersion, StudyRow, describe_url, resolve_db_url)
from .errors import AccessDenied, NotLoaded, StudyMismatch, Superseded, TooFast  # noqa: F401 - re-exported
from .joining import Invite, Joining, hash_token  # noqa: F401 - re-exported
from .monitoring import Monitoring
from .trials import CANNOT_TELL, ParticipantState, SubmitResult, Trials, TrialView  # noqa: F401 - re-exported


class StudyService(Joining, Trials, Monitoring):
    """One study folder on one database. ``check_version=False`` (export, status) opens a database whose study
    was registered from another build of the folder, and reads the manifest that database's answers were given
    with (kept in ``manifest_versions``); serving participants always requires the same build."""

    def __init__(self, study_dir: str | Path, db_url: str | None = None, retry_seconds: float = DEFAULT_RETRY_SECONDS,
                 check_version: bool = True):
        self.study: Study = load_study(study_dir)
        self.cfg = self.study.config
        self.K = self.cfg.confidence.levels
        self.db = Database(resolve_db_url(study_dir, db_url), retry_seconds=retry_seconds)
        self.db.ensure_schema()
        self.version_note = ""
        self._register_study(check_version)

    @property
    def classes(self) -> list[str]:
        return self.study.classes

    def _register_study(self, check_version: bool) -> None:
        folder = self.study

        def go(s: Session):
            row = s.get(StudyRow, self.cfg.id)
            if row is None:
                s.add(StudyRow(id=self.cfg.id, title=self.cfg.title, config_hash=folder.meta["config_hash"],
                               content_hash=folder.content_hash))
                s.flush()
            elif row.content_hash != folder.content_hash:
                return row.content_hash
            if s.get(ManifestVersion, (self.cfg.id, folder.content_hash)) is None:
                s.add(ManifestVersion(study_id=self.cfg.id, content_hash=folder.content_hash,
                                      manifest_csv=(folder.path / MANIFEST_FILE).read_text(),
                                      study_json=(folder.path / STUDY_FILE).read_text()))
            return None
        try:
            registered = self.db.write(go)
        except IntegrityError:  # another process registered it at the same moment
            registered = self.db.write(go)
        if registered is not None:
            self._use_registered_version(registered, check_version)

    def _use_registered_version(self, content_hash: str, check_version: bool) -> None:
        where = describe_url(self.db.url)
        if check_version:
            raise StudyMismatch(
                f"the database {where} already holds study {self.cfg.id!r} built from other stimuli or config "
                f"(content hash {content_hash[:12]}; this folder: {self.study.content_hash[:12]}). Its answers "
                "keep their own manifest in the database: `cytostudy export` and `status` still read them. To "
                "serve the rebuilt folder use a new database or a new study id")
        mv = self.db.read(lambda s: s.get(ManifestVersion, (self.cfg.id, content_hash)))
        if mv is None:
            raise StudyMismatch(f"the database {where} holds study {self.cfg.id!r} as content {content_hash[:12]} "
                                "but not its manifest (written before manifest versions were kept); restore the "
                                f"folder of that build (look in {self.study.path / 'manifests'})")
        folder_hash = self.study.content_hash
        self.study = Study(self.study.path, self.cfg, read_manifest(io.StringIO(mv.manifest_csv)),
                           json.loads(mv.study_json))
        self.version_note = (f"answers read with the manifest of build {content_hash[:12]} kept in the database "
                             f"(the folder now holds build {folder_hash[:12]})")

    # ------------------------------------------------------------------ stimuli
    def image_bytes(self, stimulus_id: str) -> bytes:
        return _read_bytes(str(self.study.image_path(stimulus_id)))

    def examples(self) -> list[tuple[str, Path]]:
        m = self.study.manifest
        ex = m[m["role"] == "example"].sort_values(["true_class", "stimulus_id"])
        return [(r.true_class, self.study.path / r.file) for r in ex.itertuples()]

    def close(self) -> None:
        self.db.dispose()


@lru_cache(maxsize=512)
def _read_bytes(path: str) -> bytes:
    return Path(path).read_bytes()
