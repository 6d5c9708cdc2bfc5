"""The tidy response table: column names, codes and validation.

This module is the single source of truth for the study export → analysis contract documented in
``docs/tidy-responses.md``. ``study_app`` imports the constants from here; ``analysis`` validates every input
with :func:`cytocore.validation.validate_responses` before any model is built, so bad input produces a clear
:class:`ResponseDataError` (or a *stated* exclusion in the report), never a crash deep inside PyMC.
The checks themselves, one function each with its own message, are listed in :mod:`cytocore.schema_checks`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

__all__ = [
    "ANSWER_COLUMNS",
    "AUTH_RESPONSES",
    "CANNOT_TELL",
    "COLUMN_TYPES",
    "MANIFEST_MODEL_COLUMNS",
    "MODEL_COLUMNS",
    "MODEL_PROB_PREFIX",
    "PHASES",
    "REQUIRED_COLUMNS",
    "SOURCES",
    "STIMULUS_COLUMNS",
    "Exclusion",
    "ResponseDataError",
    "ValidationReport",
    "data_hash",
    "load_responses",
    "model_prob_columns",
]

AUTH_RESPONSES: tuple[str, str] = ("real", "synthetic")
SOURCES: tuple[str, str] = ("real", "synthetic")
CANNOT_TELL = "cannot_tell"
PHASES: tuple[str, str] = ("practice", "main")
MODEL_PROB_PREFIX = "model_prob_"
ROLES: tuple[str, ...] = ("haematologist", "trainee", "biomedical_scientist", "other", "bot")

#: column -> kind ("str", "float", "int", "bool", "datetime"); ``model_prob_<class>`` columns are dynamic.
COLUMN_TYPES: dict[str, str] = {
    "study_id": "str",
    "participant_id": "str",
    "participant_role": "str",
    "years_experience": "float",
    "trial_index": "int",
    "block": "int",
    "phase": "str",
    "is_attention_check": "bool",
    "stimulus_id": "str",
    "source": "str",
    "morph_strength": "float",
    "true_class": "str",
    "auth_response": "str",
    "auth_confidence": "float",
    "auth_confidence_level": "int",
    "class_response": "str",
    "class_confidence": "float",
    "class_confidence_level": "int",
    "confidence_levels": "int",
    "auth_rt_ms": "float",
    "class_rt_ms": "float",
    "responded_at": "datetime",
    "model_pred_class": "str",
    "model_confidence": "float",
    "model_margin": "float",
    "model_anomaly": "float",
}
REQUIRED_COLUMNS: tuple[str, ...] = tuple(COLUMN_TYPES)

#: columns that may contain missing values without being an error (a missing model output just removes that
#: stimulus from the model-side analyses, and the report says so).
NULLABLE_COLUMNS = frozenset(
    {"years_experience", "auth_rt_ms", "class_rt_ms", "responded_at", "auth_confidence", "class_confidence",
     "model_pred_class", "model_confidence", "model_margin", "model_anomaly", "participant_role", "block"}
)
#: the human answers; a table in which all of them are empty on every row is a *model-only* table (the model's
#: outputs on the stimuli, no human answers yet): the model-side analyses run, the human ones are skipped.
ANSWER_COLUMNS: tuple[str, ...] = ("auth_response", "auth_confidence_level", "class_response",
                                   "class_confidence_level")
#: the model's judgement of a stimulus as the study build records it in ``manifest.csv`` (plus its
#: ``model_prob_<class>`` columns)
MANIFEST_MODEL_COLUMNS: tuple[str, ...] = ("model_pred_class", "model_runner_up", "model_confidence",
                                           "model_entropy", "model_margin", "model_anomaly", "model_unet_calls")
#: those of them the response table carries (plus the ``model_prob_<class>`` columns)
MODEL_COLUMNS: tuple[str, ...] = tuple(c for c in MANIFEST_MODEL_COLUMNS
                                       if c not in ("model_runner_up", "model_entropy", "model_unet_calls"))
#: properties of a stimulus: the same on every row that shows it (else the table was edited or mixes studies)
STIMULUS_COLUMNS: tuple[str, ...] = ("source", "morph_strength", "true_class") + MODEL_COLUMNS


class ResponseDataError(ValueError):
    """The response table cannot be analysed as it is; the message says which column/value and what to do."""


@dataclass(frozen=True)
class Exclusion:
    """Something left out of (part of) the analysis, with the reason — reported, never silent."""

    what: str          # "rater", "class", "rows", "stimulus"
    ids: tuple[str, ...]
    scope: str         # "all", "authenticity", "classification", "model", "metacognition"
    reason: str
    n_rows: int = 0

    def describe(self) -> str:
        ids = ", ".join(map(str, self.ids[:12])) + (" …" if len(self.ids) > 12 else "")
        return f"{self.what} [{ids}] excluded from {self.scope} analyses ({self.n_rows} rows): {self.reason}"


@dataclass
class ValidationReport:
    """Result of :func:`cytocore.validation.validate_responses`.

    ``data`` holds the rows the models use (phase ``main``, no attention checks) with every row kept;
    use :meth:`for_task` to get the rows for one analysis after the stated exclusions.
    ``has_human_answers`` is False for a model-only table; ``study_id`` is the one study the rows come from.
    """

    data: pd.DataFrame
    classes: tuple[str, ...]
    confidence_levels: int
    n_rows_input: int
    exclusions: list[Exclusion] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data_sha256: str = ""
    has_human_answers: bool = True
    study_id: str | None = None

    def excluded_ids(self, what: str, scope: str) -> set[str]:
        out: set[str] = set()
        for e in self.exclusions:
            if e.what == what and e.scope in (scope, "all"):
                out.update(e.ids)
        return out

    def for_task(self, task: str) -> pd.DataFrame:
        """Rows for ``task`` in {"authenticity", "classification", "model"} after the stated exclusions."""
        if task not in ("authenticity", "classification", "model"):
            raise ValueError(f"unknown task {task!r}")
        df = self.data
        if task != "model" and not self.has_human_answers:
            return df.iloc[:0]
        bad_raters = self.excluded_ids("rater", task)
        if bad_raters:
            df = df[~df["participant_id"].isin(bad_raters)]
        if task in ("classification", "model"):
            bad_classes = self.excluded_ids("class", "classification")
            if bad_classes:
                df = df[~df["true_class"].isin(bad_classes)]
        if task == "model":
            df = df[df[["model_pred_class", "model_confidence", "model_margin"]].notna().all(axis=1)]
        return df

    @property
    def raters(self) -> tuple[str, ...]:
        if not self.has_human_answers:
            return ()
        return tuple(sorted(self.data["participant_id"].unique()))

    def to_markdown(self) -> str:
        lines = [
            f"- input rows: {self.n_rows_input}; rows analysed (phase `main`, no attention checks): {len(self.data)}",
            f"- raters: {len(self.raters)}; classes: {', '.join(self.classes)}; confidence levels K = {self.confidence_levels}",
            f"- data SHA-256: `{self.data_sha256}`",
        ]
        if self.study_id is not None:
            lines.insert(0, f"- study: `{self.study_id}`")
        if self.exclusions:
            lines.append("- **exclusions:**")
            lines += [f"  - {e.describe()}" for e in self.exclusions]
        else:
            lines.append("- exclusions: none")
        lines += [f"- note: {n}" for n in self.notes]
        return "\n".join(lines)


def model_prob_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if str(c).startswith(MODEL_PROB_PREFIX)]


def data_hash(df: pd.DataFrame) -> str:
    """SHA-256 of the table's content (row order and column order as given)."""
    h = hashlib.sha256()
    h.update(",".join(map(str, df.columns)).encode())
    h.update(pd.util.hash_pandas_object(df.astype("object").where(df.notna(), None).astype(str),
                                        index=False).values.tobytes())
    return h.hexdigest()


def load_responses(path: str | Path) -> pd.DataFrame:
    """Read a tidy response table from ``.csv`` or ``.parquet`` (``.pq``); a Parquet file's ``attrs`` (what the
    export records about the study, see :mod:`cytocore.lineage`) come with it."""
    path = Path(path)
    if not path.exists():
        raise ResponseDataError(f"response file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        df = pd.read_parquet(path)
    elif suffix == ".csv":
        df = pd.read_csv(path, dtype={"participant_id": str, "stimulus_id": str, "study_id": str})
    else:
        raise ResponseDataError(f"{path}: unsupported file type {suffix!r}; give a .csv or .parquet file")
    if "responded_at" in df.columns:
        df["responded_at"] = pd.to_datetime(df["responded_at"], utc=True, errors="coerce")
    return df
