"""cytocore: the small, torch-free contract that cytomodel, study_app and analysis share.

- :mod:`cytocore.provenance` — the code version, content hashes, the provenance record, atomic file writes
- :mod:`cytocore.config` — typed dataclass configs from TOML, dicts and ``key=value`` overrides
- :mod:`cytocore.schema` — the tidy response table (the study export → analysis contract)
- :mod:`cytocore.classification` — the classification table every classifier writes
- :mod:`cytocore.confidence` — confidence scales shared by the study page and the simulator
- :mod:`cytocore.rater_model` — the simulated rater the study's bots and the analysis's simulator share
- :mod:`cytocore.lineage`, :mod:`cytocore.study_files` — provenance fields and the study folder's file names

Nothing here imports torch, diffusers, PyMC or SciPy: a study server imports it without them.
"""
__version__ = "0.1.0"
