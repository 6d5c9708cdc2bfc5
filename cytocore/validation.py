"""Validating a tidy response table: the checks of :mod:`cytocore.schema_checks` run in order on a table of the
columns of :mod:`cytocore.schema` (``docs/tidy-responses.md``)."""
from __future__ import annotations

from typing import Sequence

import pandas as pd

from .schema import ValidationReport
from .schema_checks import CHECKS, EXCLUSION_RULES, FINAL_CHECKS, TableUnderCheck

__all__ = ["validate_responses"]


def validate_responses(
    df: pd.DataFrame,
    classes: Sequence[str] | None = None,
    *,
    min_attention_accuracy: float | None = 0.5,
    prob_sum_tolerance: float = 0.02,
    stimuli: pd.DataFrame | None = None,
) -> ValidationReport:
    """Check a tidy response table and state what the analysis will leave out.

    Raises :class:`ResponseDataError` for problems the analysis cannot work around: missing columns, unknown
    response/source/phase codes, confidence levels outside ``1..K``, non-integer levels, morph strengths outside
    [0, 1], model probabilities outside [0, 1], duplicated (participant, trial) rows, no ``main`` rows, rows of
    more than one study, a stimulus whose properties differ between rows (a table edited by hand or mixing
    study versions); with ``stimuli`` (an export's stimulus table, ``df`` being the responses joined with it by
    :func:`cytocore.schema.load_export_tables`), an answered stimulus missing from it, or a main stimulus whose
    source, class, morph strength or model probabilities are invalid — the report's ``stimuli`` are then what the
    model-side analyses read (every main stimulus, answered or not).

    Returns a :class:`ValidationReport` whose ``exclusions`` list what is left out and why:

    * raters who gave the same authenticity answer on every main trial (no SDT estimate possible) — excluded
      from authenticity analyses; likewise identical class answers for classification;
    * raters failing attention checks (accuracy on attention-check trials below ``min_attention_accuracy``);
    * classes (of ``classes``) with no main-phase trials — dropped from classification analyses;
    * stimuli with missing model outputs — dropped from model-side analyses.

    ``classes`` defaults to the suffixes of the ``model_prob_<class>`` columns (or, without them, the sorted
    ``true_class`` values). The checks run in the order of :data:`cytocore.schema_checks.CHECKS`, the exclusion
    rules in that of :data:`cytocore.schema_checks.EXCLUSION_RULES`.
    """
    t = TableUnderCheck(df, classes, min_attention_accuracy=min_attention_accuracy,
                        prob_sum_tolerance=prob_sum_tolerance, stimuli=stimuli)
    for check in CHECKS:
        check(t)
    for rule in EXCLUSION_RULES:
        rule(t)
    rep = ValidationReport(data=t.data.reset_index(drop=True), classes=t.classes, confidence_levels=t.K,
                           n_rows_input=t.n_in, exclusions=t.exclusions, notes=t.notes, data_sha256=t.sha,
                           has_human_answers=t.has_answers, study_id=t.study_id, stimuli=t.stimuli)
    for check in FINAL_CHECKS:
        check(rep)
    return rep
