"""Which browser tab shows a participant's trial, and whether its image is on screen.

* A *presentation* is one hand-out of a trial's image to one browser session (:meth:`Presentations.view`); the
  browser then confirms that the image loaded (:meth:`Presentations.confirm_loaded`). Answers are accepted only
  after that confirmation (:mod:`.trials`).
* **One tab holds the study.** A participant's link may be open in several tabs or windows (or reopened after a
  reload, a reconnect or a server restart: each is a new browser session). The rule: the newest session holds the
  study, until another one takes it back with *Continue here*. Only the holder is presented trials and may answer
  them; every other tab is told that the study continues elsewhere (:class:`~.errors.Superseded` for its
  answers, ``ParticipantState.elsewhere`` for its page), never silently ignored.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import update
from sqlalchemy.orm import Session

from ..storage import Assignment, Participant, utcnow
from .errors import AccessDenied, Superseded

TRIAL_STAGES = ("practice", "main")


@dataclass
class TrialView:
    assignment_id: int
    phase: str
    trial_index: int
    block: int
    n_in_phase: int
    stimulus_id: str
    image_path: Path
    is_attention_check: bool
    instructed_answer: str | None
    auth_response: str | None        # authenticity answer already committed for this trial
    auth_confidence_level: int | None
    presentation: int                # which hand-out of this trial's image this is (1, 2, ...)
    loaded: bool                     # the browser confirmed the image of this presentation loaded
    class_choice: str | None = None  # the cell type chosen, awaiting its confidence (kept over a reload)

    @property
    def tag(self) -> str:
        """The trial's name on the page (screen ids, button keys): its phase and position, which the page shows
        anyway ("Image 3 of 24"), never the database's assignment id (a global counter) or the stimulus id."""
        return f"{self.phase[0]}{self.trial_index + 1}"

    @property
    def step(self) -> str:
        """The question on screen: ``auth`` (real or AI-generated), ``class`` (cell type), ``cconf`` (its
        confidence)."""
        return "auth" if self.auth_response is None else ("class" if self.class_choice is None else "cconf")


class Presentations:
    """Mixin of :class:`~study_app.serve.session.StudyService`: the holding tab, presentations, load
    confirmations."""

    def current_trial(self, token: str, session_key: str = "") -> TrialView | None:
        """The next unanswered trial (None when the stage is not a trial stage), presented to ``session_key``."""
        return self.view(token, session_key)[1]

    def view(self, token: str, session_key: str = "", claim: bool = True):
        """The participant's state and, in a trial stage, the trial to show to this browser session.

        ``claim``: this session takes the study (the page claims on a tab's first run and on *Continue here*;
        a plain call, as the bots make, always claims). Without it, a session that does not hold the study gets
        ``state.elsewhere`` and no trial. The first time a session is handed a trial is a new presentation: its
        image must be confirmed loaded again."""
        def look(s: Session):
            p = self._participant(s, token)
            st, a = self._state(s, p)
            return st, (a if st.stage in TRIAL_STAGES else None), p.holder_session

        st, a, holder = self.db.read(look)
        if holder is not None and holder != session_key and not claim:
            return dataclasses.replace(st, elsewhere=True), None
        if holder != session_key or (a is not None and (a.shown_session != session_key or a.shown_at is None)):
            a = self.db.write(lambda s: self._take(s, token, a.id if a is not None else None, session_key))
        return st, (None if a is None else self._trial_view(st, a))

    def _take(self, s: Session, token: str, assignment_id: int | None, session_key: str) -> Assignment | None:
        p = self._participant(s, token)
        p.holder_session = session_key
        if assignment_id is None:
            return None
        return self._present(s, assignment_id, session_key, new_session=True)

    def _present(self, s: Session, assignment_id: int, session_key: str, new_session: bool) -> Assignment:
        b = s.get(Assignment, assignment_id)
        if b is None:
            raise AccessDenied("this trial no longer exists (withdrawn)")
        if new_session and b.shown_session == session_key and b.shown_at is not None:
            return b  # another thread of the same session got here first
        now = utcnow()
        if new_session and b.shown_session is not None:
            b.n_reconnects += 1
        b.shown_at, b.shown_session, b.loaded_at = now, session_key, None
        b.n_presentations += 1
        b.first_shown_at = b.first_shown_at or now
        s.execute(update(Participant).where(Participant.id == b.participant_id).values(last_seen_at=now))
        return b

    def _trial_view(self, st, a: Assignment) -> TrialView:
        n_phase = st.n_practice if a.phase == "practice" else st.n_main
        return TrialView(a.id, a.phase, a.trial_index, a.block, n_phase, a.stimulus_id,
                         self.study.image_path(a.stimulus_id), a.is_attention_check, a.instructed_answer,
                         a.auth_response, a.auth_confidence_level, a.n_presentations, a.loaded_at is not None,
                         a.class_choice)

    def _owned(self, s: Session, token: str, assignment_id: int,
               session_key: str | None = None) -> tuple[Participant, Assignment]:
        """The participant and their trial; with ``session_key``, also that this session holds it."""
        p = self._participant(s, token)
        a = s.get(Assignment, int(assignment_id))
        if a is None or a.participant_id != p.id:
            raise AccessDenied("this trial does not belong to this link")
        if session_key is not None and (a.shown_session != session_key
                                        or p.holder_session not in (None, session_key)):
            raise Superseded("this study is now open in another tab or window")
        return p, a

    def confirm_loaded(self, token: str, assignment_id: int, presentation: int) -> bool:
        """The browser has the image of this presentation on screen. Stale confirmations (an earlier presentation,
        another browser session) are ignored. Returns whether this one counted."""
        def go(s):
            p, a = self._owned(s, token, assignment_id)
            if a.n_presentations != int(presentation) or a.loaded_at is not None or a.response is not None:
                return False
            a.loaded_at = utcnow()
            return True
        return self.db.write(go)

    def retry_image(self, token: str, assignment_id: int, session_key: str = "") -> None:
        """The image did not load (broken, interrupted): hand it out again as a new presentation."""
        def go(s):
            p, a = self._owned(s, token, assignment_id, session_key)
            if a.response is None:
                self._present(s, a.id, session_key, new_session=False)
        self.db.write(go)
