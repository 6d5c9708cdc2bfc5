"""study_app: leak-proof stimulus sets and the expert study (real vs AI-generated blood cells) in the browser.

Public API::

    build_study(data, model_dir, out, cfg)     -> Path      build a study folder (study_app.build: needs torch)
    load_study(path)                           -> Study     a built study: config, manifest, classes
    load_study_config(path, overrides)         -> StudyConfig
    run_audits / leak_audit / confound_check   the leak audit and the content-confound check
    StudyService(study_dir, db_url=None)       the participant session logic on the database (study_app.serve)
    export_study(service, out)                 -> (responses, paths): the responses and stimuli tables, provenance
    run_bot / simulate_raters / make_profile   simulated raters through the same code path (cytocore's rater model)
    simulate_and_analyse(study, raters)        the road without experts: raters -> export -> analysis (workflow)
    study_app.serve.server.serve(study_dir, port, ...)   start the Streamlit app

Layout: ``build/`` makes a study (cytomodel, torch); ``serve/`` runs it (no torch); ``storage/`` is the
database; ``audit/`` checks a stimulus set; ``study.py`` reads a built folder; ``export.py`` writes the two tidy tables;
``workflow.py`` chains build -> simulated raters -> export -> analysis (the one place the analysis is imported).
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "build_study": "build", "render_stimulus": "build", "StudyBuildError": "build",
    "load_study": "study", "Study": "study",
    "load_study_config": "config", "StudyConfig": "config", "StudyConfigError": "config",
    "leak_audit": "audit", "confound_check": "audit", "run_audits": "audit", "LeakAuditError": "audit",
    "StudyService": "serve.session", "AccessDenied": "serve.errors", "TooFast": "serve.errors",
    "NotLoaded": "serve.errors", "StudyMismatch": "serve.errors",
    "StorageUnavailable": "storage", "Database": "storage",
    "export_responses": "export", "export_stimuli": "export", "export_study": "export", "write_export": "export",
    "read_provenance": "export",
    "run_bot": "bots", "simulate_raters": "bots", "make_profile": "bots",
    "SimulatedRaters": "workflow", "simulate_and_analyse": "workflow",
    "main": "cli",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'study_app' has no attribute {name!r}")
