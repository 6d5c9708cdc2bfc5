"""Screenshot of a trial in Chromium (docs/screenshot-trial.png) and the end-to-end answer -> next image time
in a real browser (one participant, keyboard only), against ``cytostudy serve`` on a built study.

  python benchmarks/study_screenshot.py STUDY_DIR [--out docs/screenshot-trial.png] [--trials 8]

The database is a throwaway SQLite file (the study's own study.db is not touched).
"""
from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "study_app"))


def press(page, key, then, tries: int = 3) -> None:
    """Press ``key`` and wait for ``then``; press again if it does not come (a key pressed while Streamlit's
    websocket reconnects on a starved machine is lost; a person would press again)."""
    for _ in range(tries - 1):
        page.keyboard.press(key)
        try:
            then.wait_for(timeout=15_000)
            return
        except Exception:  # noqa: BLE001
            print(f"key {key!r} repeated")
    page.keyboard.press(key)
    then.wait_for()


def main() -> int:
    from conftest_helpers import CHROMIUM_ARGS, StreamlitServer, chromium_path
    from playwright.sync_api import sync_playwright

    from study_app.session import StudyService

    ap = argparse.ArgumentParser()
    ap.add_argument("study")
    ap.add_argument("--out", default=str(REPO / "docs" / "screenshot-trial.png"))
    ap.add_argument("--trials", type=int, default=8, help="main trials to time")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="study-shot-"))
    url = f"sqlite:///{tmp / 'shot.db'}"
    svc = StudyService(args.study, url)
    tok = svc.create_invites(1)[0].token
    svc.give_consent(tok)
    svc.save_profile(tok, "haematologist", 10)
    svc.finish_instructions(tok)
    # skip the practice trials (answered through the service, as a participant would)
    while svc.state(tok).stage == "practice":
        t = svc.current_trial(tok, "warmup")
        time.sleep(svc.cfg.design.min_rt_ms / 1000 + 0.02)
        svc.answer_auth(tok, t.assignment_id, "real", 2)
        svc.answer_class(tok, t.assignment_id, svc.classes[0], 2)
    svc.end_break(tok)
    server = StreamlitServer(Path(args.study), url, tmp / "server.log").start()
    lat = []
    try:
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
            page = b.new_page(viewport={"width": 900, "height": 820}, device_scale_factor=1)
            page.set_default_timeout(60_000)
            page.goto(f"{server.base}/?t={tok}")
            page.get_by_role("button", name=re.compile("^100 %")).first.wait_for()
            page.wait_for_timeout(1500)
            page.screenshot(path=args.out)
            print(f"wrote {args.out}")
            for i in range(args.trials):
                prog = page.locator(".cyto-progress").inner_text()
                if page.get_by_text("Time for a short break").count():
                    page.keyboard.press("Enter")
                    page.get_by_role("button", name=re.compile("^100 %")).first.wait_for()
                    continue
                page.wait_for_timeout(400)
                press(page, "6", page.get_by_role("button", name=re.compile("^Cannot tell")))
                press(page, "1", page.get_by_role("button", name=re.compile("^Certain")))
                t0 = time.perf_counter()
                page.keyboard.press("3")
                # the next image is on screen: a new progress line and its image loaded
                page.wait_for_function(
                    "p => { const e = document.querySelector('.cyto-progress'); const img ="
                    " document.querySelector('.st-key-stimulus img');"
                    " return ((e && e.innerText !== p) || document.body.innerText.includes('short break')"
                    " || document.body.innerText.includes('Thank you')) && (!img || img.complete); }", arg=prog)
                lat.append((time.perf_counter() - t0) * 1000)
            b.close()
    finally:
        server.stop()
    if lat:
        a = np.asarray(lat)
        print(f"browser, 1 participant: answer key -> next image on screen: p50 {np.percentile(a, 50):.0f} ms, "
              f"max {a.max():.0f} ms over {len(a)} trials")
    return 0


if __name__ == "__main__":
    sys.exit(main())
