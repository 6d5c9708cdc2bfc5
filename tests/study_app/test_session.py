"""The participant's session logic (shared by the web page and the bots), on SQLite and PostgreSQL."""
from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import func, select

from study_app.serve.session import AccessDenied, NotLoaded, StudyService, TooFast
from study_app.storage import Assignment, Response, StorageUnavailable

WAIT = 0.035   # just over design.min_rt_ms (30 ms) in the tiny study


def onboard(svc, token):
    svc.give_consent(token)
    svc.save_profile(token, "haematologist", 12)
    svc.finish_instructions(token)


def shown(svc, token, session="s1"):
    """The current trial, presented to ``session`` and confirmed loaded (as the page's browser reports it)."""
    t = svc.current_trial(token, session)
    if t is not None and not t.loaded:
        svc.confirm_loaded(token, t.assignment_id, t.presentation)
    return t


def answer(svc, token, session="s1", auth="real", cls=None):
    t = shown(svc, token, session)
    time.sleep(WAIT)
    svc.answer_auth(token, t.assignment_id, auth, 3)
    time.sleep(WAIT)
    return t, svc.answer_class(token, t.assignment_id, cls or svc.classes[0], 2)


def n_responses(svc) -> int:
    return svc.db.read(lambda s: s.scalar(select(func.count(Response.id))))


def test_full_flow_resume_and_score(built_study, db_url):
    svc = StudyService(built_study, db_url)
    inv = svc.create_invites(1)[0]
    tok = inv.token
    assert svc.state(tok).stage == "consent"
    with pytest.raises(AccessDenied):
        svc.save_profile(tok, "haematologist", 3)            # consent first
    onboard(svc, tok)
    st = svc.state(tok)
    assert st.stage == "practice" and st.n_practice == 2 and st.n_main == 10   # 9 + 1 attention check
    t, res = answer(svc, tok)
    assert res.phase == "practice" and res.feedback["source"] in ("real", "synthetic") and not res.duplicate
    answer(svc, tok)
    assert svc.state(tok).stage == "main_intro"
    svc.end_break(tok)
    seen = []
    for _ in range(4):
        t, res = answer(svc, tok)
        assert res.feedback is None                          # no feedback on main trials
        seen.append(t.trial_index)
    assert seen == [0, 1, 2, 3]
    svc.close()
    # "restart the server": a new service on the same database resumes at the next unanswered trial
    svc2 = StudyService(built_study, db_url)
    st = svc2.state(tok)
    assert st.stage == "main" and st.main_done == 4
    t = shown(svc2, tok, "other-browser")
    assert t.phase == "main" and t.trial_index == 4
    while True:
        st = svc2.state(tok)
        if st.stage == "break":
            svc2.end_break(tok)
            continue
        if st.stage == "done":
            break
        t = shown(svc2, tok, "s2")
        time.sleep(WAIT)
        svc2.answer_auth(tok, t.assignment_id, t.instructed_answer or "synthetic", 4)
        time.sleep(WAIT)
        svc2.answer_class(tok, t.assignment_id, "cannot_tell", 4)
    assert n_responses(svc2) == 12
    sc = svc2.score(tok)
    m = svc2.study.manifest
    rows = svc2.db.read(lambda s: s.execute(
        select(Assignment.stimulus_id, Response.auth_response, Response.class_response)
        .join(Response, Response.assignment_id == Assignment.id)
        .where(Assignment.phase == "main", Assignment.is_attention_check.is_(False))).all())
    assert sc["n"] == len(rows) == 9
    assert sc["auth_accuracy"] == pytest.approx(sum(a == m.at[i, "source"] for i, a, _ in rows) / 9)
    assert sc["class_accuracy"] == pytest.approx(sum(c == m.at[i, "true_class"] for i, _, c in rows) / 9)
    first_four_att = svc2.db.read(lambda s: s.scalar(select(func.count(Assignment.id)).where(
        Assignment.phase == "main", Assignment.trial_index < 4, Assignment.is_attention_check.is_(True))))
    assert sum(c == "cannot_tell" for _, _, c in rows) == 5 + first_four_att   # trials 5..10 said "cannot tell"
    svc2.close()


def test_double_submission_never_creates_a_second_row(service):
    tok = service.create_invites(1)[0].token
    onboard(service, tok)
    t, first = answer(service, tok)
    again = service.answer_class(tok, t.assignment_id, service.classes[1], 4)     # re-sent / double click
    assert again.duplicate and again.response_id == first.response_id
    assert service.answer_auth(tok, t.assignment_id, "synthetic", 1) is False      # first answer wins
    assert n_responses(service) == 1


def test_concurrent_duplicate_submissions(service):
    """Eight threads send the same answer at once (a flaky network re-sending): exactly one row."""
    tok = service.create_invites(1)[0].token
    onboard(service, tok)
    t = shown(service, tok, "s")
    time.sleep(WAIT)
    service.answer_auth(tok, t.assignment_id, "real", 2)
    time.sleep(WAIT)
    barrier = threading.Barrier(8)
    results = []

    def send():
        barrier.wait()
        results.append(service.answer_class(tok, t.assignment_id, service.classes[0], 3))
    threads = [threading.Thread(target=send) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(results) == 8 and sum(not r.duplicate for r in results) == 1
    assert len({r.response_id for r in results}) == 1
    assert n_responses(service) == 1


def test_tokens_protect_sessions(service):
    a, b = service.create_invites(2)
    for inv in (a, b):
        onboard(service, inv.token)
    ta = shown(service, a.token, "x")
    with pytest.raises(AccessDenied):
        service.state("not-a-token")
    with pytest.raises(AccessDenied):
        service.current_trial("", "x")
    time.sleep(WAIT)
    with pytest.raises(AccessDenied):                      # b cannot answer a's trial
        service.answer_auth(b.token, ta.assignment_id, "real", 1)
    with pytest.raises(AccessDenied):
        service.answer_class(b.token, ta.assignment_id, "alpha", 1)
    assert a.participant_id != a.token and service.participant_id(a.token) == a.participant_id
    with pytest.raises(AccessDenied):
        service.join_with_code("WRONG")
    joined = service.join_with_code("tiny")                  # codes are case-insensitive
    assert service.state(joined.token).stage == "consent"


def test_too_fast_answers_are_ignored(service):
    tok = service.create_invites(1)[0].token
    onboard(service, tok)
    t = service.current_trial(tok, "s")
    time.sleep(WAIT)
    with pytest.raises(NotLoaded):                      # the browser has not confirmed the image yet
        service.answer_auth(tok, t.assignment_id, "real", 1)
    assert service.confirm_loaded(tok, t.assignment_id, t.presentation + 1) is False   # a stale confirmation
    assert service.confirm_loaded(tok, t.assignment_id, t.presentation) is True
    service.cfg.design.min_rt_ms = 10_000.0     # (this service's own config object) any answer is "too fast"
    with pytest.raises(TooFast):
        service.answer_auth(tok, t.assignment_id, "real", 1)
    service.cfg.design.min_rt_ms = 30.0
    time.sleep(WAIT)
    assert service.answer_auth(tok, t.assignment_id, "real", 1) is True
    # the cell-type question has its own minimum time, from the moment the authenticity answer moved the screen on
    service.cfg.design.min_rt_ms = 10_000.0
    with pytest.raises(TooFast):
        service.answer_class(tok, t.assignment_id, "cannot_tell", 1)
    service.cfg.design.min_rt_ms = 300.0
    time.sleep(0.35)                                    # past 300 ms since the authenticity answer ...
    chosen_at = __import__("study_app.storage", fromlist=["utcnow"]).utcnow()   # ... but a class chosen just now
    with pytest.raises(TooFast):                        # the class-confidence question has its own start
        service.answer_class(tok, t.assignment_id, "alpha", 2, screen_since=chosen_at)
    time.sleep(0.35)
    assert not service.answer_class(tok, t.assignment_id, "alpha", 2, screen_since=chosen_at).duplicate


def test_response_times_are_measured_on_the_server(service):
    tok = service.create_invites(1)[0].token
    onboard(service, tok)
    t = shown(service, tok, "s")
    time.sleep(0.2)
    service.answer_auth(tok, t.assignment_id, "real", 1)
    time.sleep(0.1)
    service.answer_class(tok, t.assignment_id, "alpha", 1)
    r = service.db.read(lambda s: s.scalar(select(Response)))
    assert 190 <= r.auth_rt_ms < 1500 and r.class_rt_ms - r.auth_rt_ms >= 95
    assert r.auth_confidence == pytest.approx(50.0) and r.class_confidence == pytest.approx(100 / 3, abs=0.01)


def test_counterbalancing_across_participants(service):
    invs = service.create_invites(6)
    assert [i.number for i in invs] == list(range(6))
    per = {}
    for inv in invs:
        onboard(service, inv.token)
        ids = service.db.read(lambda s, pid=inv.participant_id: s.scalars(
            select(Assignment.stimulus_id).where(Assignment.participant_id == pid, Assignment.phase == "main",
                                                 Assignment.is_attention_check.is_(False))).all())
        per[inv.number] = set(ids)
    assert per[0] == per[2] == per[4] and per[1] == per[3] == per[5] and not per[0] & per[1]
    assert len(per[0] | per[1]) == 18


def test_withdraw_deletes_everything(service):
    a, b = service.create_invites(2)
    for inv in (a, b):
        onboard(service, inv.token)
        answer(service, inv.token)
    assert service.withdraw(a.participant_id) == 1
    with pytest.raises(AccessDenied):
        service.state(a.token)
    assert n_responses(service) == 1 and service.state(b.token).practice_done == 1
    with pytest.raises(KeyError):
        service.withdraw("nobody")


def test_unreachable_database_gives_storage_unavailable(built_study, pg_server):
    url = pg_server["url"].replace(str(pg_server["port"]), "1")      # nothing listens on port 1
    t0 = time.perf_counter()
    with pytest.raises(StorageUnavailable, match="nothing already saved is lost"):
        StudyService(built_study, url, retry_seconds=0.5)
    assert time.perf_counter() - t0 < 15


def test_locked_sqlite_database_keeps_the_answer_for_retry(built_study, tmp_path):
    import sqlite3
    url = f"sqlite:///{tmp_path / 'locked.db'}"
    svc = StudyService(built_study, url, retry_seconds=0.3)
    svc.db.engine.dispose()
    from study_app.storage import Database
    svc.db = Database(url, retry_seconds=0.3, busy_timeout_s=0.1)
    tok = svc.create_invites(1)[0].token
    onboard(svc, tok)
    t = shown(svc, tok, "s")
    time.sleep(WAIT)
    svc.answer_auth(tok, t.assignment_id, "real", 2)
    time.sleep(WAIT)
    blocker = sqlite3.connect(tmp_path / "locked.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")                        # another writer holds the lock
    with pytest.raises(StorageUnavailable):
        svc.answer_class(tok, t.assignment_id, "alpha", 2)
    assert svc.state(tok).practice_done == 0                  # reads still work (WAL); nothing half-written
    blocker.execute("ROLLBACK")
    blocker.close()
    res = svc.answer_class(tok, t.assignment_id, "alpha", 2)  # the page's "Try again"
    assert not res.duplicate and svc.state(tok).practice_done == 1
    svc.close()
