"""The participant's way through the study: the stage machine and the trials, with the rules that make every
stored answer the one the expert meant.

* The stage (consent, profile, instructions, practice, main_intro, break, main, done) and the next trial are derived
  from the database on every call, so a refresh, a lost connection or a server restart continues at the next
  unanswered trial.
* Answers are accepted only after the browser confirmed the image of the trial's presentation loaded
  (:mod:`.presenting`), and only from the tab that holds the study (when the caller names its session). Each
  screen's minimum time runs from the moment that screen could be answered: the authenticity question from the
  load confirmation, the cell-type question from the authenticity answer, the class-confidence question from the
  cell-type choice (or its withdrawal). An answer sooner than ``design.min_rt_ms`` is refused (:class:`TooFast`).
  (The page's keyboard gate does more: ``serve/web/screen.js``.)
* The authenticity answer is committed the moment it is given, the chosen cell type too (a draft: a reload on
  the confidence question keeps it); the trial's response row is committed before the next image can be
  requested. ``UNIQUE(assignment_id)`` makes a repeated or concurrent submission a duplicate, never a second row.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cytocore.confidence import confidence_to_raw
from cytocore.schema import AUTH_RESPONSES, CANNOT_TELL

from ..storage import Assignment, Participant, Response, utcnow
from .errors import AccessDenied, NotLoaded, TooFast
from .presenting import TRIAL_STAGES, Presentations, TrialView  # noqa: F401 - TrialView re-exported

STAGES = ("consent", "profile", "instructions", "practice", "main_intro", "break", "main", "done")


def _ms(a: dt.datetime | None, b: dt.datetime) -> float | None:
    return None if a is None else round((b - a).total_seconds() * 1000.0, 1)


def confidence_raw(level: int, K: int, chance: float, style: str) -> float:
    """Raw confidence for an ordinal level: percent from chance (level 1) to 100 % (level K), or the level."""
    if style == "labels":
        return float(level)
    return round(float(confidence_to_raw(level, K, chance)), 2)


@dataclass
class ParticipantState:
    participant_id: str
    number: int
    stage: str
    role: str | None
    n_practice: int
    practice_done: int
    n_main: int
    main_done: int
    block: int
    n_blocks: int
    elsewhere: bool = False          # this browser session does not hold the study (another tab does)


@dataclass
class SubmitResult:
    response_id: int
    duplicate: bool
    phase: str
    feedback: dict[str, Any] | None = None   # practice trials only: the truth, for feedback


class Trials(Presentations):
    """Mixin of :class:`~study_app.serve.session.StudyService`: stages and answers (presentations in the base)."""

    # ------------------------------------------------------------------ stage machine
    def _next_assignment(self, s: Session, pid: str) -> Assignment | None:
        return s.scalar(select(Assignment).outerjoin(Response, Response.assignment_id == Assignment.id)
                        .where(Assignment.participant_id == pid, Response.id.is_(None))
                        .order_by(Assignment.seq).limit(1))

    def _state(self, s: Session, p: Participant) -> tuple[ParticipantState, Assignment | None]:
        rows = s.execute(select(Assignment.phase, Assignment.block, func.count(Assignment.id),
                                func.count(Response.id))
                         .outerjoin(Response, Response.assignment_id == Assignment.id)
                         .where(Assignment.participant_id == p.id)
                         .group_by(Assignment.phase, Assignment.block)).all()
        n = {"practice": 0, "main": 0}
        done = {"practice": 0, "main": 0}
        done_in_block: dict[int, int] = {}
        n_blocks = 0
        for phase, block, total, answered in rows:
            n[phase] += total
            done[phase] += answered
            if phase == "main":
                done_in_block[block] = answered
                n_blocks = max(n_blocks, block + 1)
        nxt = self._next_assignment(s, p.id)
        stage = self._stage(p, nxt, n, done, done_in_block)
        st = ParticipantState(p.id, p.number, stage, p.role, n["practice"], done["practice"], n["main"],
                              done["main"], nxt.block if nxt is not None and nxt.phase == "main" else 0, n_blocks)
        return st, nxt

    def _stage(self, p: Participant, nxt: Assignment | None, n: dict, done: dict, done_in_block: dict) -> str:
        if p.consented_at is None:
            return "consent"
        if p.profile_at is None:
            return "profile"
        if p.instructions_at is None:
            return "instructions"
        if nxt is None:
            return "done"
        if nxt.phase == "practice":
            return "practice"
        if p.break_done_block < 0 and n["practice"] > 0 and done["main"] == 0:
            return "main_intro"
        if (self.cfg.design.breaks and nxt.block >= 1 and p.break_done_block < nxt.block
                and done_in_block.get(nxt.block, 0) == 0):
            return "break"
        return "main"

    def state(self, token: str) -> ParticipantState:
        return self.db.read(lambda s: self._state(s, self._participant(s, token))[0])

    def _touch(self, token: str, change) -> None:
        def go(s):
            p = self._participant(s, token)
            change(p, s)
            p.last_seen_at = utcnow()
        self.db.write(go)

    def give_consent(self, token: str) -> None:
        """The participant agreed: from now on they hold a counterbalancing slot and have their trials
        (:meth:`~.joining.Joining._start`)."""
        self._touch(token, lambda p, s: self._start(s, p))

    def save_profile(self, token: str, role: str, years_experience: float) -> None:
        allowed = set(self.cfg.roles) | {"bot"}
        if role not in allowed:
            raise ValueError(f"role must be one of {sorted(allowed)}")
        years = float(years_experience)
        if not 0 <= years <= 70:
            raise ValueError("years of experience must be between 0 and 70")

        def change(p, s):
            if p.consented_at is None:
                raise AccessDenied("consent first")
            p.role, p.years_experience, p.profile_at = role, years, p.profile_at or utcnow()
        self._touch(token, change)

    def finish_instructions(self, token: str) -> None:
        def change(p, s):
            if p.profile_at is None:
                raise AccessDenied("profile first")
            p.instructions_at = p.instructions_at or utcnow()
        self._touch(token, change)

    def end_break(self, token: str) -> None:
        """Dismiss the main-part introduction or the break before the next block."""
        def change(p, s):
            st, nxt = self._state(s, p)
            if st.stage == "main_intro":
                p.break_done_block = 0
            elif st.stage == "break" and nxt is not None:
                p.break_done_block = max(p.break_done_block, nxt.block)
        self._touch(token, change)

        # ------------------------------------------------------------------ answers
    def _check_screen_time(self, a: Assignment, now: dt.datetime) -> None:
        """The screen on view began when the image was confirmed loaded, the authenticity answer was given or the
        cell type was chosen (or withdrawn), whichever came last."""
        if a.loaded_at is None:
            raise NotLoaded("the image of this trial has not been confirmed loaded yet")
        since = max(t for t in (a.loaded_at, a.auth_answered_at, a.class_choice_at) if t is not None)
        rt = _ms(since, now)
        if rt < self.cfg.design.min_rt_ms:
            raise TooFast(f"answer {rt:.0f} ms after its question appeared (minimum {self.cfg.design.min_rt_ms:g})")

    def answer_auth(self, token: str, assignment_id: int, response: str, level: int,
                    session_key: str | None = None) -> bool:
        """Commit the authenticity answer of a trial. Returns False if the trial already had one (first wins).
        ``session_key``: the browser session answering, which must hold the study (:class:`Superseded`)."""
        if response not in AUTH_RESPONSES:
            raise ValueError(f"authenticity answer must be one of {AUTH_RESPONSES}")
        level = int(level)
        if not 1 <= level <= self.K:
            raise ValueError(f"confidence level must be in 1..{self.K}")

        def go(s):
            p, a = self._owned(s, token, assignment_id, session_key)
            if a.auth_response is not None or a.response is not None:
                return False
            now = utcnow()
            self._check_screen_time(a, now)
            a.auth_response, a.auth_confidence_level, a.auth_answered_at = response, level, now
            a.auth_rt_ms = _ms(a.loaded_at, now)
            p.last_seen_at = now
            return True
        return self.db.write(go)

    def choose_class(self, token: str, assignment_id: int, class_response: str | None,
                     session_key: str | None = None) -> None:
        """The cell type chosen on the cell-type screen, before its confidence (``None``: back to the cell-type
        question). Stored as a draft, so a reload keeps it; the confidence question's minimum time runs from here."""
        if class_response is not None and class_response not in self.classes:
            raise ValueError(f"cell type must be one of {self.classes}")

        def go(s):
            p, a = self._owned(s, token, assignment_id, session_key)
            if a.response is not None:
                return
            if a.auth_response is None:
                raise ValueError("answer the real / AI-generated question first")
            now = utcnow()
            if class_response is not None:
                if a.class_choice is not None:
                    return           # already chosen (a repeated submission): the first choice stands
                self._check_screen_time(a, now)
            a.class_choice, a.class_choice_at = class_response, now
            p.last_seen_at = now
        self.db.write(go)

    def answer_class(self, token: str, assignment_id: int, class_response: str, level: int,
                     session_key: str | None = None) -> SubmitResult:
        """Commit the trial's response (the authenticity answer + this class answer) as one row. With a chosen
        cell type (:meth:`choose_class`) the answer must be that cell type."""
        if class_response != CANNOT_TELL and class_response not in self.classes:
            raise ValueError(f"class answer must be one of {self.classes} or {CANNOT_TELL!r}")
        level = 1 if class_response == CANNOT_TELL else int(level)
        if not 1 <= level <= self.K:
            raise ValueError(f"confidence level must be in 1..{self.K}")

        def go(s: Session) -> SubmitResult:
            p, a = self._owned(s, token, assignment_id, session_key)
            if a.response is not None:
                return SubmitResult(a.response.id, True, a.phase, self._feedback(a))
            if a.auth_response is None:
                raise ValueError("answer the real / AI-generated question first")
            if a.class_choice is not None and class_response != a.class_choice:
                raise ValueError(f"the chosen cell type is {a.class_choice!r}: go back to change it first")
            now = utcnow()
            self._check_screen_time(a, now)
            s.add(self._response_row(p, a, class_response, level, now))
            s.flush()  # the UNIQUE(assignment_id) check happens here
            p.last_seen_at = now
            if self._next_assignment(s, p.id) is None and p.completed_at is None:
                p.completed_at = now
            return SubmitResult(a.response.id, False, a.phase, self._feedback(a))

        try:
            return self.db.write(go)
        except IntegrityError:
            # a concurrent submission of the same trial won the race: report it, never store a second row
            def existing(s):
                p, a = self._owned(s, token, assignment_id)
                return SubmitResult(a.response.id, True, a.phase, self._feedback(a))
            return self.db.read(existing)

    def _response_row(self, p: Participant, a: Assignment, class_response: str, level: int,
                      now: dt.datetime) -> Response:
        style = self.cfg.confidence.style
        r = Response(assignment_id=a.id, participant_id=p.id, auth_response=a.auth_response,
                     auth_confidence=confidence_raw(a.auth_confidence_level, self.K, 0.5, style),
                     auth_confidence_level=a.auth_confidence_level, class_response=class_response,
                     class_confidence=confidence_raw(level, self.K, 1.0 / len(self.classes), style),
                     class_confidence_level=level, confidence_levels=self.K, auth_rt_ms=a.auth_rt_ms,
                     class_rt_ms=_ms(a.loaded_at, now), n_presentations=a.n_presentations,
                     n_reconnects=a.n_reconnects, image_load_ms=_ms(a.shown_at, a.loaded_at),
                     responded_at=now)
        a.response = r
        return r

    def _feedback(self, a: Assignment) -> dict[str, Any] | None:
        """Practice trials only: the truth and the participant's answers, for the feedback screen (server side:
        the page shows the image and the text, never the stimulus id)."""
        if a.phase != "practice":
            return None
        st = self.study.stimulus(a.stimulus_id)
        r = a.response
        return {"source": st["source"], "true_class": st["true_class"], "stimulus_id": a.stimulus_id,
                "tag": f"{a.phase[0]}{a.trial_index + 1}", "answer_auth": a.auth_response,
                "answer_class": None if r is None else r.class_response,
                "auth_correct": a.auth_response == st["source"],
                "class_correct": r is not None and r.class_response == st["true_class"]}

    def score(self, token: str) -> dict[str, Any]:
        """The participant's own score on the main trials (attention checks excluded)."""
        def go(s):
            p = self._participant(s, token)
            return s.execute(select(Assignment.stimulus_id, Response.auth_response, Response.class_response)
                             .join(Response, Response.assignment_id == Assignment.id)
                             .where(Assignment.participant_id == p.id, Assignment.phase == "main",
                                    Assignment.is_attention_check.is_(False))).all()
        rows = self.db.read(go)
        if not rows:
            return {"n": 0, "auth_accuracy": None, "class_accuracy": None}
        m = self.study.manifest
        auth = [r.auth_response == m.at[r.stimulus_id, "source"] for r in rows]
        cls = [r.class_response == m.at[r.stimulus_id, "true_class"] for r in rows]
        return {"n": len(rows), "auth_accuracy": sum(auth) / len(rows), "class_accuracy": sum(cls) / len(rows)}
