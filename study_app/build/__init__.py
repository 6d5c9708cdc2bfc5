"""What builds a study (needs cytomodel and torch, imported when a build runs): real images framed as the
model's record says, generated cells and morphs, the model's judgement of each, one encoder for all, the audits."""
from .guard import StudyBuildError
from .render import pad_stimulus, render_stimulus
from .steps import build_study, load_study_model, model_record, resolve_device

__all__ = ["StudyBuildError", "build_study", "load_study_model", "model_record", "pad_stimulus", "render_stimulus",
           "resolve_device"]
