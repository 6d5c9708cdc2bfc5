"""The participant's session, as plain Python: the Streamlit page and the simulated raters both call these methods,
so there is exactly one code path from an answer to the database.

Rules enforced here (not in the UI):

* Access is by a secret token (only its sha256 is stored); every call checks that the trial belongs to the token's
  participant, so one person cannot read or answer another's trials.
* The stage (consent, profile, instructions, practice, break, main, done) and the next trial are derived from the
  database on every call, so a refresh, a lost connection or a return days later continues at the next unanswered
  trial.
* The authenticity answer is committed the moment it is given (with its server-side response time); the trial's
  response row is committed before the next image can be requested. A repeated or concurrent submission of the same
  trial never creates a second row: ``UNIQUE(assignment_id)`` in the database decides, and the repeat is reported
  as a duplicate.
* Response times are measured on the server from the moment the image was handed out for display.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .design import trial_sequence
from .stimuli import Study, load_study
from .storage import (DEFAULT_RETRY_SECONDS, Assignment, Database, Participant, Response, StorageUnavailable,
                      StudyRow, resolve_db_url, utcnow)

CANNOT_TELL = "cannot_tell"
AUTH_ANSWERS = ("real", "synthetic")
STAGES = ("consent", "profile", "instructions", "practice", "main_intro", "break", "main", "done")


class AccessDenied(PermissionError):
    """Unknown token, or a trial that is not this participant's."""


class TooFast(ValueError):
    """An answer that arrived sooner than ``design.min_rt_ms`` after the image was shown (a double click)."""


class StudyMismatch(RuntimeError):
    pass


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _ms(a: dt.datetime | None, b: dt.datetime) -> float | None:
    return None if a is None else round((b - a).total_seconds() * 1000.0, 1)


def confidence_raw(level: int, K: int, chance: float, style: str) -> float:
    """Raw confidence for an ordinal level: percent from chance (level 1) to 100 % (level K), or the level."""
    if style == "labels":
        return float(level)
    from cytocore.confidence import confidence_to_raw
    return round(float(confidence_to_raw(level, K, chance)), 2)


@dataclass(frozen=True)
class Invite:
    participant_id: str
    token: str
    number: int

    def url(self, base_url: str) -> str:
        return f"{base_url.rstrip('/')}/?t={self.token}"


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
    auth_response: str | None        # draft authenticity answer already committed for this trial
    auth_confidence_level: int | None


@dataclass
class SubmitResult:
    response_id: int
    duplicate: bool
    phase: str
    feedback: dict[str, Any] | None = None   # practice trials only: the truth, for feedback


class StudyService:
    def __init__(self, study_dir: str | Path, db_url: str | None = None, retry_seconds: float = DEFAULT_RETRY_SECONDS):
        self.study: Study = load_study(study_dir)
        self.cfg = self.study.config
        self.classes = self.study.classes
        self.K = self.cfg.confidence.levels
        self.db = Database(resolve_db_url(study_dir, db_url), retry_seconds=retry_seconds)
        self.db.ensure_schema()
        self._register_study()

    # ------------------------------------------------------------------ study row
    def _register_study(self) -> None:
        meta = self.study.meta

        def go(s: Session):
            row = s.get(StudyRow, self.cfg.id)
            if row is None:
                s.add(StudyRow(id=self.cfg.id, title=self.cfg.title, config_hash=meta["config_hash"],
                               content_hash=meta["content_hash"]))
            elif row.content_hash != meta["content_hash"]:
                raise StudyMismatch(
                    f"the database already holds study {self.cfg.id!r} built from different stimuli or config "
                    f"(content hash {row.content_hash[:12]} vs this folder's {meta['content_hash'][:12]}); "
                    "use a new database (or study id) for a rebuilt study")
        try:
            self.db.write(go)
        except IntegrityError:  # another process registered it at the same moment
            self.db.write(go)

    # ------------------------------------------------------------------ participants
    def _create_participant(self, entry: str, label: str = "") -> Invite:
        token = secrets.token_urlsafe(18)
        pid = "p" + secrets.token_hex(5)
        manifest = self.study.manifest

        def go(s: Session) -> Invite:
            n = s.scalar(select(func.coalesce(func.max(Participant.number), -1)).where(
                Participant.study_id == self.cfg.id)) + 1
            p = Participant(id=pid, study_id=self.cfg.id, number=n, token_hash=hash_token(token), entry=entry,
                            label=label[:200])
            s.add(p)
            s.flush()
            for k, t in enumerate(trial_sequence(manifest, self.cfg, n)):
                s.add(Assignment(participant_id=pid, phase=t.phase, trial_index=t.trial_index, block=t.block,
                                 stimulus_id=t.stimulus_id, is_attention_check=t.is_attention_check,
                                 instructed_answer=t.instructed_answer, seq=k))
            return Invite(pid, token, n)

        for _ in range(20):  # concurrent joins may race for the same number (PostgreSQL): retry
            try:
                return self.db.write(go)
            except IntegrityError:
                continue
        raise StorageUnavailable("could not allocate a participant number; try again")

    def create_invites(self, n: int, label: str = "", entry: str = "invite") -> list[Invite]:
        return [self._create_participant(entry, label) for _ in range(n)]

    def join_with_code(self, code: str) -> Invite:
        expected = self.cfg.code
        if not expected or not hmac.compare_digest(code.strip().upper().encode(), expected.strip().upper().encode()):
            raise AccessDenied("unknown study code")
        return self._create_participant("code")

    def _participant(self, s: Session, token: str) -> Participant:
        if not token or len(token) > 200:
            raise AccessDenied("no valid link")
        p = s.scalar(select(Participant).where(Participant.token_hash == hash_token(token),
                                               Participant.study_id == self.cfg.id))
        if p is None:
            raise AccessDenied("unknown or withdrawn link")
        return p

    def participant_id(self, token: str) -> str:
        return self.db.read(lambda s: self._participant(s, token).id)

    def is_valid(self, token: str) -> bool:
        try:
            self.participant_id(token)
            return True
        except AccessDenied:
            return False

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
        if p.consented_at is None:
            stage = "consent"
        elif p.profile_at is None:
            stage = "profile"
        elif p.instructions_at is None:
            stage = "instructions"
        elif nxt is None:
            stage = "done"
        elif nxt.phase == "practice":
            stage = "practice"
        elif p.break_done_block < 0 and n["practice"] > 0 and done["main"] == 0:
            stage = "main_intro"
        elif (self.cfg.design.breaks and nxt.block >= 1 and p.break_done_block < nxt.block
              and done_in_block.get(nxt.block, 0) == 0):
            stage = "break"
        else:
            stage = "main"
        st = ParticipantState(p.id, p.number, stage, p.role, n["practice"], done["practice"], n["main"],
                              done["main"], nxt.block if nxt is not None and nxt.phase == "main" else 0, n_blocks)
        return st, nxt

    def state(self, token: str) -> ParticipantState:
        return self.db.read(lambda s: self._state(s, self._participant(s, token))[0])

    def give_consent(self, token: str) -> None:
        def go(s):
            p = self._participant(s, token)
            if p.consented_at is None:
                p.consented_at = utcnow()
        self.db.write(go)

    def save_profile(self, token: str, role: str, years_experience: float) -> None:
        allowed = set(self.cfg.roles) | {"bot"}
        if role not in allowed:
            raise ValueError(f"role must be one of {sorted(allowed)}")
        years = float(years_experience)
        if not 0 <= years <= 70:
            raise ValueError("years of experience must be between 0 and 70")

        def go(s):
            p = self._participant(s, token)
            if p.consented_at is None:
                raise AccessDenied("consent first")
            p.role, p.years_experience, p.profile_at = role, years, p.profile_at or utcnow()
        self.db.write(go)

    def finish_instructions(self, token: str) -> None:
        def go(s):
            p = self._participant(s, token)
            if p.profile_at is None:
                raise AccessDenied("profile first")
            p.instructions_at = p.instructions_at or utcnow()
        self.db.write(go)

    def end_break(self, token: str) -> None:
        """Dismiss the main-part introduction or the break before the next block."""
        def go(s):
            p = self._participant(s, token)
            st, nxt = self._state(s, p)
            if st.stage == "main_intro":
                p.break_done_block = 0
            elif st.stage == "break" and nxt is not None:
                p.break_done_block = max(p.break_done_block, nxt.block)
        self.db.write(go)

    # ------------------------------------------------------------------ trials
    def current_trial(self, token: str, session_key: str = "") -> TrialView | None:
        """The next unanswered trial (None when the stage is not a trial stage). Records the presentation time
        the first time a given browser session (``session_key``) is handed this trial."""
        return self.view(token, session_key)[1]

    def view(self, token: str, session_key: str = "") -> tuple[ParticipantState, TrialView | None]:
        """The participant's state and, in a trial stage, the trial to show (presentation recorded as in
        :meth:`current_trial`): what a page needs, in one read (plus one write for a new presentation)."""
        def look(s: Session):
            p = self._participant(s, token)
            st, a = self._state(s, p)
            return st, (a if st.stage in ("practice", "main") else None)

        st, a = self.db.read(look)
        if a is None:
            return st, None
        if a.shown_session != session_key or a.shown_at is None:
            def present(s: Session):
                b = s.get(Assignment, a.id)
                if b is None:
                    raise AccessDenied("this trial no longer exists (withdrawn)")
                if b.shown_session != session_key or b.shown_at is None:
                    now = utcnow()
                    b.shown_at, b.shown_session = now, session_key
                    b.n_presentations += 1
                    b.first_shown_at = b.first_shown_at or now
                    s.execute(update(Participant).where(Participant.id == b.participant_id).values(last_seen_at=now))
                return b
            a = self.db.write(present)
        n_phase = st.n_practice if a.phase == "practice" else st.n_main
        return st, TrialView(a.id, a.phase, a.trial_index, a.block, n_phase, a.stimulus_id,
                             self.study.image_path(a.stimulus_id), a.is_attention_check, a.instructed_answer,
                             a.auth_response, a.auth_confidence_level)

    def _owned(self, s: Session, token: str, assignment_id: int) -> tuple[Participant, Assignment]:
        p = self._participant(s, token)
        a = s.get(Assignment, int(assignment_id))
        if a is None or a.participant_id != p.id:
            raise AccessDenied("this trial does not belong to this link")
        return p, a

    def answer_auth(self, token: str, assignment_id: int, response: str, level: int) -> bool:
        """Commit the authenticity answer of a trial. Returns False if the trial already had one (first wins)."""
        if response not in AUTH_ANSWERS:
            raise ValueError(f"authenticity answer must be one of {AUTH_ANSWERS}")
        level = int(level)
        if not 1 <= level <= self.K:
            raise ValueError(f"confidence level must be in 1..{self.K}")

        def go(s):
            p, a = self._owned(s, token, assignment_id)
            if a.auth_response is not None or a.response is not None:
                return False
            now = utcnow()
            rt = _ms(a.shown_at, now)
            if rt is None:
                raise AccessDenied("this trial has not been shown yet")
            if rt < self.cfg.design.min_rt_ms:
                raise TooFast(f"answer {rt:.0f} ms after the image appeared (minimum {self.cfg.design.min_rt_ms:g})")
            a.auth_response, a.auth_confidence_level, a.auth_answered_at, a.auth_rt_ms = response, level, now, rt
            return True
        return self.db.write(go)

    def answer_class(self, token: str, assignment_id: int, class_response: str, level: int) -> SubmitResult:
        """Commit the trial's response (the authenticity draft + this class answer) as one row."""
        if class_response != CANNOT_TELL and class_response not in self.classes:
            raise ValueError(f"class answer must be one of {self.classes} or {CANNOT_TELL!r}")
        level = 1 if class_response == CANNOT_TELL else int(level)
        if not 1 <= level <= self.K:
            raise ValueError(f"confidence level must be in 1..{self.K}")
        style = self.cfg.confidence.style

        def go(s: Session) -> SubmitResult:
            p, a = self._owned(s, token, assignment_id)
            if a.response is not None:
                return SubmitResult(a.response.id, True, a.phase, self._feedback(a))
            if a.auth_response is None:
                raise ValueError("answer the real / AI-generated question first")
            now = utcnow()
            r = Response(assignment_id=a.id, participant_id=p.id, auth_response=a.auth_response,
                         auth_confidence=confidence_raw(a.auth_confidence_level, self.K, 0.5, style),
                         auth_confidence_level=a.auth_confidence_level, class_response=class_response,
                         class_confidence=confidence_raw(level, self.K, 1.0 / len(self.classes), style),
                         class_confidence_level=level, confidence_levels=self.K, auth_rt_ms=a.auth_rt_ms,
                         class_rt_ms=_ms(a.shown_at, now), n_presentations=a.n_presentations, responded_at=now)
            s.add(r)
            s.flush()  # the UNIQUE(assignment_id) check happens here
            p.last_seen_at = now
            if self._next_assignment(s, p.id) is None and p.completed_at is None:
                p.completed_at = now
            return SubmitResult(r.id, False, a.phase, self._feedback(a))

        try:
            return self.db.write(go)
        except IntegrityError:
            # a concurrent submission of the same trial won the race: report it, never store a second row
            def existing(s):
                p, a = self._owned(s, token, assignment_id)
                return SubmitResult(a.response.id, True, a.phase, self._feedback(a))
            return self.db.read(existing)

    def _feedback(self, a: Assignment) -> dict[str, Any] | None:
        if a.phase != "practice":
            return None
        st = self.study.stimulus(a.stimulus_id)
        return {"source": st["source"], "true_class": st["true_class"],
                "auth_correct": a.auth_response == st["source"],
                "class_correct": a.response is not None and a.response.class_response == st["true_class"]}

    def score(self, token: str) -> dict[str, Any]:
        """The participant's own score on the main trials (attention checks excluded)."""
        def go(s):
            p = self._participant(s, token)
            rows = s.execute(select(Assignment.stimulus_id, Response.auth_response, Response.class_response)
                             .join(Response, Response.assignment_id == Assignment.id)
                             .where(Assignment.participant_id == p.id, Assignment.phase == "main",
                                    Assignment.is_attention_check.is_(False))).all()
            return rows
        rows = self.db.read(go)
        if not rows:
            return {"n": 0, "auth_accuracy": None, "class_accuracy": None}
        m = self.study.manifest
        auth = [r.auth_response == m.at[r.stimulus_id, "source"] for r in rows]
        cls = [r.class_response == m.at[r.stimulus_id, "true_class"] for r in rows]
        return {"n": len(rows), "auth_accuracy": sum(auth) / len(rows), "class_accuracy": sum(cls) / len(rows)}

    # ------------------------------------------------------------------ stimuli
    def image_bytes(self, stimulus_id: str) -> bytes:
        return _read_bytes(str(self.study.image_path(stimulus_id)))

    def examples(self) -> list[tuple[str, Path]]:
        m = self.study.manifest
        ex = m[m["role"] == "example"].sort_values(["true_class", "stimulus_id"])
        return [(r.true_class, self.study.path / r.file) for r in ex.itertuples()]

    # ------------------------------------------------------------------ admin
    def counts(self) -> dict[str, Any]:
        def go(s):
            q = select(func.count(Participant.id)).where(Participant.study_id == self.cfg.id)
            n_part = s.scalar(q)
            n_done = s.scalar(q.where(Participant.completed_at.is_not(None)))
            n_started = s.scalar(q.where(Participant.consented_at.is_not(None)))
            n_resp = s.scalar(select(func.count(Response.id)).join(Participant).where(
                Participant.study_id == self.cfg.id))
            last = s.scalar(select(func.max(Response.responded_at)).join(Participant).where(
                Participant.study_id == self.cfg.id))
            return {"participants": n_part, "started": n_started, "completed": n_done, "responses": n_resp,
                    "last_response_at": last}
        return self.db.read(go)

    def participants_table(self) -> pd.DataFrame:
        def go(s):
            answered = (select(Assignment.participant_id, func.count(Response.id).label("answered"),
                               func.count(Assignment.id).label("trials"))
                        .outerjoin(Response, Response.assignment_id == Assignment.id)
                        .group_by(Assignment.participant_id).subquery())
            rows = s.execute(select(Participant, answered.c.answered, answered.c.trials)
                             .outerjoin(answered, answered.c.participant_id == Participant.id)
                             .where(Participant.study_id == self.cfg.id).order_by(Participant.number)).all()
            return [{"participant_id": p.id, "number": p.number, "entry": p.entry, "label": p.label,
                     "role": p.role, "years_experience": p.years_experience, "answered": int(a or 0),
                     "trials": int(t or 0), "created_at": p.created_at, "consented_at": p.consented_at,
                     "last_seen_at": p.last_seen_at, "completed_at": p.completed_at} for p, a, t in rows]
        return pd.DataFrame(self.db.read(go), columns=[
            "participant_id", "number", "entry", "label", "role", "years_experience", "answered", "trials",
            "created_at", "consented_at", "last_seen_at", "completed_at"])

    def stimulus_table(self) -> pd.DataFrame:
        def go(s):
            return s.execute(select(Assignment.stimulus_id, func.count(Response.id),
                                    func.sum(func.cast(Response.auth_response == "real", type_=_Int)))
                             .join(Response, Response.assignment_id == Assignment.id)
                             .join(Participant, Participant.id == Assignment.participant_id)
                             .where(Participant.study_id == self.cfg.id, Assignment.phase == "main",
                                    Assignment.is_attention_check.is_(False))
                             .group_by(Assignment.stimulus_id)).all()
        got = {sid: (n, int(k or 0)) for sid, n, k in self.db.read(go)}
        m = self.study.manifest
        main = m[m["role"] == "main"]
        out = main[["stimulus_id", "source", "true_class", "morph_strength"]].reset_index(drop=True).copy()
        out["ratings"] = [got.get(sid, (0, 0))[0] for sid in out["stimulus_id"]]
        said_real = [got.get(sid, (0, 0))[1] for sid in out["stimulus_id"]]
        out["said_real"] = [k / n if n else float("nan") for k, n in zip(said_real, out["ratings"])]
        return out

    def withdraw(self, participant_id: str) -> int:
        """Delete a participant and every assignment and response of theirs. Returns the responses deleted."""
        def go(s):
            p = s.get(Participant, participant_id)
            if p is None or p.study_id != self.cfg.id:
                raise KeyError(f"no participant {participant_id!r} in study {self.cfg.id!r}")
            n = s.scalar(select(func.count(Response.id)).where(Response.participant_id == p.id))
            ids = select(Assignment.id).where(Assignment.participant_id == p.id)
            s.execute(delete(Response).where(Response.assignment_id.in_(ids)))
            s.execute(delete(Assignment).where(Assignment.participant_id == p.id))
            s.delete(p)
            return int(n)
        return self.db.write(go)

    def close(self) -> None:
        self.db.dispose()


from sqlalchemy import Integer as _Int  # noqa: E402


@lru_cache(maxsize=512)
def _read_bytes(path: str) -> bytes:
    return Path(path).read_bytes()
