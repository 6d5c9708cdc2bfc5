"""Confidence scales: how an ordinal confidence level maps to the percent shown to a participant."""
from __future__ import annotations


def confidence_to_raw(level: int, K: int, chance: float) -> float:
    """Raw percent confidence shown for ordinal level ``level`` of ``K`` (chance % at level 1, 100 % at K)."""
    return 100.0 * (chance + (1.0 - chance) * (level - 1) / (K - 1))
