"""Bayesian psychometrics and metacognition for human-vs-machine blood-cell image studies."""
from .schema import (AUTH_RESPONSES, CANNOT_TELL, PHASES, REQUIRED_COLUMNS, ResponseDataError, ValidationReport,
                     load_responses, validate_responses)
from .simulate import ModelProfile, RaterProfile, simulate_response, simulate_study

__version__ = "0.1.0"
__all__ = ["AUTH_RESPONSES", "CANNOT_TELL", "PHASES", "REQUIRED_COLUMNS", "ModelProfile", "RaterProfile",
           "ResponseDataError", "ValidationReport", "load_responses", "simulate_response", "simulate_study",
           "validate_responses"]
