"""The participant's session logic (shared by the web page and the bots), on SQLite and PostgreSQL."""
from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import func, select

from study_app.serve.session import AccessDenied, NotLoaded, StudyService, Superseded, TooFast
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
    assert service.state(joined.token).stage == "profile"    # (joined when the person agreed to the consent)


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
    with pytest.raises(TooFast):                        # choosing the cell type is an answer to that screen too
        service.choose_class(tok, t.assignment_id, "alpha")
    _earlier(service, t.assignment_id, 60)              # 60 s after the authenticity answer ...
    service.choose_class(tok, t.assignment_id, "alpha")  # ... the class chosen now:
    with pytest.raises(TooFast):                        # the class-confidence question has its own start
        service.answer_class(tok, t.assignment_id, "alpha", 2)
    _earlier(service, t.assignment_id, 60)
    with pytest.raises(ValueError, match="chosen cell type"):   # the answer is the chosen cell type's
        service.answer_class(tok, t.assignment_id, "beta", 2)
    assert not service.answer_class(tok, t.assignment_id, "alpha", 2).duplicate
    service.cfg.design.min_rt_ms = 30.0


def _earlier(svc, assignment_id: int, seconds: float) -> None:
    """Move a trial's screen times back (no timed waits in the tests)."""
    import datetime as dt

    def go(s):
        a = s.get(Assignment, assignment_id)
        for col in ("loaded_at", "auth_answered_at", "class_choice_at"):
            if getattr(a, col) is not None:
                setattr(a, col, getattr(a, col) - dt.timedelta(seconds=seconds))
    svc.db.write(go)


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


def test_a_reload_on_the_confidence_question_keeps_the_chosen_cell_type(service):
    tok = service.create_invites(1)[0].token
    onboard(service, tok)
    t = shown(service, tok, "tab")
    time.sleep(WAIT)
    service.answer_auth(tok, t.assignment_id, "synthetic", 2, session_key="tab")
    time.sleep(WAIT)
    service.choose_class(tok, t.assignment_id, "beta", session_key="tab")
    t2 = service.current_trial(tok, "reloaded")                 # a reload: a new browser session
    assert (t2.assignment_id, t2.step, t2.class_choice, t2.loaded) == (t.assignment_id, "cconf", "beta", False)
    with pytest.raises(NotLoaded):
        service.answer_class(tok, t.assignment_id, "beta", 3, session_key="reloaded")
    service.confirm_loaded(tok, t2.assignment_id, t2.presentation)
    service.cfg.design.min_rt_ms = 10_000.0                      # (this service's own config object)
    with pytest.raises(TooFast):                                 # the screen starts again when it is on view
        service.answer_class(tok, t.assignment_id, "beta", 3, session_key="reloaded")
    service.cfg.design.min_rt_ms = 30.0
    time.sleep(WAIT)
    service.choose_class(tok, t.assignment_id, None, session_key="reloaded")    # Backspace: back to the cell type
    assert service.current_trial(tok, "reloaded").step == "class"
    time.sleep(WAIT)
    service.choose_class(tok, t.assignment_id, "alpha", session_key="reloaded")
    time.sleep(WAIT)
    assert not service.answer_class(tok, t.assignment_id, "alpha", 3, session_key="reloaded").duplicate
    r = service.db.read(lambda s: s.scalar(select(Response)))
    assert (r.auth_response, r.class_response, r.class_confidence_level) == ("synthetic", "alpha", 3)


def test_two_tabs_of_one_link_the_newest_holds_the_study(service):
    """The rule: the tab opened last holds the study (presentations, answers) until another takes it back with
    "Continue here"; the other tab is told so and its answers are refused, never silently dropped."""
    tok = service.create_invites(1)[0].token
    onboard(service, tok)
    a = shown(service, tok, "A")
    b = shown(service, tok, "B")                                  # the same link opened in a second tab
    assert a.assignment_id == b.assignment_id and b.presentation == a.presentation + 1
    st, t = service.view(tok, "A", claim=False)                   # the first tab runs again: it is told
    assert st.elsewhere and t is None
    time.sleep(WAIT)
    with pytest.raises(Superseded):
        service.answer_auth(tok, a.assignment_id, "real", 1, session_key="A")
    assert service.answer_auth(tok, b.assignment_id, "synthetic", 4, session_key="B")
    st, t = service.view(tok, "B", claim=False)                   # the holder goes on undisturbed
    assert not st.elsewhere and t.step == "class" and t.loaded
    st, t = service.view(tok, "A", claim=True)                    # "Continue here" in the first tab
    assert not st.elsewhere and t.auth_response == "synthetic" and not t.loaded
    with pytest.raises(Superseded):
        service.choose_class(tok, t.assignment_id, "alpha", session_key="B")
    assert service.view(tok, "B", claim=False)[0].elsewhere


def test_a_slot_is_taken_at_consent_and_code_entries_are_created_consented(service):
    inv = service.create_invites(1)[0]
    row = service.participants_table().iloc[0]
    assert row["status"] == "invited" and row["trials"] == 0 and row["slot"] is None
    joined = service.join_with_code("TINY")                      # the page calls this when the person agrees
    assert service.state(joined.token).stage == "profile"
    service.give_consent(inv.token)
    table = service.participants_table().set_index("participant_id")
    assert table.loc[joined.participant_id, "slot"] == 0 and table.loc[inv.participant_id, "slot"] == 1
    assert table["trials"].min() > 0
    # a study-code entry that never consented (possible only in databases from before) counts nowhere
    from study_app.storage import Participant
    service.db.write(lambda s: s.add(Participant(id="pold", study_id=service.cfg.id, number=99, slot=2,
                                                 token_hash="0" * 64, entry="code")))
    c = service.counts()
    assert (c["participants"], c["unconsented"], c["started"]) == (2, 1, 2)
    assert service.join_with_code("TINY").participant_id not in ("pold",)
    assert service.participants_table().set_index("participant_id")["slot"].max() == 2   # its slot 2 is free
