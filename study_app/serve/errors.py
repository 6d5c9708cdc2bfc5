"""What the participant's session can refuse, each with a message the page can show or act on."""
from __future__ import annotations


class AccessDenied(PermissionError):
    """Unknown token, or a trial that is not this participant's."""


class TooFast(ValueError):
    """An answer sooner than ``design.min_rt_ms`` after its screen became visible (a double press or key repeat)."""


class NotLoaded(ValueError):
    """An answer to a trial whose image the browser has not confirmed loading (a broken image gets a retry)."""


class StudyMismatch(RuntimeError):
    """The database holds this study id with other stimuli (another build); serving it would mix answer keys."""


class Superseded(PermissionError):
    """An action from a browser tab or window that no longer holds the participant's study: the same link was
    opened (or taken back) in another one, which now shows the trial and takes its answers."""
