"""A real browser (Debian's Chromium via Playwright) against ``cytostudy serve``:

* a participant does a short study with the keyboard only, reloads mid-way and resumes; the server is frozen with
  a key press in flight, then SIGKILLed: the page shows the study's own outage message (never Streamlit's
  developer dialog), reconnects by itself when the server is back, takes no key before it re-synced, and shows
  the press that could not be stored as *not stored*; no acknowledged answer is lost; every screen is
  screenshotted at 1280 px and checked for cut labels and rating-scale buttons styled alike; what the browser
  receives for the stimuli (random URLs per presentation, one size, one type);
* double presses at 0-1,000 ms gaps on every question type, a key held down, a second key while the first is
  held: a double press never answers the next question of the same image; every stored answer comes from a key
  pressed on its own screen, at least ``min_rt_ms`` after that screen became answerable;
* a phone (390 x 844, touch): both sides of the real / AI scale visible without scrolling, no key hints, the page
  back at the image on each new screen, no highlight carried over to the next screen, a broken image gets a retry
  and never answer buttons, and opening the study-code link again in the same browser resumes."""
from __future__ import annotations

import hashlib
import os
import re
import signal
import tempfile
from pathlib import Path

import pytest
from sqlalchemy import func, select

from browser_helpers import (button_styles, cut_labels, gate, next_screen, press_on, reading_order, shoot,
                             study_with_min_rt, wait_answerable, wait_screen)
from conftest_helpers import CHROMIUM_ARGS, StreamlitServer, chromium_path  # tests/study_app/conftest_helpers.py
from study_app.serve.labels import class_keys
from study_app.serve.session import StudyService
from study_app.storage import Assignment, Response

pytestmark = pytest.mark.slow
MIN_RT = 250.0
GAPS = [0, 50, 100, 200, 300, 450, 600, 800, 1000]


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
    return study_with_min_rt(built_study, tmp_path_factory.mktemp("browser") / "study", MIN_RT, display_px=384)


@pytest.fixture
def server(study, tmp_path, request):
    url = f"sqlite:///{tmp_path / 'browser.db'}"
    srv = StreamlitServer(study, url, tmp_path / "server.log").start()
    request.addfinalizer(srv.stop)
    srv.svc = StudyService(study, url)
    request.addfinalizer(srv.svc.close)
    return srv


def _page(browser, request, width: int, height: int = 800, touch: bool = False):
    ctx = browser.new_context(viewport={"width": width, "height": height}, is_mobile=touch, has_touch=touch)
    pg = ctx.new_page()
    pg.set_default_timeout(60_000)

    def finish():
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            shot = Path(tempfile.gettempdir()) / f"browser-failure-{request.node.name}.png"
            pg.screenshot(path=str(shot))
            print(f"screenshot of the failing page: {shot}; gate: {gate(pg)}")
        ctx.close()
    request.addfinalizer(finish)
    return pg


def n_rows(svc) -> int:
    return svc.db.read(lambda s: s.scalar(select(func.count(Response.id))))


def question(screen_id: str) -> str:
    parts = screen_id.split(".")
    return f"{parts[0]}.{parts[2]}" if len(parts) == 4 else screen_id


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


def answer(page, keys=("3", "A", "2"), pause: float = 320.0, tmp: Path | None = None, tag: str = "") -> str:
    """One trial by keyboard (authenticity, cell type, class confidence); returns the screen that follows."""
    s = wait_screen(page, "auth.ready")
    for i, key in enumerate(keys):
        if tmp:
            shoot(page, tmp, f"{tag}{('auth', 'class', 'class-confidence')[i]}")
            assert cut_labels(page) == [], cut_labels(page)
        wait_answerable(page, pause)
        page.keyboard.press(key)
        s = next_screen(page, s)
    return s


def to_trial(page, tmp: Path | None = None, stops=("auth.ready",)) -> str:
    """Go on (Enter) through feedback and break screens to a trial screen in ``stops``; returns its id."""
    while True:
        page.wait_for_function("stops => { const G = window.__cytoGate; return G && G.visibleAt !== null && ("
                               "stops.some(p => G.screen.includes(p)) || G.screen.startsWith('feedback') ||"
                               " G.screen.startsWith('interlude')); }", arg=list(stops))
        s = gate(page)["screen"]
        if any(p in s for p in stops):
            return s
        if tmp and "interlude-break" in s:
            shoot(page, tmp, "break")
        page.wait_for_timeout(300)
        page.keyboard.press("Enter")
        next_screen(page, s)


def auth_key(page) -> str:
    """The key for this trial's first question: an attention check's instructed side, else 67 % real."""
    if page.get_by_text("Attention check").count():
        return "8" if "answer Real" in page.locator("[data-testid='stAlert']").inner_text() else "1"
    return "6"


def lost_press_is_shown_and_asked_again(page, server, svc, s: str, key: str, answered: int, tmp: Path) -> None:
    """The server freezes with a key press in flight, then dies and comes back: the page re-syncs by itself and
    says that press was not stored (it was never stored), and no key counts on the old screen meanwhile."""
    wait_answerable(page, MIN_RT + 80)
    os.kill(server.proc.pid, signal.SIGSTOP)                      # frozen: the connection stays open
    page.keyboard.press(key)
    page.wait_for_timeout(300)
    assert gate(page)["accepted"][-1]["screen"] == s              # the page took it; the server never will
    server.kill()
    page.wait_for_selector("#cyto-outage", timeout=60_000)
    assert "Everything you answered is saved" in page.inner_text("#cyto-outage")
    shoot(page, tmp, "outage")
    visible = page.evaluate("() => Array.from(document.querySelectorAll('[role=dialog]'))"
                            ".filter(d => getComputedStyle(d).visibility !== 'hidden').map(d => d.innerText)")
    assert not any("streamlit run" in v for v in visible), visible
    assert n_rows(svc) == answered
    server.start()                                                # no reload: the page reconnects by itself
    page.wait_for_selector("#cyto-outage", state="detached", timeout=60_000)
    page.keyboard.press(key)                                      # at once: before the page re-synced
    page.wait_for_selector(".cyto-notice", timeout=60_000)
    assert "not stored" in page.inner_text(".cyto-notice")
    s2 = wait_screen(page, "auth.ready")
    assert question(s2) == question(s) and s2 != s                # the same question, presented anew
    shoot(page, tmp, "not-stored")
    assert [e for e in gate(page)["accepted"] if e["screen"] == s] == gate(page)["accepted"][-1:]
    assert n_rows(svc) == answered and "not stored" in page.inner_text(".cyto-notice")


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
    assert s == "feedback-p1" and page.locator("img.cyto-stim").is_visible()   # (no stimulus id in it)
    shoot(page, tmp_path, "feedback")
    to_trial(page)
    answer(page, keys=("6", "B", "3"))
    fb = wait_screen(page, "feedback")
    page.wait_for_timeout(300)
    page.keyboard.press("Enter")                                     # feedback -> "practice complete"
    assert "interlude-main_intro" in next_screen(page, fb)
    shoot(page, tmp_path, "main-intro")
    n_main, answered = svc.state(tok).n_main, 2
    letters = [class_keys(svc.classes)[c] for c in svc.classes]
    for i in range(n_main):
        s = to_trial(page, tmp_path)
        key_auth = auth_key(page)
        if i == 5:
            lost_press_is_shown_and_asked_again(page, server, svc, s, key_auth, answered, tmp_path)
        answer(page, keys=(key_auth, letters[i % 3], "2"))
        answered += 1
        assert n_rows(svc) == answered                               # committed before the next screen
        if i == 2:                                                   # reload mid-way: the same trial comes back
            to_trial(page)
            urls_before_reload = {u for u, _, _ in media}
            page.reload()
            to_trial(page)
            assert {u for u, _, _ in media} - urls_before_reload    # ... under a new random name
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
    # screen ids name trials by phase and position only: no assignment id (a global counter), no stimulus id
    screens = {e["screen"] for e in page.evaluate("() => window.__cytoGate.events")}
    trial_screens = {x for x in screens if "." in x}
    assert trial_screens and all(re.fullmatch(r"[pm]\d+\.p\d+\.(auth|class|cconf)\.(ready|loading)", x)
                                 for x in trial_screens), trial_screens
    assert not any(sid in x for x in screens for sid in ids)


def test_double_presses_at_0_to_1000_ms_never_answer_the_next_question_of_the_image(browser, server, request):
    """Each question type gets the same key twice, 0-1000 ms apart: the first press answers, the second finds no
    option on the next question of the image (its keys differ). One more trial holds a key down (repeats) and
    presses a second key while the first is held. Every accepted key came >= min_rt after its own screen became
    answerable (gate log); the server's clock agrees."""
    page = _page(browser, request, 1280)
    svc = server.svc
    tok = svc.create_invites(1)[0].token
    page.goto(f"{server.base}/?t={tok}")
    onboard(page)
    beta = class_keys(svc.classes)[svc.classes[1]]

    def twice(key: str, gap: int) -> None:
        page.keyboard.press(key)
        if gap:
            page.wait_for_timeout(gap)
        page.keyboard.press(key)

    gaps = []                                                        # (trial, gap) in order
    for g in GAPS + ["held"]:
        s = to_trial(page, stops=("auth.ready", "class.ready"))
        gaps.append((s.split(".")[0], g))
        if "auth.ready" in s:
            wait_answerable(page, MIN_RT + 80)
            if g == "held":                                          # held down: repeats must not count
                page.keyboard.down("3")
                page.keyboard.down("3")
                page.keyboard.down("3")
                page.keyboard.up("3")
            else:
                twice("3", g)                                        # synthetic, 67 %; then nothing on "3"
            s = wait_screen(page, "class.ready")
        wait_answerable(page, MIN_RT + 80)
        if g == "held":                                              # a second key while the first is held
            page.keyboard.down(beta)
            s = wait_screen(page, "cconf.ready")
            wait_answerable(page, MIN_RT + 80)
            page.keyboard.press("4")                                 # refused: the class key is still down
            page.wait_for_timeout(200)
            page.keyboard.up(beta)
            page.keyboard.press("2")
        else:
            twice(beta, g)
            s = wait_screen(page, "cconf.ready")
            wait_answerable(page, MIN_RT + 80)
            twice("2", g)
        next_screen(page, s)
    log = gate(page)
    reasons = {e["why"] for e in log["ignored"]}
    assert {"held", "not on this screen"} <= reasons, reasons
    # a second press of the same key is refused as a repeat, or — when the first press has already moved the screen
    # on, which depends on the machine's timing — as too early / already taken on the next screen
    assert reasons & {"repeat", "early", "taken"}, reasons
    assert all(e["ms"] >= MIN_RT for e in log["accepted"]), log["accepted"]      # from its own screen's start
    rows = svc.db.read(lambda s: s.execute(
        select(Assignment.auth_response, Assignment.auth_confidence_level, Response.auth_rt_ms, Response.class_rt_ms,
               Response.class_response, Response.class_confidence_level)
        .join(Response, Response.assignment_id == Assignment.id).order_by(Response.id)).all())
    assert len(rows) == len(GAPS) + 1
    for auth, level, auth_rt, class_rt, cls, clevel in rows:
        assert cls == svc.classes[1] and clevel == 2                 # never a digit for the class, a letter for
        assert auth == "synthetic" and level in (2, 3)               # its confidence; "2" again on a new image = 3
        assert auth_rt >= MIN_RT and class_rt - auth_rt >= MIN_RT    # the server's per-screen minimum holds too
    # a second "2" on the class confidence met the next image's first question only when that image had been
    # answerable for min_rt already (the log's ms above): which gaps did it?
    strays = [e["screen"].split(".")[0] for e in log["accepted"] if e["key"] == "2" and ".auth." in e["screen"]]
    assert sum(level == 3 for _, level, *_ in rows) == len(strays)
    after = [gaps[[t for t, _ in gaps].index(t) - 1][1] for t in strays]
    print(f"double presses of the class confidence that answered the next image's first question: {len(strays)}"
          f" of {len(GAPS)}, at gaps {after} ms")


def _visible_without_scrolling(page, prefix: str) -> bool:
    return page.evaluate("""pre => { const h = window.innerHeight;
        const els = Array.from(document.querySelectorAll('[class*="st-key-' + pre + '"] button'))
          .concat([document.querySelector('img.cyto-stim')]);
        return els.every(e => { const r = e.getBoundingClientRect(); return r.top >= 0 && r.bottom <= h; }); }""",
                         prefix)


def _scrolled(page) -> int:
    return page.evaluate("() => Math.max(window.scrollY, ...['stMain', 'stAppViewContainer'].map(t => {"
                         " const e = document.querySelector(`[data-testid='${t}']`); return e ? e.scrollTop : 0; }))")


def test_phone_layout_touch_broken_image_and_resume_by_code(browser, server, tmp_path, request):
    page = _page(browser, request, 390, 844, touch=True)
    svc = server.svc
    # the first stimulus shown fails, every time it is asked for (a page run that re-mounts the image asks again);
    # "Load it again" serves it under a new URL. A stimulus is known by its bytes, not by the order of requests:
    # the instructions' example cells may still be arriving when the first trial starts (a loaded machine)
    man = svc.study.manifest
    stimuli = {hashlib.sha256(svc.image_bytes(s)).hexdigest() for s in man.loc[man["role"] != "example", "stimulus_id"]}
    failed, seen = [], []

    def break_first(route):
        if failed and route.request.url != failed[0]:
            route.continue_()
            return
        resp = route.fetch()
        is_stimulus = hashlib.sha256(resp.body()).hexdigest() in stimuli
        seen.append((route.request.url.rsplit("/", 1)[-1], is_stimulus))
        if is_stimulus:
            failed[:1] = [route.request.url]
            route.abort()
        else:
            route.fulfill(response=resp)
    page.route(re.compile(r".*/media/.*"), break_first)
    page.goto(f"{server.base}/?code=TINY")
    wait_screen(page, "code-consent")                                # the consent text first: nobody joined yet
    assert svc.counts()["participants"] == 0
    shoot(page, tmp_path, "phone-consent")
    onboard(page)
    tok = page.evaluate("() => new URLSearchParams(location.search).get('t')")
    try:
        page.get_by_text("The image did not load.").wait_for()       # a broken image: a retry, no answer buttons
    except Exception as e:
        shown = page.evaluate("() => Array.from(document.images).map(i => [i.src.split('/').pop(), i.complete])")
        raise AssertionError(f"no error shown; routed: {seen}; failed: {failed}; images now: {shown}") from e
    assert page.locator("[class*='st-key-auth-'] button").count() == 0
    shoot(page, tmp_path, "phone-broken-image")
    page.get_by_role("button", name="Load it again").tap()
    wait_screen(page, "auth.ready")
    shoot(page, tmp_path, "phone-auth")
    assert cut_labels(page) == [] and _scrolled(page) == 0
    assert _visible_without_scrolling(page, "auth-")                 # image and both sides, no scrolling
    rows = page.evaluate("""() => Array.from(document.querySelectorAll('[class*="st-key-auth-"] button')).map(b => {
        const r = b.getBoundingClientRect(); return [b.innerText, Math.round(r.left), Math.round(r.top)]; })""")
    ai = [r for r in rows if r[0].endswith("AI")]
    real = [r for r in rows if r[0].endswith("real")]
    assert max(r[1] for r in ai) < min(r[1] for r in real)           # side by side: AI left, real right
    assert [r[0] for r in sorted(ai, key=lambda r: r[2])] == ["100 % AI", "83 % AI", "67 % AI", "50 % AI"]
    assert [r[0] for r in sorted(real, key=lambda r: r[2])] == ["100 % real", "83 % real", "67 % real", "50 % real"]
    hints = page.evaluate("() => Array.from(document.querySelectorAll('[data-testid=\"stButton\"] button code,"
                          " .cyto-keys')).map(e => getComputedStyle(e).display)")
    assert hints and set(hints) == {"none"}                          # no key hints on a touch screen
    box = page.locator("[class*='st-key-auth-'][class*='-real-3'] button").bounding_box()
    page.set_viewport_size({"width": 390, "height": 420})            # short: the page can scroll
    page.mouse.wheel(0, 600)
    page.evaluate("() => { for (const t of ['stMain', 'stAppViewContainer']) { const e ="
                  " document.querySelector(`[data-testid='${t}']`); if (e) e.scrollTop = 400; } window.scrollTo(0, 400); }")
    assert _scrolled(page) > 0
    box = page.locator("[class*='st-key-auth-'][class*='-real-3'] button").bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    wait_answerable(page, MIN_RT + 80)
    page.touchscreen.tap(x, y)                                       # 83 % real, by touch
    s = wait_screen(page, "class.ready")
    assert _scrolled(page) == 0                                      # back at the image
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(300)
    shoot(page, tmp_path, "phone-class")
    assert page.evaluate("() => document.activeElement.tagName") != "BUTTON"   # no focus carried over
    under = page.locator("[class*='st-key-class-'] button").first    # a browser may leave hover and focus on the
    under.hover()                                                    # option under the finger: on a touch screen
    under.evaluate("b => b.focus()")                                 # it still looks like every other option
    assert len(button_styles(page, "class-")) == 1, button_styles(page, "class-")
    order = reading_order(page, "class-")
    assert order == [c.capitalize() for c in svc.classes] + ["Cannot tell"], order     # (no key hints)
    wait_answerable(page, MIN_RT + 80)
    page.locator(f"[class*='st-key-class-'][class*='-{svc.classes[1]}'] button").tap()
    wait_screen(page, "cconf.ready")
    shoot(page, tmp_path, "phone-class-confidence")
    assert cut_labels(page) == [] and len(button_styles(page, "cconf-")) == 1   # every option looks alike
    presented = svc.db.read(lambda s: s.execute(select(Assignment.n_presentations).where(
        Assignment.shown_at.is_not(None))).all())
    assert presented[0][0] == 2                                      # the retry was a new presentation
    # the same browser opens the study-code link again: it continues its own session (no second one)
    page.goto(f"{server.base}/?code=TINY")
    page.get_by_text("Welcome back").wait_for()
    shoot(page, tmp_path, "phone-resume")
    assert page.get_by_role("button", name=re.compile("new participant", re.I)).count() == 0
    press_on(page, "resume", "Enter", 300)
    assert wait_screen(page, ".ready").startswith("p1.p3.cconf")     # the same trial, its answers kept
    assert page.evaluate("() => new URLSearchParams(location.search).get('t')") == tok
    assert svc.counts()["participants"] == 1
