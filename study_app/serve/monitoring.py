"""What the study team sees and does: progress counts, participants (active, finished, abandoned), ratings per
stimulus, withdrawal, and the admin sign-in with a back-off that holds across browser sessions."""
from __future__ import annotations

import hmac
import math
from dataclasses import dataclass
from typing import Any

import pandas as pd
from sqlalchemy import Integer, delete, func, select
from sqlalchemy.orm import Session

from ..storage import AdminAttempt, Assignment, Participant, Response, utcnow
from .joining import participant_status

# wrong admin passwords allowed before the back-off starts; then 2, 4, 8 ... s between attempts, at most MAX
FREE_ATTEMPTS = 3
MAX_BACKOFF_S = 300.0
PARTICIPANT_COLUMNS = ["participant_id", "number", "slot", "status", "entry", "label", "role", "years_experience",
                       "answered", "trials", "created_at", "consented_at", "last_seen_at", "completed_at"]


@dataclass(frozen=True)
class SignIn:
    ok: bool
    wait_s: float = 0.0          # seconds until the next attempt is looked at
    checked: bool = True         # False: refused by the back-off without looking at the password


def wait_text(seconds: float) -> str:
    """A wait as the admin page says it: whole seconds, rounded up, never "0 s"."""
    return f"{max(1, math.ceil(seconds))} s"


def backoff_seconds(failures: int) -> float:
    """Seconds to wait after ``failures`` wrong passwords in a row."""
    return 0.0 if failures < FREE_ATTEMPTS else min(MAX_BACKOFF_S, 2.0 ** (failures - FREE_ATTEMPTS + 1))


class Monitoring:
    """Mixin of :class:`~study_app.serve.session.StudyService`: the admin page's queries and actions."""

    def admin_sign_in(self, password: str, expected: str) -> SignIn:
        """Check an admin password under a back-off shared by every browser session and server process: after
        ``FREE_ATTEMPTS`` wrong ones in a row, each attempt must wait 2, 4, 8, ... s (up to ``MAX_BACKOFF_S``)
        after the last; attempts inside the wait are refused without looking at the password."""
        def go(s: Session) -> SignIn:
            now = utcnow()
            recent = s.scalars(select(AdminAttempt).where(AdminAttempt.study_id == self.cfg.id)
                               .order_by(AdminAttempt.id.desc()).limit(64)).all()
            failures = 0
            for a in recent:
                if a.ok:
                    break
                failures += 1
            wait = backoff_seconds(failures)
            if wait and recent and (now - recent[0].at).total_seconds() < wait:
                return SignIn(False, round(wait - (now - recent[0].at).total_seconds(), 1), checked=False)
            ok = bool(expected) and hmac.compare_digest(password.encode(), expected.encode())
            s.add(AdminAttempt(study_id=self.cfg.id, at=now, ok=ok))
            return SignIn(ok, 0.0 if ok else backoff_seconds(failures + 1))
        return self.db.write(go)

    def counts(self) -> dict[str, Any]:
        df = self.participants_table()
        def go(s):
            n_resp = s.scalar(select(func.count(Response.id)).join(Participant).where(
                Participant.study_id == self.cfg.id))
            last = s.scalar(select(func.max(Response.responded_at)).join(Participant).where(
                Participant.study_id == self.cfg.id))
            return n_resp, last
        n_resp, last = self.db.read(go)
        by = df["status"].value_counts().to_dict() if len(df) else {}
        unconsented = by.get("unconsented", 0)   # old code entries that never consented: they count nowhere
        return {"participants": len(df) - unconsented,
                "started": int(df["consented_at"].notna().sum()) if len(df) else 0,
                "completed": by.get("completed", 0), "active": by.get("active", 0),
                "abandoned": by.get("abandoned", 0), "invited": by.get("invited", 0), "unconsented": unconsented,
                "responses": n_resp, "last_response_at": last}

    def participants_table(self) -> pd.DataFrame:
        """One row per participant with progress and status (invited / active / completed / abandoned)."""
        def go(s):
            answered = (select(Assignment.participant_id, func.count(Response.id).label("answered"),
                               func.count(Assignment.id).label("trials"))
                        .outerjoin(Response, Response.assignment_id == Assignment.id)
                        .group_by(Assignment.participant_id).subquery())
            rows = s.execute(select(Participant, answered.c.answered, answered.c.trials)
                             .outerjoin(answered, answered.c.participant_id == Participant.id)
                             .where(Participant.study_id == self.cfg.id).order_by(Participant.number)).all()
            now = utcnow()
            return [{"participant_id": p.id, "number": p.number, "slot": p.slot,
                     "status": participant_status(p, now, self.abandon_after), "entry": p.entry, "label": p.label,
                     "role": p.role, "years_experience": p.years_experience, "answered": int(a or 0),
                     "trials": int(t or 0), "created_at": p.created_at, "consented_at": p.consented_at,
                     "last_seen_at": p.last_seen_at, "completed_at": p.completed_at} for p, a, t in rows]
        return pd.DataFrame(self.db.read(go), columns=PARTICIPANT_COLUMNS)

    def stimulus_table(self) -> pd.DataFrame:
        def go(s):
            return s.execute(select(Assignment.stimulus_id, func.count(Response.id),
                                    func.sum(func.cast(Response.auth_response == "real", type_=Integer)))
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

    def n_responses(self) -> int:
        return self.db.read(lambda s: s.scalar(select(func.count(Response.id)).join(Participant).where(
            Participant.study_id == self.cfg.id)))

