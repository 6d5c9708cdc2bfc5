"""The tidy response table: column names, codes and validation.

This module is the single source of truth for the study export → analysis contract documented in
``docs/tidy-responses.md``: an export is two tables keyed by ``stimulus_id`` — ``responses`` (one row per answer,
:data:`RESPONSE_COLUMNS`) and ``stimuli`` (one row per stimulus, :data:`STIMULUS_TABLE_COLUMNS`) — and
:func:`load_export_tables` is the one place that reads them and joins them into the table the checks and the
analysis read (a single joined table made elsewhere, or by an older export, is read as it is). ``study_app``
imports the constants from here; ``analysis`` validates every input with
:func:`cytocore.validation.validate_responses` before any model is built, so bad input produces a clear
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
    "RAW_CONFIDENCE_COLUMNS",
    "REQUIRED_COLUMNS",
    "RESPONSE_COLUMNS",
    "SOURCES",
    "STIMULUS_COLUMNS",
    "STIMULUS_TABLE_COLUMNS",
    "Exclusion",
    "ResponseDataError",
    "ValidationReport",
    "data_hash",
    "join_stimuli",
    "load_export_tables",
    "load_responses",
    "model_prob_columns",
    "require_known_stimuli",
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
#: the raw confidence a table made elsewhere (or an older export) may carry beside the levels; ``cytostudy export``
#: records the level alone and states its scale in the provenance (``confidence_scale``), so nothing is guessed
RAW_CONFIDENCE_COLUMNS: tuple[str, str] = ("auth_confidence", "class_confidence")
REQUIRED_COLUMNS: tuple[str, ...] = tuple(c for c in COLUMN_TYPES if c not in RAW_CONFIDENCE_COLUMNS)

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
#: the stimulus table of an export: one row per stimulus (plus its ``model_prob_<class>`` columns, an optional
#: ``role`` — main / practice / attention / example; without it every stimulus counts as main — and any further
#: stimulus-level field of the study's manifest)
STIMULUS_TABLE_COLUMNS: tuple[str, ...] = ("stimulus_id",) + STIMULUS_COLUMNS
#: the responses table of an export: the answers, keyed to the stimulus table by ``stimulus_id``
RESPONSE_COLUMNS: tuple[str, ...] = tuple(c for c in REQUIRED_COLUMNS if c not in STIMULUS_COLUMNS)
#: the stimuli of a study's main part (the ones its model-side analyses describe), by the stimulus table's ``role``
MAIN_ROLE = "main"


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
    stimuli: pd.DataFrame | None = None   # the export's stimulus table (main stimuli, checked), when it has one

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

    def model_rows(self) -> pd.DataFrame:
        """What the model-side analyses read. With a stimulus table: every main stimulus of the study, answered or
        not (after the stated class and missing-output exclusions), the answered ones in the order
        :meth:`for_task` ("model") first shows them, then the others by id — so an export whose every stimulus was
        answered gives the model the same table as before. Without one: the rows of :meth:`for_task` ("model")."""
        rows = self.for_task("model")
        if self.stimuli is None:
            return rows
        st = self.stimuli
        bad_classes = self.excluded_ids("class", "classification")
        if bad_classes:
            st = st[~st["true_class"].isin(bad_classes)]
        st = st[st[["model_pred_class", "model_confidence", "model_margin"]].notna().all(axis=1)]
        first = {sid: i for i, sid in enumerate(dict.fromkeys(rows["stimulus_id"]))}
        order = st["stimulus_id"].map(first).fillna(len(first)).to_numpy()
        return st.assign(_order=order).sort_values(["_order", "stimulus_id"], kind="stable").drop(
            columns="_order").reset_index(drop=True)

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


def _read_table(path: Path, what: str) -> pd.DataFrame:
    """One table from ``.csv`` or ``.parquet`` (``.pq``), ids read as text."""
    if not path.exists():
        raise ResponseDataError(f"{what} file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        df = pd.read_parquet(path)
    elif suffix == ".csv":
        df = pd.read_csv(path, dtype={"participant_id": str, "stimulus_id": str, "study_id": str})
    else:
        raise ResponseDataError(f"{path}: unsupported file type {suffix!r}; give a .csv or .parquet file")
    return df


def require_known_stimuli(stimulus_ids: pd.Series, stimuli: pd.DataFrame, responses_name: str,
                          stimuli_name: str) -> None:
    """Every answered stimulus must be in the stimulus table, once: else the two tables are not one export."""
    missing = [c for c in STIMULUS_TABLE_COLUMNS if c not in stimuli.columns]
    if missing:
        raise ResponseDataError(
            f"the stimulus table {stimuli_name} lacks column(s) {missing}: it needs the columns of "
            "cytocore.schema.STIMULUS_TABLE_COLUMNS (docs/tidy-responses.md); re-export the study (cytostudy export).")
    dup = stimuli["stimulus_id"][stimuli["stimulus_id"].duplicated()]
    if len(dup):
        raise ResponseDataError(
            f"the stimulus table {stimuli_name} lists {dup.nunique()} stimulus id(s) more than once, e.g. "
            f"{dup.iloc[0]!r}: it must have one row per stimulus; re-export the study (cytostudy export).")
    unknown = sorted(set(stimulus_ids.dropna().astype(str)) - set(stimuli["stimulus_id"].astype(str)))
    if unknown:
        shown = ", ".join(map(repr, unknown[:8])) + (" …" if len(unknown) > 8 else "")
        raise ResponseDataError(
            f"{len(unknown)} stimulus id(s) answered in {responses_name} are not in the stimulus table "
            f"{stimuli_name}: {shown}. The two tables must come from one export: put that export's stimulus table "
            "beside the responses (or export the study again: cytostudy export).")


def join_stimuli(responses: pd.DataFrame, stimuli: pd.DataFrame, responses_name: str = "the responses",
                 stimuli_name: str = "the stimulus table") -> pd.DataFrame:
    """The responses with their stimulus's properties and model judgements (the one joined table the checks and the
    per-answer analyses read); the names say which files a :class:`ResponseDataError` is about."""
    require_known_stimuli(responses["stimulus_id"], stimuli, responses_name, stimuli_name)
    copies = [c for c in (*STIMULUS_COLUMNS, *model_prob_columns(responses)) if c in responses.columns]
    if copies:
        raise ResponseDataError(
            f"{responses_name} already carries stimulus column(s) {copies} and a stimulus table {stimuli_name} lies "
            "beside it: give either one joined table (move the stimulus table away) or the two tables of an export.")
    keep = ["stimulus_id", *STIMULUS_COLUMNS, *model_prob_columns(stimuli)]
    joined = responses.merge(stimuli[keep], on="stimulus_id", how="left", validate="many_to_one")
    first = [c for c in COLUMN_TYPES if c in joined.columns]
    joined = joined[first + [c for c in joined.columns if c not in first]]
    joined.attrs = dict(responses.attrs)
    return joined


def load_export_tables(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """(the joined response table, the stimulus table or None) of ``path``: an export folder, its responses file
    (``.csv`` / ``.parquet``, its stimulus table found beside it by :func:`cytocore.study_files.stimuli_table_for`),
    or a single joined table made elsewhere (or by an older export), read as it is."""
    from .study_files import export_file, stimuli_table_for

    path = export_file(path)
    df = _read_table(path, "response")
    stim_path = stimuli_table_for(path)
    stimuli = None
    if stim_path.is_file():
        stimuli = _read_table(stim_path, "stimulus")
        df = join_stimuli(df, stimuli, str(path), str(stim_path))
    if "responded_at" in df.columns:
        df["responded_at"] = pd.to_datetime(df["responded_at"], utc=True, errors="coerce")
    return df, stimuli


def load_responses(path: str | Path) -> pd.DataFrame:
    """The tidy response table at ``path`` (joined with its stimulus table when it is an export's; see
    :func:`load_export_tables`)."""
    return load_export_tables(path)[0]
