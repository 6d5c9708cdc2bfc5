"""The classification table: what every classifier writes (``cytomodel classify``, ``cytomodel baseline predict``,
any future one), one row per image and the same column name for the same thing, so triage, evaluation and the
study build read one format::

    image, [label], pred_class, [runner_up], confidence, [...], prob_<class>…, [framing_*]

``image`` is the file (or ``<image k>``), ``label`` the data's own label when there is one, ``confidence`` the
top class probability and ``prob_<class>`` one probability per class; what one classifier adds (the diffusion
classifier's ``anomaly_score``, ``err_<class>``, ...) keeps its own name. A row without a prediction (an image that
could not be framed) has an empty ``pred_class``.

Tables written before the baseline used these names (``path``, ``predicted``, ``p_<class>``) are read with
:func:`with_current_names`, the one place the old names are mapped.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:   # the tables are pandas DataFrames; the names load without pandas (command-line parsers)
    import pandas as pd

IMAGE = "image"
LABEL = "label"
PRED_CLASS = "pred_class"
RUNNER_UP = "runner_up"
CONFIDENCE = "confidence"
PROB_PREFIX = "prob_"

#: the baseline's column names before the one schema -> the names of today
OLD_NAMES: dict[str, str] = {"path": IMAGE, "predicted": PRED_CLASS}
OLD_PROB_PREFIX = "p_"


def prob_column(class_name: str) -> str:
    """The probability column of a class: ``prob_<class>``."""
    return f"{PROB_PREFIX}{class_name}"


def prob_columns(table: pd.DataFrame) -> list[str]:
    """The ``prob_<class>`` columns of a classification table, in table order."""
    return [c for c in table.columns if str(c).startswith(PROB_PREFIX)]


def predictive_entropy(probs):
    """(N,) entropy (nats) of each row of (N, C) class probabilities: the classifier's own uncertainty, the anomaly
    score of a classifier that has no other (triage) and of a distilled student (``cytomodel distil``)."""
    import numpy as np

    p = np.asarray(probs, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)


def check_candidates(candidates, class_names) -> list[str]:
    """The candidate classes (``None``: every class), each one the classifier knows, else a ValueError naming them."""
    names = list(class_names) if candidates is None else list(candidates)
    unknown = [c for c in names if c not in class_names]
    if unknown or not names:
        raise ValueError(f"candidate classes: unknown {', '.join(unknown) or '(none given)'}; this classifier knows: "
                         f"{', '.join(class_names)}")
    return names


def restrict_probabilities(probs, class_names, candidates):
    """(N, C) class probabilities renormalised over ``candidates`` (the others 0): the classifier's answer when only
    those classes can occur, e.g. another lab's data that holds fewer classes."""
    import numpy as np

    p = np.array(probs, dtype=np.float64)
    p[:, [j for j, c in enumerate(class_names) if c not in set(candidates)]] = 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        return p / p.sum(axis=1, keepdims=True)


def with_current_names(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with the old column names of a classification table (``path``, ``predicted``, ``p_<class>``)
    renamed to today's; a table already in today's names comes back as it is. An old name is renamed only where the
    table has no column of its new name, so nothing is overwritten."""
    cols = set(table.columns)
    renames = {old: new for old, new in OLD_NAMES.items() if old in cols and new not in cols}
    if not prob_columns(table):
        renames.update({c: prob_column(c[len(OLD_PROB_PREFIX):]) for c in table.columns
                        if str(c).startswith(OLD_PROB_PREFIX)})
    return table.rename(columns=renames) if renames else table
