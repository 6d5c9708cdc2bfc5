"""Bayesian psychometrics and metacognition for human-vs-machine blood-cell image studies (PyMC + ArviZ).

Light imports (no PyMC): the table contract and the simulator::

    from analysis import validate_responses, load_responses, simulate_study, RaterProfile

The analysis (imports PyMC lazily on first use)::

    from analysis import AnalysisConfig, SamplerConfig, run_analysis, write_report
    res = run_analysis(load_responses("responses.parquet"), AnalysisConfig())
    write_report(res, "report/")

    res = run_analysis(load_responses("responses.parquet"), load_analysis_config("analysis.toml"), out_dir="report/")
    write_report(res, "report/")          # report.md, report.html, provenance.json (fits are written as they finish)

Model builders (each returns a ``pm.Model`` and the meaning of its parameters): ``build_sdt_model``,
``build_morph_sdt_model`` (yes/no morph curve), ``build_psychometric_model`` (ψ form), ``build_metad_model``,
``build_difference_model``; fits give ArviZ ``InferenceData`` (``fit_model``).
"""
from cytocore.schema import (AUTH_RESPONSES, CANNOT_TELL, PHASES, REQUIRED_COLUMNS, ResponseDataError, ValidationReport,
                     load_responses)
from cytocore.validation import validate_responses
from .simulate import ModelProfile, RaterProfile, simulate_response, simulate_study

from cytocore import __version__  # noqa: E402,F401

_LAZY = {
    "AnalysisConfig": "config", "load_analysis_config": "config", "AnalysisResult": "pipeline",
    "run_analysis": "pipeline", "SamplerConfig": "fitting", "fit_model": "fitting", "check_diagnostics": "fitting",
    "write_report": "report", "load_export": "inputs",
    "PsychometricSpec": "psychometric", "build_psychometric_model": "psychometric",
    "build_morph_sdt_model": "psychometric", "build_sdt_model": "models",
    "build_metad_model": "models", "build_difference_model": "models",
    "fit_metad_mle": "mle", "equivalence_power": "power",
}

__all__ = ["AUTH_RESPONSES", "CANNOT_TELL", "PHASES", "REQUIRED_COLUMNS", "ModelProfile", "RaterProfile",
           "ResponseDataError", "ValidationReport", "load_responses", "simulate_response", "simulate_study",
           "validate_responses", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'analysis' has no attribute {name!r}")
