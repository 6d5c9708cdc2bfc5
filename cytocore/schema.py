"""The tidy response table: column names, codes and validation.

This module is the single source of truth for the study export → analysis contract documented in
``docs/tidy-responses.md``. ``study_app`` imports the constants from here; ``analysis`` validates every input
with :func:`validate_responses` before any model is built, so bad input produces a clear
:class:`ResponseDataError` (or a *stated* exclusion in the report), never a crash deep inside PyMC.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "AUTH_RESPONSES",
    "CANNOT_TELL",
    "COLUMN_TYPES",
    "MODEL_PROB_PREFIX",
    "PHASES",
    "REQUIRED_COLUMNS",
    "SOURCES",
    "Exclusion",
    "ResponseDataError",
    "ValidationReport",
    "data_hash",
    "load_responses",
    "model_prob_columns",
    "validate_responses",
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
    """Result of :func:`validate_responses`.

    ``data`` holds the rows the models use (phase ``main``, no attention checks) with every row kept;
    use :meth:`for_task` to get the rows for one analysis after the stated exclusions.
    """

    data: pd.DataFrame
    classes: tuple[str, ...]
    confidence_levels: int
    n_rows_input: int
    exclusions: list[Exclusion] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data_sha256: str = ""

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
        return tuple(sorted(self.data["participant_id"].unique()))

    def to_markdown(self) -> str:
        lines = [
            f"- input rows: {self.n_rows_input}; rows analysed (phase `main`, no attention checks): {len(self.data)}",
            f"- raters: {len(self.raters)}; classes: {', '.join(self.classes)}; confidence levels K = {self.confidence_levels}",
            f"- data SHA-256: `{self.data_sha256}`",
        ]
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
    """Read a tidy response table from ``.csv`` or ``.parquet`` (``.pq``)."""
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


def _fail(msg: str) -> None:
    raise ResponseDataError(msg)


def _examples(values: Iterable, n: int = 5) -> str:
    vals = list(dict.fromkeys(map(repr, values)))
    return ", ".join(vals[:n]) + (" …" if len(vals) > n else "")


def _check_codes(df: pd.DataFrame, col: str, allowed: Sequence[str], hint: str) -> None:
    bad = df.loc[~df[col].isin(allowed), col]
    if len(bad):
        _fail(f"column '{col}' has {len(bad)} value(s) outside {list(allowed)}: {_examples(bad)} "
              f"(first at row {bad.index[0]}). {hint}")


def _as_bool(s: pd.Series, col: str) -> pd.Series:
    if s.dtype == bool:
        return s
    mapping = {"true": True, "false": False, "1": True, "0": False, "t": True, "f": False, "yes": True, "no": False}
    out = s.map(lambda v: v if isinstance(v, (bool, np.bool_)) else mapping.get(str(v).strip().lower()))
    if out.isna().any():
        _fail(f"column '{col}' must be boolean; got {_examples(s[out.isna()])}. Use true/false.")
    return out.astype(bool)


def validate_responses(
    df: pd.DataFrame,
    classes: Sequence[str] | None = None,
    *,
    min_attention_accuracy: float | None = 0.5,
    prob_sum_tolerance: float = 0.02,
) -> ValidationReport:
    """Check a tidy response table and state what the analysis will leave out.

    Raises :class:`ResponseDataError` for problems the analysis cannot work around: missing columns, unknown
    response/source/phase codes, confidence levels outside ``1..K``, non-integer levels, morph strengths outside
    [0, 1], model probabilities outside [0, 1], duplicated (participant, trial) rows, no ``main`` rows.

    Returns a :class:`ValidationReport` whose ``exclusions`` list what is left out and why:

    * raters who gave the same authenticity answer on every main trial (no SDT estimate possible) — excluded
      from authenticity analyses; likewise identical class answers for classification;
    * raters failing attention checks (accuracy on attention-check trials below ``min_attention_accuracy``);
    * classes (of ``classes``) with no main-phase trials — dropped from classification analyses;
    * stimuli with missing model outputs — dropped from model-side analyses.

    ``classes`` defaults to the suffixes of the ``model_prob_<class>`` columns (or, without them, the sorted
    ``true_class`` values).
    """
    if not isinstance(df, pd.DataFrame):
        _fail(f"expected a pandas DataFrame, got {type(df).__name__}")
    n_in = len(df)
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        _fail(f"missing required column(s): {missing}. The table must have the columns listed in "
              "docs/tidy-responses.md (analysis.schema.REQUIRED_COLUMNS); re-export the study or add them.")
    if n_in == 0:
        _fail("the response table is empty")
    sha = data_hash(df)
    df = df.copy()
    for col, kind in COLUMN_TYPES.items():
        if col not in NULLABLE_COLUMNS and df[col].isna().any():
            rows = df.index[df[col].isna()]
            _fail(f"column '{col}' has {len(rows)} missing value(s) (first at row {rows[0]}); it may not be empty.")
        if kind == "str":
            df[col] = df[col].astype("object").where(df[col].notna(), None)
            df[col] = df[col].map(lambda v: None if v is None else str(v))
        elif kind in ("float", "int") and col not in ("block",):
            conv = pd.to_numeric(df[col], errors="coerce")
            bad = df[col].notna() & conv.isna()
            if bad.any():
                _fail(f"column '{col}' must be numeric; got {_examples(df.loc[bad, col])}.")
            df[col] = conv
        elif kind == "bool":
            df[col] = _as_bool(df[col], col)

    prob_cols = model_prob_columns(df)
    prob_classes = tuple(c[len(MODEL_PROB_PREFIX):] for c in prob_cols)
    if classes is None:
        classes = prob_classes if prob_classes else tuple(sorted(df["true_class"].dropna().unique()))
    classes = tuple(str(c) for c in classes)
    if len(classes) < 2:
        _fail(f"need at least two classes, got {list(classes)}")
    if CANNOT_TELL in classes:
        _fail(f"'{CANNOT_TELL}' is reserved for the 'cannot tell' answer and cannot be a class name")
    if prob_cols:
        missing_p = [f"{MODEL_PROB_PREFIX}{c}" for c in classes if c not in prob_classes]
        if missing_p:
            _fail(f"missing model probability column(s) {missing_p} for the given classes; "
                  f"found {prob_cols}. Pass the study's classes or export every model_prob_<class> column.")
        extra = [c for c in prob_classes if c not in classes]
        if extra:
            _fail(f"model_prob_ columns for classes not in the class list: {extra}; classes given: {list(classes)}")
    else:
        _fail("no model_prob_<class> columns: the table must carry the model's class probability for each class "
              "(docs/tidy-responses.md).")

    _check_codes(df, "phase", PHASES, "Use 'practice' or 'main'.")
    _check_codes(df, "source", SOURCES, "Use 'real' or 'synthetic'.")
    _check_codes(df, "auth_response", AUTH_RESPONSES,
                 "Authenticity answers must be 'real' or 'synthetic' (analysis.schema.AUTH_RESPONSES).")
    _check_codes(df, "true_class", classes, f"true_class must be one of the study's classes {list(classes)}.")
    _check_codes(df, "class_response", classes + (CANNOT_TELL,),
                 f"class answers must be one of {list(classes)} or '{CANNOT_TELL}'.")
    mp = df["model_pred_class"].dropna()
    if len(mp) and not mp.isin(classes).all():
        _check_codes(df.loc[mp.index], "model_pred_class", classes, "model_pred_class must be one of the classes.")

    # confidence scale
    K_vals = df["confidence_levels"].unique()
    if (df["confidence_levels"] != df["confidence_levels"].round()).any() or (df["confidence_levels"] < 2).any():
        _fail(f"column 'confidence_levels' must be an integer K >= 2; got {_examples(K_vals)}")
    if len(K_vals) > 1:
        _fail(f"column 'confidence_levels' must be the same for every row (one scale per study); got {sorted(K_vals)}. "
              "Analyse studies with different scales separately or recode to one K.")
    K = int(K_vals[0])
    for col in ("auth_confidence_level", "class_confidence_level"):
        v = df[col]
        bad = (v != v.round()) | (v < 1) | (v > K)
        if bad.any():
            _fail(f"column '{col}' has {int(bad.sum())} value(s) outside the confidence scale 1..{K}: "
                  f"{_examples(v[bad])} (first at row {v.index[bad][0]}). Levels are 1..confidence_levels.")
        df[col] = v.astype(int)
    df["confidence_levels"] = K
    df["trial_index"] = df["trial_index"].astype(int)

    ms = df["morph_strength"]
    if ((ms < 0) | (ms > 1)).any():
        _fail(f"column 'morph_strength' must lie in [0, 1]; got {_examples(ms[(ms < 0) | (ms > 1)])}")
    bad_real = (df["source"] == "real") & (ms != 0)
    if bad_real.any():
        _fail(f"{int(bad_real.sum())} row(s) with source 'real' have morph_strength != 0 (first at row "
              f"{df.index[bad_real][0]}); real images have morph_strength 0.")
    bad_syn = (df["source"] == "synthetic") & (ms <= 0)
    if bad_syn.any():
        _fail(f"{int(bad_syn.sum())} row(s) with source 'synthetic' have morph_strength 0 (first at row "
              f"{df.index[bad_syn][0]}); synthetic images and morphs have morph_strength in (0, 1].")
    for c in prob_cols:
        p = df[c]
        if ((p < 0) | (p > 1)).any():
            _fail(f"column '{c}' must be a probability in [0, 1]; got {_examples(p[(p < 0) | (p > 1)])}")
    notes: list[str] = []
    psum = df[[f"{MODEL_PROB_PREFIX}{c}" for c in classes]].sum(axis=1)
    off = df[[f"{MODEL_PROB_PREFIX}{c}" for c in classes]].notna().all(axis=1) & ((psum - 1).abs() > prob_sum_tolerance)
    if off.any():
        _fail(f"model class probabilities do not sum to 1 (±{prob_sum_tolerance}) on {int(off.sum())} row(s), "
              f"e.g. row {df.index[off][0]} sums to {psum[off].iloc[0]:.3f}; export the full softmax.")

    dup = df.duplicated(["participant_id", "phase", "trial_index"], keep=False)
    if dup.any():
        first = df.loc[dup, ["participant_id", "trial_index"]].iloc[0].tolist()
        _fail(f"{int(dup.sum())} duplicated (participant_id, phase, trial_index) rows, e.g. {first}; "
              "each response must appear once.")

    exclusions: list[Exclusion] = []
    n_practice = int((df["phase"] == "practice").sum())
    if n_practice:
        notes.append(f"{n_practice} practice-phase rows are not analysed (by design).")
    main = df[df["phase"] == "main"]
    if main.empty:
        _fail("no rows with phase 'main'; nothing to analyse.")

    # attention checks
    att = main[main["is_attention_check"]]
    if len(att):
        notes.append(f"{len(att)} attention-check rows are used only for the exclusion rule, not in the models.")
        if min_attention_accuracy is not None:
            acc = (att["auth_response"] == att["source"]).groupby(att["participant_id"]).mean()
            failed = acc[acc < min_attention_accuracy]
            if len(failed):
                exclusions.append(Exclusion(
                    "rater", tuple(sorted(failed.index)), "all",
                    f"attention-check accuracy below {min_attention_accuracy:.2f} "
                    f"({', '.join(f'{k}: {v:.2f}' for k, v in failed.items())})",
                    int(main["participant_id"].isin(failed.index).sum())))
    data = main[~main["is_attention_check"]].copy()
    if data.empty:
        _fail("every main-phase row is an attention check; nothing to analyse.")

    # raters with identical answers
    g = data.groupby("participant_id")
    same_auth = g["auth_response"].nunique()
    same_auth = sorted(same_auth[same_auth < 2].index)
    if same_auth:
        answers = data[data["participant_id"].isin(same_auth)].groupby("participant_id")["auth_response"].first()
        exclusions.append(Exclusion(
            "rater", tuple(same_auth), "authenticity",
            "gave the same authenticity answer on every trial (" +
            ", ".join(f"{k}: always '{v}'" for k, v in answers.items()) + "); d′ and criterion are not estimable",
            int(data["participant_id"].isin(same_auth).sum())))
    same_cls = g["class_response"].nunique()
    same_cls = sorted(same_cls[same_cls < 2].index)
    if same_cls:
        exclusions.append(Exclusion(
            "rater", tuple(same_cls), "classification",
            "gave the same class answer on every trial (no discrimination between classes)",
            int(data["participant_id"].isin(same_cls).sum())))
    for col, scope in (("auth_confidence_level", "authenticity"), ("class_confidence_level", "classification")):
        nconf = g[col].nunique()
        flat = sorted(nconf[nconf < 2].index)
        if flat:
            notes.append(f"rater(s) {', '.join(flat)} used a single {scope} confidence level on every trial; their "
                         "type-2 AUROC is 0.5 by construction and meta-d′ is driven by the prior.")

    # classes with no responses
    present = set(data["true_class"].unique())
    empty = [c for c in classes if c not in present]
    if empty:
        exclusions.append(Exclusion(
            "class", tuple(empty), "classification",
            "no main-phase trials show this class, so its accuracy and confusion row are undefined", 0))
    n_ct = int((data["class_response"] == CANNOT_TELL).sum())
    if n_ct:
        notes.append(f"{n_ct} class answers were '{CANNOT_TELL}'; they count as incorrect for class accuracy "
                     "and are a separate column in confusion matrices.")
    miss_model = data[["model_pred_class", "model_confidence", "model_margin"]].isna().any(axis=1)
    if miss_model.any():
        stim = tuple(sorted(data.loc[miss_model, "stimulus_id"].unique()))
        exclusions.append(Exclusion("stimulus", stim, "model", "missing model outputs", int(miss_model.sum())))
    for pid, n in g.size().items():
        if n < 20:
            notes.append(f"rater {pid} has only {n} analysed trials; estimates lean on the group prior.")

    rep = ValidationReport(data=data.reset_index(drop=True), classes=classes, confidence_levels=K,
                           n_rows_input=n_in, exclusions=exclusions, notes=notes)
    rep.data_sha256 = sha
    # nothing left for a task is an error rather than a crash later
    if rep.for_task("authenticity").empty:
        _fail("after the stated exclusions no rater is left for the authenticity analysis: "
              + "; ".join(e.describe() for e in exclusions))
    return rep
