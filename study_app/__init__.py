"""study_app: leak-proof stimulus sets and the expert study (real vs AI-generated blood cells) in the browser.

Public API::

    build_study(data, model_dir, out, cfg)     -> Path      build a study folder (stimuli, manifest, leak audit)
    load_study(path)                           -> Study     a built study: config, manifest, classes
    load_study_config(path, overrides)         -> StudyConfig
    leak_audit(manifest, study_dir, ...)       -> AuditResult
    StudyService(study_dir, db_url=None)       the participant session logic on the database (UI and bots)
    export_responses(service)                  -> DataFrame (docs/tidy-responses.md), write_export(df, out)
    run_bot / simulate_raters / make_profile   simulated raters through the same code path
    serve(study_dir, port, ...)                start the Streamlit app
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "build_study": "stimuli", "load_study": "stimuli", "Study": "stimuli", "render_stimulus": "stimuli",
    "load_study_config": "config", "StudyConfig": "config",
    "leak_audit": "audit", "LeakAuditError": "audit",
    "StudyService": "session", "AccessDenied": "session", "TooFast": "session",
    "StorageUnavailable": "storage", "Database": "storage",
    "export_responses": "export", "write_export": "export",
    "run_bot": "bots", "simulate_raters": "bots", "make_profile": "bots",
    "serve": "cli", "main": "cli",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'study_app' has no attribute {name!r}")
