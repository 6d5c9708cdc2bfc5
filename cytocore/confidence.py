"""Confidence scales: how an ordinal confidence level maps to a probability of being right and to the percent shown
to a participant — the one formula the study page, the simulator and the analysis share."""
from __future__ import annotations

#: :func:`level_probability` in words (an export's ``confidence_scale`` record and the report state it)
LEVEL_FORMULA = "chance + (1 − chance)·(level − 1)/(K − 1)"


def level_probability(level, K: int, chance: float):
    """The probability of being right that ordinal level ``level`` of ``K`` states: ``chance`` at level 1
    (guessing), 1 at level K (certain), evenly between. ``level`` may be a number or a NumPy array."""
    return chance + (1.0 - chance) * (level - 1) / (K - 1)


def confidence_to_raw(level: int, K: int, chance: float) -> float:
    """Raw percent confidence shown for ordinal level ``level`` of ``K`` (chance % at level 1, 100 % at K)."""
    return 100.0 * level_probability(level, K, chance)


def confidence_scale_record(K: int, n_classes: int, shown_as: str) -> dict:
    """What an export states about its confidence (recorded once, as the level): K levels, each task's chance and
    how a level maps to a probability of being right, and how the levels were shown (``percent`` or ``labels``) —
    so an analysis reads the level as it is and guesses nothing."""
    return {"levels": int(K), "shown_as": shown_as, "chance": {"authenticity": 0.5, "classification": 1.0 / n_classes},
            "probability_of_level": LEVEL_FORMULA}
