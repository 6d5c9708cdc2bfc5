"""Flow tests of the Streamlit pages with streamlit.testing (AppTest): the participant's whole path, resume,
double submission, wrong links, study-code entry, and the admin page."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

import study_app
from study_app.serve.session import StudyService
from study_app.storage import Response

APP = str(Path(study_app.__file__).resolve().parent / "serve" / "web" / "app.py")
ADMIN = "from study_app.serve.web.admin import admin_page\nadmin_page()\n"


@pytest.fixture
def svc(built_study, tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'app.db'}"
    monkeypatch.setenv("CYTOSTUDY_STUDY_DIR", str(built_study))
    monkeypatch.setenv("CYTOSTUDY_DB_URL", url)
    monkeypatch.setenv("CYTOSTUDY_ADMIN_PASSWORD", "s3cret-pw")
    s = StudyService(built_study, url)
    yield s
    s.close()


def open_app(token: str | None = None, **params) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=90)
    if token:
        at.query_params["t"] = token
    for k, v in params.items():
        at.query_params[k] = v
    return at.run()


def keys(at, prefix):
    return [b.key for b in at.button if b.key and b.key.startswith(prefix)]


def texts(at) -> str:
    parts = [e.value for e in at.markdown] + [e.value for e in at.header] + [e.value for e in at.title]
    parts += [e.value for e in at.success] + [e.value for e in at.error] + [e.value for e in at.info]
    return "\n".join(map(str, parts))


def onboard(at: AppTest) -> AppTest:
    assert "consent" in texts(at).lower()
    at.button(key="consent-agree").click().run()
    assert "About you" in texts(at)
    assert keys(at, "role-") == ["role-haematologist", "role-trainee", "role-biomedical_scientist", "role-other"]
    at.button(key="role-haematologist").click().run()
    at.number_input[0].set_value(11.0)
    next(b for b in at.button if b.label == "Continue").click().run()
    assert "How it works" in texts(at)
    assert len(at.image) >= 1                                        # labelled example cells
    at.button(key="instructions-continue").click().run()
    return at


def loaded(at: AppTest, svc, token: str) -> AppTest:
    """Confirm the current trial's image loaded, as the page's screen component reports it, and rerun."""
    from sqlalchemy import select as sel

    from study_app.storage import Assignment
    at.run()                                                         # the page as it is now (maybe re-presented)
    st = svc.state(token)
    if st.stage not in ("practice", "main"):
        return at
    a = svc.db.read(lambda s: s.scalars(sel(Assignment).where(Assignment.participant_id == st.participant_id,
                                                              Assignment.shown_at.is_not(None))
                                        .order_by(Assignment.shown_at.desc())).first())
    svc.confirm_loaded(token, a.id, a.n_presentations)
    return at.run()


def answer_trial(at: AppTest, svc, token: str, side="real", cls_index=0, level=3) -> AppTest:
    assert "Loading the image" in "\n".join(str(c.value) for c in at.caption) and not keys(at, "auth-")
    loaded(at, svc, token)
    auth = [k for k in keys(at, "auth-") if f"-{side}-{level}" in k]
    assert len(auth) == 1, keys(at, "")
    time.sleep(0.04)                                                 # over the tiny study's min_rt_ms
    at.button(key=auth[0]).click().run()
    cls = [k for k in keys(at, "class-") if not k.endswith("cannot_tell")]
    time.sleep(0.04)                                                 # each screen has its own minimum time
    at.button(key=cls[cls_index]).click().run()
    conf = keys(at, "cconf-")
    assert len(conf) == 4
    time.sleep(0.04)
    at.button(key=conf[level - 1]).click().run()
    assert not at.exception, at.exception
    return at


def progress(at) -> str:
    return next(m.value for m in at.markdown if str(m.value).startswith('<div class="cyto-progress">'))


def n_rows(svc) -> int:
    return svc.db.read(lambda s: s.scalar(select(func.count(Response.id))))


def test_consent_practice_trials_breaks_end(svc):
    tok = svc.create_invites(1)[0].token
    at = onboard(open_app(tok))
    assert "Practice 1 of 2" in progress(at)
    answer_trial(at, svc, tok)
    assert "Practice feedback" in texts(at)                          # feedback on practice trials
    at.button(key="feedback-next").click().run()
    answer_trial(at, svc, tok, side="synthetic")
    at.button(key="feedback-next").click().run()
    assert "Practice complete" in texts(at)
    at.button(key="interlude").click().run()
    n_main = svc.state(tok).n_main
    seen_break = False
    for i in range(n_main):
        if keys(at, "interlude"):
            assert "short break" in texts(at)
            seen_break = True
            at.button(key="interlude").click().run()
        assert f"Image {i + 1} of {n_main}" in progress(at)
        att = [e.value for e in at.info if "Attention check" in str(e.value)]
        side = ("real" if "**Real**" in att[0] else "synthetic") if att else "real"
        answer_trial(at, svc, tok, side=side, cls_index=i % 3)
    assert seen_break and svc.state(tok).n_blocks == 2
    assert "Thank you" in texts(at)
    assert [m.label for m in at.metric] == ["Real vs AI-generated", "Cell type"]
    assert n_rows(svc) == 2 + n_main


def test_resume_after_reload_continues_at_the_next_unanswered_trial(svc):
    tok = svc.create_invites(1)[0].token
    at = onboard(open_app(tok))
    answer_trial(at, svc, tok)
    at.button(key="feedback-next").click().run()
    # half-way through trial 2: the authenticity answer is given, then the page is closed
    loaded(at, svc, tok)
    auth = [k for k in keys(at, "auth-") if k.endswith("-synthetic-4")][0]
    time.sleep(0.04)
    at.button(key=auth).click().run()
    again = open_app(tok)                                            # a new browser session, same link
    assert "Practice 2 of 2" in progress(again)
    assert not keys(again, "class-")                                 # a new presentation: the image loads first
    loaded(again, svc, tok)
    assert any("AI-generated, 100 %" in str(m.value) for m in again.markdown)   # its committed answer is kept
    assert keys(again, "class-") and not keys(again, "auth-")
    cls = keys(again, "class-")[1]
    time.sleep(0.04)
    again.button(key=cls).click().run()                              # a cell type chosen ...
    third = open_app(tok)                                            # ... and the page reloaded again
    loaded(third, svc, tok)
    assert keys(third, "cconf-") and "that it is a beta" in texts(third)   # the chosen cell type is kept
    time.sleep(0.04)
    third.button(key=keys(third, "cconf-")[0]).click().run()
    again = third
    assert "Practice feedback" in texts(again) and n_rows(svc) == 2
    rows = svc.db.read(lambda s: s.scalars(select(Response).order_by(Response.id)).all())
    assert [r.n_reconnects for r in rows] == [0, 2] and rows[1].n_presentations == 3   # the reloads are recorded
    assert rows[1].class_response == "beta"


def test_two_tabs_the_newer_holds_the_study_and_the_older_is_told(svc):
    """Two tabs of one link: the newer one holds the study; the older one's stale answer is refused *and shown as
    not stored* (never dropped silently), its page says the study is open elsewhere, and "Continue here" takes
    the study back (the other tab is then told)."""
    tok = svc.create_invites(1)[0].token
    a = onboard(open_app(tok))
    loaded(a, svc, tok)                                              # a's image is on screen: its buttons show
    stale = [k for k in keys(a, "auth-") if k.endswith("-real-2")][0]
    b = open_app(tok)                                                # the same link in a second, newer tab
    assert progress(a) == progress(b)
    time.sleep(0.04)
    a.button(key=stale).click().run()                                # a's page still showed the trial
    assert "open in another tab" in "\n".join(str(w.value) for w in a.warning)
    assert "was not stored" in texts(a) and not keys(a, "auth-")
    answer_trial(b, svc, tok)                                        # the newer tab answers undisturbed
    assert n_rows(svc) == 1
    a.button(key="continue-here").click().run()                     # "Continue here" in the older tab
    assert "Practice 2 of 2" in progress(a) and "Loading the image" in "\n".join(str(c.value) for c in a.caption)
    b.button(key="feedback-next").click().run()
    assert "open in another tab" in "\n".join(str(w.value) for w in b.warning)


def test_wrong_or_withdrawn_link(svc):
    at = open_app("not-a-real-token")
    assert "This link is not valid" in texts(at) and not keys(at, "")
    inv = svc.create_invites(1)[0]
    svc.withdraw(inv.participant_id)
    at = open_app(inv.token)
    assert "This link is not valid" in texts(at)


def open_code(code: str, remembered: str = "") -> AppTest:
    """The study-code page in a browser that remembers ``remembered`` (what the page's component reports)."""
    at = AppTest.from_file(APP, default_timeout=90)
    at.query_params["code"] = code
    at.session_state["remembered"] = remembered
    return at.run()


def test_study_code_entry_creates_a_participant_only_at_consent(svc):
    at = open_code("TINY")
    assert "consent" in texts(at).lower() and svc.counts()["participants"] == 0   # nobody until they agree
    at.button(key="consent-agree").click().run()
    tok = at.query_params["t"]
    assert tok and svc.state(tok).stage == "profile" and svc.counts()["participants"] == 1
    # the same browser opens the code link again: it continues its own session, and is offered no second one
    again = open_code("tiny", remembered=tok)
    assert "Welcome back" in texts(again) and keys(again, "") == ["resume"]
    again.button(key="resume").click().run()
    assert again.query_params["t"] == tok and "About you" in texts(again)
    assert svc.counts()["participants"] == 1
    wrong = open_code("WRONG")
    assert wrong.text_input[0].value == "WRONG"
    next(b for b in wrong.button if b.label == "Begin").click().run()
    assert "not valid" in texts(wrong) and "t" not in wrong.query_params


def test_admin_needs_the_password_and_exports(svc, built_study):
    for inv in svc.create_invites(2):
        for f in (svc.give_consent,):
            f(inv.token)
        svc.save_profile(inv.token, "trainee", 2)
        svc.finish_instructions(inv.token)
        t = svc.current_trial(inv.token, "s")
        svc.confirm_loaded(inv.token, t.assignment_id, t.presentation)
        time.sleep(0.04)
        svc.answer_auth(inv.token, t.assignment_id, "real", 2)
        time.sleep(0.04)
        svc.answer_class(inv.token, t.assignment_id, "beta", 2)
    at = AppTest.from_string(ADMIN, default_timeout=90).run()
    assert not at.tabs
    at.text_input[0].input("wrong")
    next(b for b in at.button if b.label == "Sign in").click().run()
    assert "Wrong password" in texts(at) and not at.tabs
    at.text_input[0].input("s3cret-pw")
    next(b for b in at.button if b.label == "Sign in").click().run()
    assert len(at.tabs) == 5
    assert [m.value for m in at.metric] == ["2", "2", "0", "2", "2", "0"]   # ... responses, active, abandoned
    next(b for b in at.button if b.label == "Prepare export").click().run()
    assert not at.exception, at.exception
    exports = sorted((built_study / "exports").glob("responses-*.parquet"))
    assert exports
    assert exports[-1].with_name(exports[-1].name.replace("responses-", "stimuli-")).is_file()
    import pandas as pd
    df = pd.read_parquet(exports[-1])
    assert len(df) == 2 and set(df["phase"]) == {"practice"}
    assert [b.label for b in at.get("download_button")] == ["Download export (zip: responses + stimuli)"]
    from study_app.export import read_provenance
    assert read_provenance(exports[-1])["n_responses"] == 2


def test_admin_is_disabled_without_a_password(svc, monkeypatch):
    monkeypatch.delenv("CYTOSTUDY_ADMIN_PASSWORD")
    at = AppTest.from_string(ADMIN, default_timeout=90).run()
    assert "disabled" in texts(at) and not at.text_input


def test_unreachable_database_shows_a_retry_message(built_study, monkeypatch):
    monkeypatch.setenv("CYTOSTUDY_STUDY_DIR", str(built_study))
    monkeypatch.setenv("CYTOSTUDY_DB_URL", "postgresql+psycopg://postgres@127.0.0.1:1/none")   # nothing listens
    pytest.importorskip("psycopg")
    at = open_app("some-token")
    assert "could not reach the study database" in "\n".join(str(w.value) for w in at.warning)
    assert any(b.label == "Try again" for b in at.button) and not at.exception
