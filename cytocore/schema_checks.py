"""The checks :func:`cytocore.validation.validate_responses` runs, in order, each with its own message.

A check either passes, normalises the table (types, codes) or raises :class:`ResponseDataError` saying which
column and rows are wrong and what to do. An exclusion rule adds a stated :class:`Exclusion` or note. Adding a
check is adding a function to :data:`CHECKS`.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from .schema import (ANSWER_COLUMNS, AUTH_RESPONSES, CANNOT_TELL, COLUMN_TYPES, MAIN_ROLE, MODEL_PROB_PREFIX,
                     NULLABLE_COLUMNS, PHASES, REQUIRED_COLUMNS, SOURCES, STIMULUS_COLUMNS, STIMULUS_TABLE_COLUMNS,
                     Exclusion, ResponseDataError, ValidationReport, data_hash, model_prob_columns,
                     require_known_stimuli)
from .study_files import METADATA_KEY

__all__ = ["CHECKS", "EXCLUSION_RULES", "FINAL_CHECKS", "TableUnderCheck"]


class TableUnderCheck:
    """The table while it is being checked: the frame (normalised step by step) and what the checks found."""

    def __init__(self, df, classes: Sequence[str] | None, *, min_attention_accuracy: float | None,
                 prob_sum_tolerance: float, stimuli: pd.DataFrame | None = None):
        self.df = df
        self.stimuli = stimuli    # the export's stimulus table (None: a single joined table)
        self.classes_arg = classes
        self.min_attention_accuracy = min_attention_accuracy
        self.prob_sum_tolerance = prob_sum_tolerance
        self.n_in = len(df) if isinstance(df, pd.DataFrame) else 0
        self.sha = ""
        self.has_answers = True
        self.classes: tuple[str, ...] = ()
        self.prob_cols: list[str] = []
        self.K = 0
        self.study_id: str | None = None
        self.data: pd.DataFrame = pd.DataFrame()   # main phase, no attention checks (set by select_main)
        self.main: pd.DataFrame = pd.DataFrame()
        self.exclusions: list[Exclusion] = []
        self.notes: list[str] = []


def _fail(msg: str) -> None:
    raise ResponseDataError(msg)


def _examples(values: Iterable, n: int = 5) -> str:
    vals = list(dict.fromkeys(map(repr, values)))
    return ", ".join(vals[:n]) + (" …" if len(vals) > n else "")


def _rows(index, n: int = 5) -> str:
    """Row numbers as a reader finds them (0-based, as pandas reads the file)."""
    idx = list(index)
    return ", ".join(map(str, idx[:n])) + (f" … ({len(idx)} rows)" if len(idx) > n else "")


# --------------------------------------------------------------------------------------------- structure
def check_is_frame(t: TableUnderCheck) -> None:
    if not isinstance(t.df, pd.DataFrame):
        _fail(f"expected a pandas DataFrame, got {type(t.df).__name__}")


def check_columns(t: TableUnderCheck) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in t.df.columns]
    if missing:
        _fail(f"missing required column(s): {missing}. The table must have the columns listed in "
              "docs/tidy-responses.md (cytocore.schema.REQUIRED_COLUMNS); re-export the study or add them.")


def check_not_empty(t: TableUnderCheck) -> None:
    if t.n_in == 0:
        _fail("the response table is empty")
    t.sha = data_hash(t.df)
    t.df = t.df.copy()


def detect_answers(t: TableUnderCheck) -> None:
    """A table whose answer columns are empty on every row holds only the model's outputs (no human answers)."""
    t.has_answers = not t.df[list(ANSWER_COLUMNS)].isna().all().all()
    if not t.has_answers:
        t.notes.append("no human answers in the table (model-only): only the model-side analyses can run.")


def check_missing_values(t: TableUnderCheck) -> None:
    for col in REQUIRED_COLUMNS:
        if col in NULLABLE_COLUMNS or (not t.has_answers and col in ANSWER_COLUMNS):
            continue
        if t.df[col].isna().any():
            rows = t.df.index[t.df[col].isna()]
            _fail(f"column '{col}' has {len(rows)} missing value(s) (first at row {rows[0]}); it may not be empty.")


def _as_bool(s: pd.Series, col: str) -> pd.Series:
    if s.dtype == bool:
        return s
    mapping = {"true": True, "false": False, "1": True, "0": False, "t": True, "f": False, "yes": True, "no": False}
    out = s.map(lambda v: v if isinstance(v, (bool, np.bool_)) else mapping.get(str(v).strip().lower()))
    if out.isna().any():
        _fail(f"column '{col}' must be boolean; got {_examples(s[out.isna()])}. Use true/false.")
    return out.astype(bool)


def _coerce(df: pd.DataFrame) -> None:
    """The columns of :data:`COLUMN_TYPES` that ``df`` has, as their kind (in place)."""
    for col, kind in COLUMN_TYPES.items():
        if col not in df.columns:
            continue
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


def coerce_types(t: TableUnderCheck) -> None:
    _coerce(t.df)


# --------------------------------------------------------------------------------------------- codes
def check_classes(t: TableUnderCheck) -> None:
    df = t.df
    t.prob_cols = model_prob_columns(df)
    prob_classes = tuple(c[len(MODEL_PROB_PREFIX):] for c in t.prob_cols)
    classes = t.classes_arg
    if classes is None:
        classes = prob_classes if prob_classes else tuple(sorted(df["true_class"].dropna().unique()))
    classes = tuple(str(c) for c in classes)
    if len(classes) < 2:
        _fail(f"need at least two classes, got {list(classes)}")
    if CANNOT_TELL in classes:
        _fail(f"'{CANNOT_TELL}' is reserved for the 'cannot tell' answer and cannot be a class name")
    if not t.prob_cols:
        _fail("no model_prob_<class> columns: the table must carry the model's class probability for each class "
              "(docs/tidy-responses.md).")
    missing_p = [f"{MODEL_PROB_PREFIX}{c}" for c in classes if c not in prob_classes]
    if missing_p:
        _fail(f"missing model probability column(s) {missing_p} for the given classes; "
              f"found {t.prob_cols}. Pass the study's classes or export every model_prob_<class> column.")
    extra = [c for c in prob_classes if c not in classes]
    if extra:
        _fail(f"model_prob_ columns for classes not in the class list: {extra}; classes given: {list(classes)}")
    t.classes = classes


def _check_codes(df: pd.DataFrame, col: str, allowed: Sequence[str], hint: str) -> None:
    bad = df.loc[~df[col].isin(allowed), col]
    if len(bad):
        _fail(f"column '{col}' has {len(bad)} value(s) outside {list(allowed)}: {_examples(bad)} "
              f"(first at row {bad.index[0]}). {hint}")


def _check_stimulus_codes(df: pd.DataFrame, classes: Sequence[str]) -> None:
    _check_codes(df, "source", SOURCES, "Use 'real' or 'synthetic'.")
    _check_codes(df, "true_class", classes, f"true_class must be one of the study's classes {list(classes)}.")
    mp = df["model_pred_class"].dropna()
    if len(mp) and not mp.isin(classes).all():
        _check_codes(df.loc[mp.index], "model_pred_class", classes, "model_pred_class must be one of the classes.")


def check_codes(t: TableUnderCheck) -> None:
    df, classes = t.df, t.classes
    _check_codes(df, "phase", PHASES, "Use 'practice' or 'main'.")
    if t.has_answers:
        _check_codes(df, "auth_response", AUTH_RESPONSES,
                     "Authenticity answers must be 'real' or 'synthetic' (cytocore.schema.AUTH_RESPONSES).")
    if t.has_answers:
        _check_codes(df, "class_response", classes + (CANNOT_TELL,),
                     f"class answers must be one of {list(classes)} or '{CANNOT_TELL}'.")
    _check_stimulus_codes(df, classes)


def check_confidence_scale(t: TableUnderCheck) -> None:
    df = t.df
    K_vals = df["confidence_levels"].unique()
    if (df["confidence_levels"] != df["confidence_levels"].round()).any() or (df["confidence_levels"] < 2).any():
        _fail(f"column 'confidence_levels' must be an integer K >= 2; got {_examples(K_vals)}")
    if len(K_vals) > 1:
        _fail(f"column 'confidence_levels' must be the same for every row (one scale per study); got {sorted(K_vals)}. "
              "Analyse studies with different scales separately or recode to one K.")
    K = int(K_vals[0])
    if t.has_answers:
        for col in ("auth_confidence_level", "class_confidence_level"):
            v = df[col]
            bad = (v != v.round()) | (v < 1) | (v > K)
            if bad.any():
                _fail(f"column '{col}' has {int(bad.sum())} value(s) outside the confidence scale 1..{K}: "
                      f"{_examples(v[bad])} (first at row {v.index[bad][0]}). Levels are 1..confidence_levels.")
            df[col] = v.astype(int)
    df["confidence_levels"] = K
    df["trial_index"] = df["trial_index"].astype(int)
    t.K = K


def check_morph_strength(t: TableUnderCheck) -> None:
    _check_morph_strength(t.df)


def _check_morph_strength(df: pd.DataFrame) -> None:
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


def check_probabilities(t: TableUnderCheck) -> None:
    _check_probabilities(t.df, t)


def _check_probabilities(df: pd.DataFrame, t: TableUnderCheck) -> None:
    for c in t.prob_cols:
        p = df[c]
        if ((p < 0) | (p > 1)).any():
            _fail(f"column '{c}' must be a probability in [0, 1]; got {_examples(p[(p < 0) | (p > 1)])}")
    cols = [f"{MODEL_PROB_PREFIX}{c}" for c in t.classes]
    psum = df[cols].sum(axis=1)
    off = df[cols].notna().all(axis=1) & ((psum - 1).abs() > t.prob_sum_tolerance)
    if off.any():
        _fail(f"model class probabilities do not sum to 1 (±{t.prob_sum_tolerance}) on {int(off.sum())} row(s), "
              f"e.g. row {df.index[off][0]} sums to {psum[off].iloc[0]:.3f}; export the full softmax.")


def check_duplicates(t: TableUnderCheck) -> None:
    dup = t.df.duplicated(["participant_id", "phase", "trial_index"], keep=False)
    if dup.any():
        first = t.df.loc[dup, ["participant_id", "trial_index"]].iloc[0].tolist()
        _fail(f"{int(dup.sum())} duplicated (participant_id, phase, trial_index) rows, e.g. {first}; "
              "each response must appear once.")


# --------------------------------------------------------------------------------------------- one study
def check_one_study(t: TableUnderCheck) -> None:
    """Rows of two studies (or two versions of one, when the export records its content hash per row) cannot be
    analysed together: their stimuli, designs and models differ."""
    df = t.df
    for col in ("study_id", "study_content_hash", "study_config_hash"):
        if col not in df.columns:
            continue
        vals = df[col].dropna().astype(str)
        counts = vals.value_counts()
        if len(counts) > 1:
            minority = vals[vals != counts.index[0]]
            _fail(f"column '{col}' has {len(counts)} different values ({_examples(counts.index)}): the rows come "
                  f"from more than one study version ({len(minority)} rows differ from the most common "
                  f"{counts.index[0]!r}, e.g. rows {_rows(minority.index)}). Export and analyse each study "
                  "version on its own (cytostudy export <study folder>), or drop the rows of the other version.")
    if len(df):
        t.study_id = str(df["study_id"].iloc[0])
    attrs = df.attrs.get(METADATA_KEY, {}) if isinstance(df.attrs.get(METADATA_KEY), dict) else {}
    claimed = attrs.get("study_id")
    if claimed is not None and t.study_id is not None and str(claimed) != t.study_id:
        _fail(f"the export's metadata says study {claimed!r} but column 'study_id' says {t.study_id!r}: the table "
              "was edited or assembled from another export. Re-export the study (cytostudy export).")


def check_stimulus_table(t: TableUnderCheck) -> None:
    """An export's stimulus table (two tables, not one joined table): every answered stimulus is in it, and its
    main stimuli — which the model-side analyses read whether answered or not — pass the per-stimulus checks."""
    if t.stimuli is None:
        return
    st = t.stimuli
    require_known_stimuli(t.df["stimulus_id"], st, "the responses", "the stimulus table")
    st = st.copy()
    _coerce(st)
    if "role" in st.columns:
        st = st[st["role"] == MAIN_ROLE]
    missing_p = [c for c in t.prob_cols if c not in st.columns]
    try:
        if missing_p:
            _fail(f"missing model probability column(s) {missing_p} (the responses' classes).")
        _check_stimulus_codes(st, t.classes)
        _check_morph_strength(st)
        _check_probabilities(st, t)
    except ResponseDataError as exc:
        raise ResponseDataError(f"the stimulus table: {exc} (columns {list(STIMULUS_TABLE_COLUMNS)}; "
                                "docs/tidy-responses.md)") from None
    t.stimuli = st.reset_index(drop=True)


def check_stimulus_consistency(t: TableUnderCheck) -> None:
    """Every row that shows a stimulus must agree on what it is (source, morph, class, the model's outputs) — in a
    single joined table; the two tables of an export hold each stimulus once (:func:`check_stimulus_table`)."""
    if t.stimuli is not None:
        return
    df = t.df
    for col in STIMULUS_COLUMNS + tuple(t.prob_cols):
        vals = df[col]
        key = vals.astype("object").where(vals.notna(), "<empty>").astype(str)
        n = key.groupby(df["stimulus_id"]).nunique()
        bad = n[n > 1]
        if len(bad):
            sid = bad.index[0]
            rows = df.index[df["stimulus_id"] == sid]
            _fail(f"column '{col}' differs between rows of the same stimulus for {len(bad)} stimulus id(s), e.g. "
                  f"{sid!r} has {_examples(key[rows])} (rows {_rows(rows)}). A stimulus has one {col}: the table "
                  "was edited by hand or mixes study versions — re-export it (cytostudy export) or correct the rows.")


# --------------------------------------------------------------------------------------------- rows analysed
def select_main(t: TableUnderCheck) -> None:
    df = t.df
    n_practice = int((df["phase"] == "practice").sum())
    if n_practice:
        t.notes.append(f"{n_practice} practice-phase rows are not analysed (by design).")
    t.main = df[df["phase"] == "main"]
    if t.main.empty:
        _fail("no rows with phase 'main'; nothing to analyse.")


def rule_attention_checks(t: TableUnderCheck) -> None:
    main = t.main
    att = main[main["is_attention_check"]]
    if len(att):
        t.notes.append(f"{len(att)} attention-check rows are used only for the exclusion rule, not in the models.")
        if t.min_attention_accuracy is not None and t.has_answers:
            acc = (att["auth_response"] == att["source"]).groupby(att["participant_id"]).mean()
            failed = acc[acc < t.min_attention_accuracy]
            if len(failed):
                t.exclusions.append(Exclusion(
                    "rater", tuple(sorted(failed.index)), "all",
                    f"attention-check accuracy below {t.min_attention_accuracy:.2f} "
                    f"({', '.join(f'{k}: {v:.2f}' for k, v in failed.items())})",
                    int(main["participant_id"].isin(failed.index).sum())))
    t.data = main[~main["is_attention_check"]].copy()
    if t.data.empty:
        _fail("every main-phase row is an attention check; nothing to analyse.")


def rule_identical_answers(t: TableUnderCheck) -> None:
    if not t.has_answers:
        return
    data = t.data
    g = data.groupby("participant_id")
    same_auth = g["auth_response"].nunique()
    same_auth = sorted(same_auth[same_auth < 2].index)
    if same_auth:
        answers = data[data["participant_id"].isin(same_auth)].groupby("participant_id")["auth_response"].first()
        t.exclusions.append(Exclusion(
            "rater", tuple(same_auth), "authenticity",
            "gave the same authenticity answer on every trial (" +
            ", ".join(f"{k}: always '{v}'" for k, v in answers.items()) + "); d′ and criterion are not estimable",
            int(data["participant_id"].isin(same_auth).sum())))
    same_cls = g["class_response"].nunique()
    same_cls = sorted(same_cls[same_cls < 2].index)
    if same_cls:
        t.exclusions.append(Exclusion(
            "rater", tuple(same_cls), "classification",
            "gave the same class answer on every trial (no discrimination between classes)",
            int(data["participant_id"].isin(same_cls).sum())))
    for col, scope in (("auth_confidence_level", "authenticity"), ("class_confidence_level", "classification")):
        nconf = g[col].nunique()
        flat = sorted(nconf[nconf < 2].index)
        if flat:
            t.notes.append(f"rater(s) {', '.join(flat)} used a single {scope} confidence level on every trial; their "
                           "type-2 AUROC is 0.5 by construction and meta-d′ is driven by the prior.")


def rule_empty_classes(t: TableUnderCheck) -> None:
    data = t.data
    present = set(data["true_class"].unique())
    empty = [c for c in t.classes if c not in present]
    if empty:
        t.exclusions.append(Exclusion(
            "class", tuple(empty), "classification",
            "no main-phase trials show this class, so its accuracy and confusion row are undefined", 0))
    n_ct = int((data["class_response"] == CANNOT_TELL).sum())
    if n_ct:
        t.notes.append(f"{n_ct} class answers were '{CANNOT_TELL}'; they count as incorrect for class accuracy "
                       "and are a separate column in confusion matrices.")


def rule_missing_model_outputs(t: TableUnderCheck) -> None:
    data, cols = t.data, ["model_pred_class", "model_confidence", "model_margin"]
    miss_model = data[cols].isna().any(axis=1)
    stim = set(data.loc[miss_model, "stimulus_id"])
    if t.stimuli is not None:   # every main stimulus enters the model side, answered or not
        stim |= set(t.stimuli.loc[t.stimuli[cols].isna().any(axis=1), "stimulus_id"])
    if stim:
        t.exclusions.append(Exclusion("stimulus", tuple(sorted(stim)), "model", "missing model outputs",
                                      int(miss_model.sum())))


def rule_few_trials(t: TableUnderCheck) -> None:
    if not t.has_answers:
        return
    for pid, n in t.data.groupby("participant_id").size().items():
        if n < 20:
            t.notes.append(f"rater {pid} has only {n} analysed trials; estimates lean on the group prior.")


def final_something_to_analyse(rep: ValidationReport) -> None:
    """Nothing left for a task is an error rather than a crash later (a model-only table has no human task)."""
    if rep.has_human_answers and rep.for_task("authenticity").empty:
        _fail("after the stated exclusions no rater is left for the authenticity analysis: "
              + "; ".join(e.describe() for e in rep.exclusions))


CHECKS: tuple[Callable[[TableUnderCheck], None], ...] = (
    check_is_frame, check_columns, check_not_empty, detect_answers, check_missing_values, coerce_types,
    check_classes, check_codes, check_confidence_scale, check_morph_strength, check_probabilities,
    check_duplicates, check_one_study, check_stimulus_table, check_stimulus_consistency, select_main,
)
EXCLUSION_RULES: tuple[Callable[[TableUnderCheck], None], ...] = (
    rule_attention_checks, rule_identical_answers, rule_empty_classes, rule_missing_model_outputs, rule_few_trials,
)
FINAL_CHECKS: tuple[Callable[[ValidationReport], None], ...] = (final_something_to_analyse,)
