"""A real browser (Debian's Chromium via Playwright) against ``cytostudy serve``:

* a participant does a short study with the keyboard only, reloads mid-way and resumes; the server is SIGKILLed
  mid-study, the page shows the study's own outage message (never Streamlit's developer dialog), the server comes
  back and no acknowledged answer is lost; every screen is screenshotted at 1280 px and checked for cut labels and
  rating-scale buttons styled alike; what the browser receives for the stimuli (random URLs per presentation, one
  size, one type);
* double presses at 0-600 ms gaps and key-repeats: every stored answer comes from a key pressed on its own
  screen, at least ``min_rt_ms`` after that screen became visible;
* phone width: buttons stack in key order, a broken image gets a retry and never answer buttons, and joining by
  study code in the same browser resumes."""
from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest
from sqlalchemy import func, select

from browser_helpers import (button_styles, cut_labels, gate, next_screen, press_on, reading_order, shoot,
                             study_with_min_rt, wait_screen)
from conftest_helpers import CHROMIUM_ARGS, StreamlitServer, chromium_path  # tests/study_app/conftest_helpers.py
from study_app.serve.session import StudyService
from study_app.storage import Assignment, Response

pytestmark = pytest.mark.slow
MIN_RT = 250.0


@pytest.fixture(scope="module")
def browser():
    exe = chromium_path()
    if exe is None:
        pytest.skip("Chromium not found (/usr/bin/chromium): apt-get install chromium")
    pw = pytest.importorskip("playwright.sync_api")
    with pw.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def study(built_study, tmp_path_factory) -> Path:
    return study_with_min_rt(built_study, tmp_path_factory.mktemp("browser") / "study", MIN_RT)


@pytest.fixture
def server(study, tmp_path, request):
    url = f"sqlite:///{tmp_path / 'browser.db'}"
    srv = StreamlitServer(study, url, tmp_path / "server.log").start()
    request.addfinalizer(srv.stop)
    srv.svc = StudyService(study, url)
    request.addfinalizer(srv.svc.close)
    return srv


def _page(browser, request, width: int, height: int = 900):
    pg = browser.new_page(viewport={"width": width, "height": height})
    pg.set_default_timeout(60_000)

    def finish():
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            shot = Path(tempfile.gettempdir()) / f"browser-failure-{request.node.name}.png"
            pg.screenshot(path=str(shot))
            print(f"screenshot of the failing page: {shot}; gate: {gate(pg)}")
        pg.close()
    request.addfinalizer(finish)
    return pg


def n_rows(svc) -> int:
    return svc.db.read(lambda s: s.scalar(select(func.count(Response.id))))


def onboard(page, tmp: Path | None = None, before_start=None) -> None:
    """Consent, role and years, instructions: keyboard only."""
    press_on(page, "consent", "Enter", 300)
    wait_screen(page, "profile-role")
    if tmp:
        shoot(page, tmp, "profile-role")
    press_on(page, "profile-role", "1", 300)
    wait_screen(page, "profile-years")
    page.wait_for_function("() => document.activeElement && document.activeElement.tagName === 'INPUT'")
    if tmp:
        shoot(page, tmp, "profile-years")
    page.keyboard.type("8")
    page.keyboard.press("Enter")
    wait_screen(page, "instructions")
    if tmp:
        shoot(page, tmp, "instructions")
    if before_start:
        before_start()
    press_on(page, "instructions", "Enter", 300)


def answer(page, keys=("3", "1", "2"), pause: float = 320.0, tmp: Path | None = None, tag: str = "") -> str:
    """One trial by keyboard (authenticity, cell type, class confidence); returns the screen that follows."""
    s = wait_screen(page, "auth.ready")
    for i, key in enumerate(keys):
        if tmp:
            shoot(page, tmp, f"{tag}{('auth', 'class', 'class-confidence')[i]}")
            assert cut_labels(page) == [], cut_labels(page)
        page.wait_for_function("ms => performance.now() - window.__cytoGate.visibleAt >= ms", arg=pause)
        page.keyboard.press(key)
        s = next_screen(page, s)
    return s


def to_trial(page, tmp: Path | None = None) -> str:
    """Go on (Enter) through feedback and break screens to the next trial's first question; returns its id."""
    while True:
        page.wait_for_function("() => { const G = window.__cytoGate; return G && G.visibleAt !== null && ("
                               "G.screen.includes('auth.ready') || G.screen.startsWith('feedback') ||"
                               " G.screen.startsWith('interlude')); }")
        s = gate(page)["screen"]
        if "auth.ready" in s:
            return s
        if tmp and "interlude-break" in s:
            shoot(page, tmp, "break")
        page.wait_for_timeout(300)
        page.keyboard.press("Enter")
        next_screen(page, s)


def test_keyboard_study_with_reload_outage_and_server_kill(browser, server, tmp_path, request):
    page = _page(browser, request, 1280)
    svc = server.svc
    tok = svc.create_invites(1)[0].token
    media = []
    page.on("response", lambda r: media.append((r.url, r.headers.get("content-length"), r.headers.get("content-type")))
            if "/media/" in r.url and "/static/" not in r.url else None)
    page.goto(f"{server.base}/?t={tok}")
    wait_screen(page, "consent")
    shoot(page, tmp_path, "consent")
    onboard(page, tmp_path)
    wait_screen(page, "auth.ready")
    assert len(button_styles(page, "auth-")) == 1                    # every option of the scale looks alike
    s = answer(page, tmp=tmp_path)                                   # practice 1, then its feedback with the image
    assert "feedback" in s and page.locator("img.cyto-stim").is_visible()
    shoot(page, tmp_path, "feedback")
    to_trial(page)
    s = answer(page, keys=("6", "2", "3"))
    fb = wait_screen(page, "feedback")
    page.wait_for_timeout(300)
    page.keyboard.press("Enter")                                     # feedback -> "practice complete"
    assert "interlude-main_intro" in next_screen(page, fb)
    shoot(page, tmp_path, "main-intro")
    n_main, answered = svc.state(tok).n_main, 2
    for i in range(n_main):
        to_trial(page, tmp_path)
        att = page.get_by_text("Attention check")
        key_auth = "5"
        if att.count():
            key_auth = "8" if "answer Real" in page.locator("[data-testid='stAlert']").inner_text() else "1"
        answer(page, keys=(key_auth, str(1 + i % 3), "2"))
        answered += 1
        assert n_rows(svc) == answered                               # committed before the next screen
        if i == 2:                                                   # reload mid-way: the same trial comes back
            to_trial(page)
            urls_before_reload = {u for u, _, _ in media}
            page.reload()
            to_trial(page)
            assert {u for u, _, _ in media} - urls_before_reload    # ... under a new random name
        if i == 5:                                                   # the server is killed: the study's message
            to_trial(page)
            server.kill()
            page.wait_for_selector("#cyto-outage", timeout=60_000)
            assert "Everything you answered is saved" in page.inner_text("#cyto-outage")
            shoot(page, tmp_path, "outage")
            visible = page.evaluate("() => Array.from(document.querySelectorAll('[role=dialog]'))"
                                    ".filter(d => getComputedStyle(d).visibility !== 'hidden').map(d => d.innerText)")
            assert not any("streamlit run" in v for v in visible), visible
            assert n_rows(svc) == answered
            server.start()
            page.reload()
            to_trial(page)
            assert page.locator("#cyto-outage").count() == 0
    page.get_by_role("heading", name="Thank you!").wait_for()
    shoot(page, tmp_path, "done")
    assert n_rows(svc) == 2 + n_main and svc.state(tok).stage == "done"      # no answer lost, none doubled
    rows = svc.db.read(lambda s: s.execute(select(Response.n_reconnects, Response.n_presentations)).all())
    assert sum(r[0] for r in rows) >= 2                              # the reload and the restart are recorded
    # what the browser received for the stimuli: PNG, one size, random names (never the stimulus id or a hash)
    stim = [m for m in media if m[1] is not None]
    assert {m[2] for m in stim} == {"image/png"}
    files = {len((server.study / f).read_bytes()) for f in svc.study.manifest.file}
    assert {int(m[1]) for m in stim} == files and len(files) == 1
    ids = set(svc.study.manifest.stimulus_id)
    assert not any(sid in u for u, _, _ in stim for sid in ids)


def test_double_presses_and_key_repeats_never_answer_the_next_question(browser, server, request):
    """A second press of the same key 0-600 ms after the first, and a key held down: each stored answer came from a
    key pressed on its own screen >= min_rt_ms after it became visible (gate log); the server's clock agrees."""
    page = _page(browser, request, 1280)
    svc = server.svc
    tok = svc.create_invites(1)[0].token
    page.goto(f"{server.base}/?t={tok}")
    onboard(page)
    gaps = [0, 50, 100, 200, 300, 400, 600]
    for g in gaps:
        s = to_trial(page)
        page.wait_for_function("ms => performance.now() - window.__cytoGate.visibleAt >= ms", arg=MIN_RT + 80)
        page.keyboard.press("3")                                     # synthetic, 67 %
        if g:
            page.wait_for_timeout(g)
        page.keyboard.press("3")                                     # the double press: class 3 if it counted
        s = next_screen(page, s)
        if "class.ready" in s:                                       # it did not count: choose the class now
            page.wait_for_function("ms => performance.now() - window.__cytoGate.visibleAt >= ms", arg=MIN_RT + 80)
            page.keyboard.press("1")
            s = next_screen(page, s)
        page.wait_for_function("ms => performance.now() - window.__cytoGate.visibleAt >= ms", arg=MIN_RT + 80)
        page.keyboard.down("2")                                      # held down: repeats must not count
        page.keyboard.down("2")
        page.keyboard.down("2")
        page.keyboard.up("2")
        next_screen(page, s)
    log = gate(page)
    assert any(e["why"] == "repeat" for e in log["ignored"]), log["ignored"]
    assert all(e["ms"] >= MIN_RT for e in log["accepted"]), log["accepted"]      # from its own screen's start
    early = [e for e in log["ignored"] if e["why"] in ("early", "taken")]
    assert len(early) >= sum(g < MIN_RT for g in gaps)               # every fast second press was refused
    rows = svc.db.read(lambda s: s.execute(
        select(Assignment.auth_response, Assignment.auth_confidence_level, Response.auth_rt_ms, Response.class_rt_ms,
               Response.class_response, Response.class_confidence_level)
        .join(Response, Response.assignment_id == Assignment.id).order_by(Response.id)).all())
    assert len(rows) == len(gaps)
    for auth, level, auth_rt, class_rt, cls, clevel in rows:
        assert (auth, level) == ("synthetic", 2) and clevel == 2     # the first press and the held key, once each
        assert auth_rt >= MIN_RT and class_rt - auth_rt >= MIN_RT    # the server's per-screen minimum holds too
    # a second press within min_rt of the next screen never chose a class: those trials have the deliberate one
    fast = [cls for (auth, level, a, c, cls, cl), g in zip(rows, gaps) if g < MIN_RT]
    assert set(fast) == {svc.classes[0]}, fast


def test_phone_layout_broken_image_and_resume_by_code(browser, server, tmp_path, request):
    page = _page(browser, request, 390, 844)
    svc = server.svc
    failed, armed = [], []

    def break_first(route):                                          # the first stimulus request fails
        if armed and not failed and "/static/" not in route.request.url:
            failed.append(route.request.url)
            route.abort()
        else:
            route.continue_()
    page.route(re.compile(r".*/media/.*"), break_first)
    page.goto(f"{server.base}/?code=TINY")
    wait_screen(page, "entry")
    page.wait_for_timeout(500)                                       # (the page asks the browser what it remembers)
    shoot(page, tmp_path, "phone-entry")
    page.get_by_role("button", name="Begin").click()
    wait_screen(page, "consent")
    tok = page.evaluate("() => new URLSearchParams(location.search).get('t')")
    shoot(page, tmp_path, "phone-consent")
    def arm():                                                       # after the example cells have loaded
        page.wait_for_function("() => Array.from(document.images).every(i => i.complete)")
        page.wait_for_load_state("networkidle")
        armed.append(True)
    onboard(page, before_start=arm)
    page.get_by_text("The image did not load.").wait_for()           # a broken image: a retry, no answer buttons
    assert page.locator("[class*='st-key-auth-'] button").count() == 0
    shoot(page, tmp_path, "phone-broken-image")
    page.get_by_role("button", name="Load it again").click()
    wait_screen(page, "auth.ready")
    shoot(page, tmp_path, "phone-auth")
    assert cut_labels(page) == []
    order = reading_order(page, "auth-")
    assert [o.split(" · ")[0] for o in order] == [str(k) for k in range(1, 2 * svc.K + 1)], order
    page.wait_for_timeout(MIN_RT + 80)
    page.keyboard.press("6")
    wait_screen(page, "class.ready")
    shoot(page, tmp_path, "phone-class")
    order = reading_order(page, "class-")
    assert [o.split(" · ")[0] for o in order] == ["1", "2", "3", "0"], order
    page.wait_for_timeout(MIN_RT + 80)
    page.keyboard.press("2")
    wait_screen(page, "cconf.ready")
    shoot(page, tmp_path, "phone-class-confidence")
    assert cut_labels(page) == [] and len(button_styles(page, "cconf-")) == 1   # every option looks alike
    rows = svc.db.read(lambda s: s.execute(select(Assignment.n_presentations).where(
        Assignment.shown_at.is_not(None))).all())
    assert rows[0][0] == 2                                           # the retry was a new presentation
    # the same browser opens the study-code link again: it is offered its own session back
    page.goto(f"{server.base}/?code=TINY")
    page.get_by_text("Welcome back").wait_for()
    shoot(page, tmp_path, "phone-resume")
    press_on(page, "resume", "Enter", 300)
    assert wait_screen(page, ".ready").startswith("t1.p3.class")     # the same trial, its answer kept
    assert page.evaluate("() => new URLSearchParams(location.search).get('t')") == tok
    assert svc.counts()["participants"] == 1
