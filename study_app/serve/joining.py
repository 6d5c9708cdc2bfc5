"""Who takes part: personal invite links, open entry by study code, arrival numbers, counterbalancing slots, and
which participants are active, finished or abandoned.

* A participant's secret token is the only key to their session; only its sha256 is stored.
* Numbers and slots are allocated inside one transaction that holds the study row (``SELECT ... FOR UPDATE`` on
  PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` serialises writers anyway), so simultaneous joins never collide.
* The number seeds the participant's trial order; the slot picks the counterbalanced stimulus subset. **A slot
  (and the trial sequence it picks) is taken only at consent** (:meth:`Joining._start`): a personal link that was
  never opened, or opened and left before consenting, holds none. A consented, unfinished participant idle for
  ``design.abandon_after_minutes`` is *abandoned*: their slot goes to the next person who consents (if they come
  back they still continue; their subset then has one rater more).
* **Study-code entry creates nobody until consent**: the page shows the consent text first and calls
  :meth:`Joining.join_with_code` when the person agrees, so an abandoned, unconsented code entry leaves no row and
  counts nowhere. **One participant per browser per study**: a browser that holds a session of this study (the
  page remembers the token in ``localStorage``) resumes it; it is not offered a second one.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..design import trial_sequence
from ..storage import Assignment, Participant, StorageUnavailable, StudyRow, utcnow
from .errors import AccessDenied

STATUSES = ("invited", "active", "completed", "abandoned", "unconsented")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Invite:
    participant_id: str
    token: str
    number: int
    resumed: bool = False

    def url(self, base_url: str) -> str:
        return f"{base_url.rstrip('/')}/?t={self.token}"


def participant_status(p: Participant, now: dt.datetime, abandon_after: dt.timedelta) -> str:
    """invited (a personal link, not consented yet), active, completed, abandoned (consented, unfinished, idle past
    ``abandon_after``) or unconsented (a study-code entry without consent: only in databases written before
    code entries were created at consent; it counts nowhere)."""
    if p.completed_at is not None:
        return "completed"
    if p.consented_at is None:
        return "unconsented" if p.entry == "code" else "invited"
    last = max(t for t in (p.last_seen_at, p.consented_at, p.profile_at, p.instructions_at, p.created_at) if t)
    return "active" if now - last < abandon_after else "abandoned"


class Joining:
    """Mixin of :class:`~study_app.serve.session.StudyService`: invites, study-code entry, numbering, status."""

    @property
    def abandon_after(self) -> dt.timedelta:
        return dt.timedelta(minutes=self.cfg.design.abandon_after_minutes)

    def _lock_study(self, s: Session) -> None:
        """Hold the study row to the end of the transaction: one join or consent at a time."""
        s.execute(select(StudyRow.id).where(StudyRow.id == self.cfg.id).with_for_update())

    def _free_slot(self, s: Session, now: dt.datetime) -> int:
        """The smallest slot not held by a consented participant who is active or completed."""
        held = {p.slot for p in s.scalars(select(Participant).where(Participant.study_id == self.cfg.id,
                                                                    Participant.consented_at.is_not(None)))
                if p.slot is not None and participant_status(p, now, self.abandon_after) in ("active", "completed")}
        return next(k for k in range(len(held) + 1) if k not in held)

    def _start(self, s: Session, p: Participant) -> None:
        """Consent: the participant takes a free slot and gets the trial sequence it picks (once; a participant
        who already has trials, from a database written before slots were taken at consent, keeps them)."""
        if p.consented_at is not None:
            return
        self._lock_study(s)
        now = utcnow()
        p.consented_at = now
        if s.scalar(select(Assignment.id).where(Assignment.participant_id == p.id).limit(1)) is not None:
            return
        p.slot = self._free_slot(s, now)
        s.add_all([Assignment(participant_id=p.id, phase=t.phase, trial_index=t.trial_index, block=t.block,
                              stimulus_id=t.stimulus_id, is_attention_check=t.is_attention_check,
                              instructed_answer=t.instructed_answer, seq=k)
                   for k, t in enumerate(trial_sequence(self.study.manifest, self.cfg, p.number, p.slot))])

    def _create_participant(self, entry: str, label: str = "", consent: bool = False) -> Invite:
        token = secrets.token_urlsafe(18)
        pid = "p" + secrets.token_hex(5)

        def go(s: Session) -> Invite:
            self._lock_study(s)
            now = utcnow()
            numbers = s.scalars(select(Participant.number).where(Participant.study_id == self.cfg.id)).all()
            n = max(numbers, default=-1) + 1
            p = Participant(id=pid, study_id=self.cfg.id, number=n, slot=None, token_hash=hash_token(token),
                            entry=entry, label=label[:200], created_at=now,
                            last_seen_at=None if entry == "invite" else now)
            s.add(p)
            s.flush()
            if consent:
                self._start(s, p)
            return Invite(pid, token, n)

        for _ in range(3):  # the lock makes a collision impossible; a retry covers a lost connection mid-commit
            try:
                return self.db.write(go)
            except IntegrityError:
                continue
        raise StorageUnavailable("could not allocate a participant number; try again")

    def create_invites(self, n: int, label: str = "", entry: str = "invite") -> list[Invite]:
        return [self._create_participant(entry, label) for _ in range(n)]

    def code_is_valid(self, code: str) -> bool:
        expected = self.cfg.code
        return bool(expected) and hmac.compare_digest(code.strip().upper().encode(), expected.strip().upper().encode())

    def resume_with_code(self, code: str, remembered_token: str | None) -> Invite | None:
        """The session this browser remembers, if it is one of this study's (None: nothing to resume)."""
        if not self.code_is_valid(code):
            raise AccessDenied("unknown study code")
        if remembered_token:
            found = self.db.read(lambda s: self._find(s, remembered_token))
            if found is not None:
                return Invite(found.id, remembered_token, found.number, resumed=True)
        return None

    def join_with_code(self, code: str, remembered_token: str | None = None) -> Invite:
        """Open entry, called when the person **agrees to the consent text** of the study-code page: resume the
        session this browser remembers (if it is one of this study's), else a new, consented participant (number,
        slot and trials in one transaction)."""
        return (self.resume_with_code(code, remembered_token)
                or self._create_participant("code", consent=True))

    def _find(self, s: Session, token: str) -> Participant | None:
        if not token or len(token) > 200:
            return None
        return s.scalar(select(Participant).where(Participant.token_hash == hash_token(token),
                                                  Participant.study_id == self.cfg.id))

    def _participant(self, s: Session, token: str) -> Participant:
        p = self._find(s, token)
        if p is None:
            raise AccessDenied("unknown or withdrawn link")
        return p

    def participant_id(self, token: str) -> str:
        return self.db.read(lambda s: self._participant(s, token).id)

    def is_valid(self, token: str) -> bool:
        return self.db.read(lambda s: self._find(s, token)) is not None
