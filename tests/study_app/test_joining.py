"""Joining and monitoring on SQLite and PostgreSQL: simultaneous joins, counterbalancing slots of abandoned
participants, resuming a code entry in the same browser, presentations and reconnects, the admin back-off, and
manifest versions kept in the database."""
from __future__ import annotations

import datetime as dt
import json
import shutil
import threading
import time

import pytest
from sqlalchemy import select, update

from study_app.serve.monitoring import FREE_ATTEMPTS, backoff_seconds
from study_app.serve.session import StudyMismatch, StudyService
from study_app.storage import AdminAttempt, ManifestVersion, Participant, Response

WAIT = 0.035


def test_simultaneous_joins_never_collide(service):
    """30 people press "Begin" at the same moment: 30 participants, numbers 0..29, no error (was: at most 20 on
    PostgreSQL). The benchmark does 100 (benchmarks/study_concurrency.py)."""
    n = 30
    barrier, got, errors = threading.Barrier(n), [], []

    def join():
        barrier.wait()
        try:
            got.append(service.join_with_code("TINY"))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(repr(exc))
    threads = [threading.Thread(target=join) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and sorted(i.number for i in got) == list(range(n))
    slots = service.participants_table()["slot"].tolist()
    assert sorted(slots) == list(range(n))


def _idle(service, participant_id: str, minutes: float) -> None:
    then = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=minutes)
    service.db.write(lambda s: s.execute(update(Participant).where(Participant.id == participant_id).values(
        last_seen_at=then, created_at=then, consented_at=then)))


def test_abandoned_slots_are_released_and_the_admin_sees_it(service):
    a, b = service.join_with_code("TINY"), service.join_with_code("TINY")
    invited = service.create_invites(1)[0]                     # a personal link not consented yet: no slot
    _idle(service, a.participant_id, service.cfg.design.abandon_after_minutes + 1)
    table = service.participants_table().set_index("participant_id")
    assert table.loc[a.participant_id, "status"] == "abandoned"
    assert table.loc[b.participant_id, "status"] == "active"
    assert table.loc[invited.participant_id, "status"] == "invited"
    c = service.join_with_code("TINY")
    table = service.participants_table().set_index("participant_id")
    assert table.loc[c.participant_id, "slot"] == table.loc[a.participant_id, "slot"] == 0   # a's slot, reused
    assert c.number == 3                                        # numbers (order seeds) are never reused
    counts = service.counts()
    assert (counts["abandoned"], counts["active"], counts["invited"]) == (1, 2, 1)
    # the same subset of stimuli, in a different order
    ids = {p: service.db.read(lambda s, p=p: [x.stimulus_id for x in sorted(
        s.get(Participant, p).assignments, key=lambda x: x.seq) if x.phase == "main" and not x.is_attention_check])
        for p in (a.participant_id, c.participant_id)}
    assert set(ids[a.participant_id]) == set(ids[c.participant_id]) and ids[a.participant_id] != ids[c.participant_id]


def test_joining_by_code_in_the_same_browser_resumes(service):
    first = service.join_with_code("TINY")
    again = service.join_with_code("tiny", remembered_token=first.token)
    assert again.resumed and again.participant_id == first.participant_id
    service.withdraw(first.participant_id)
    fresh = service.join_with_code("TINY", remembered_token=first.token)   # a withdrawn session is not resumed
    assert not fresh.resumed and fresh.participant_id != first.participant_id
    other = service.join_with_code("TINY", remembered_token="someone-elses-or-garbage")
    assert not other.resumed


def test_presentations_reconnects_and_image_retries_are_recorded(service):
    tok = service.create_invites(1)[0].token
    service.give_consent(tok)
    service.save_profile(tok, "haematologist", 3)
    service.finish_instructions(tok)
    t = service.current_trial(tok, "tab-1")
    assert (t.presentation, t.loaded) == (1, False)
    service.retry_image(tok, t.assignment_id, "tab-1")             # the image did not load: handed out again
    t = service.current_trial(tok, "tab-1")
    assert (t.presentation, t.loaded) == (2, False)
    assert service.confirm_loaded(tok, t.assignment_id, 2)
    t = service.current_trial(tok, "tab-2")                        # a reconnect (new browser session)
    assert (t.presentation, t.loaded) == (3, False)
    service.confirm_loaded(tok, t.assignment_id, 3)
    time.sleep(WAIT)
    service.answer_auth(tok, t.assignment_id, "real", 2)
    time.sleep(WAIT)
    service.answer_class(tok, t.assignment_id, "cannot_tell", 1)
    r = service.db.read(lambda s: s.scalar(select(Response)))
    assert (r.n_presentations, r.n_reconnects) == (3, 1) and r.image_load_ms >= 0


def test_admin_back_off_holds_across_sessions_and_processes(service, built_study):
    other = StudyService(built_study, service.db.url)               # a second server process on the same database
    for i in range(FREE_ATTEMPTS):
        assert not (service if i % 2 else other).admin_sign_in("guess", "right").ok
    res = service.admin_sign_in("right", "right")                   # even the right password waits now
    assert not res.ok and not res.checked and 0 < res.wait_s <= backoff_seconds(FREE_ATTEMPTS)
    service.db.write(lambda s: s.execute(update(AdminAttempt).values(
        at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=backoff_seconds(FREE_ATTEMPTS) + 1))))
    assert other.admin_sign_in("right", "right").ok                 # after the wait, and the count starts over
    assert service.admin_sign_in("guess", "right").checked
    assert backoff_seconds(FREE_ATTEMPTS + 10) > backoff_seconds(FREE_ATTEMPTS + 1) > 0
    other.close()


def test_the_database_keeps_the_manifest_of_its_answers(built_study, tmp_path):
    url = f"sqlite:///{tmp_path / 'v.db'}"
    svc = StudyService(built_study, url)
    mv = svc.db.read(lambda s: s.get(ManifestVersion, (svc.cfg.id, svc.study.content_hash)))
    assert mv is not None and mv.manifest_csv == (built_study / "manifest.csv").read_text()
    svc.close()
    rebuilt = tmp_path / "rebuilt"                                   # the folder is rebuilt: other stimuli
    shutil.copytree(built_study, rebuilt, ignore=shutil.ignore_patterns("study.db*", "exports"))
    meta = json.loads((rebuilt / "study.json").read_text())
    meta["content_hash"] = "f" * 64
    (rebuilt / "study.json").write_text(json.dumps(meta))
    m = (rebuilt / "manifest.csv").read_text().replace(",real,", ",REAL?,")
    (rebuilt / "manifest.csv").write_text(m)
    with pytest.raises(StudyMismatch, match="keep their own manifest"):
        StudyService(rebuilt, url)                                   # serving it is refused
    reader = StudyService(rebuilt, url, check_version=False)         # export / status read the stored version
    assert reader.version_note and set(reader.study.manifest["source"]) == {"real", "synthetic"}
    assert reader.study.content_hash == svc.study.content_hash
    reader.close()
