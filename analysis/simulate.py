"""Simulated raters, a simulated classifier and simulated studies (the tidy response table with the truth in
``df.attrs["truth"]``): the per-trial rater model is :mod:`analysis.rater_model`, the study-level simulator
:mod:`analysis.simulate_study`; this module gathers both (neither imports it, so there is no import circle)."""

from .rater_model import (DEFAULT_CLASSES, FAMILIES, ModelProfile, RaterProfile, confidence_to_raw,
                          morph_psychometric_truth, psychometric_F, simulate_response)
from .simulate_study import draw_raters, simulate_single_rater_auth_counts, simulate_stimuli, simulate_study

__all__ = ["DEFAULT_CLASSES", "FAMILIES", "ModelProfile", "RaterProfile", "confidence_to_raw", "draw_raters",
           "morph_psychometric_truth", "psychometric_F", "simulate_response", "simulate_single_rater_auth_counts",
           "simulate_stimuli", "simulate_study"]
