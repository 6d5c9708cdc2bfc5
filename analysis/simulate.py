"""Simulated raters, a simulated classifier and simulated studies (the tidy response table with the truth in
``df.attrs["truth"]``): the per-trial rater model is :mod:`cytocore.rater_model` (shared with the study's simulated
raters), the study-level simulator and its classifier :mod:`analysis.simulate_study`; this module gathers both."""

from cytocore.confidence import confidence_to_raw
from cytocore.rater_model import (DEFAULT_CLASSES, FAMILIES, RaterProfile, morph_psychometric_truth,
                                  simulate_response)

from .simulate_study import (ModelProfile, draw_raters, simulate_single_rater_auth_counts, simulate_stimuli,
                             simulate_study)

__all__ = ["DEFAULT_CLASSES", "FAMILIES", "ModelProfile", "RaterProfile", "confidence_to_raw", "draw_raters",
           "morph_psychometric_truth", "simulate_response", "simulate_single_rater_auth_counts",
           "simulate_stimuli", "simulate_study"]
