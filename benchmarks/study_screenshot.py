"""Screenshots of a trial in Chromium (docs/screenshot-trial.png, docs/screenshot-trial-phone.png) and the
end-to-end answer -> next question time in a real browser (one participant, keyboard only), against
``cytostudy serve`` on a built study.

  python benchmarks/study_screenshot.py STUDY_DIR [--out docs/screenshot-trial.png] [--trials 8]

The time is measured in the page: from the last key of a trial (its keydown time stamp) to the moment the next
trial's first question is visible with its image decoded (the keyboard gate's ``visibleAt``). The database is a
throwaway SQLite file (the study's own study.db is not touched).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "study_app"))   # pytest-free helpers of the browser tests


def _skip_practice(svc, tok) -> None:
    svc.give_consent(tok)
    svc.save_profile(tok, "haematologist", 10)
    svc.finish_instructions(tok)
    wait = svc.cfg.design.min_rt_ms / 1000 + 0.02
    while svc.state(tok).stage == "practice":
        t = svc.current_trial(tok, "warmup")
        svc.confirm_loaded(tok, t.assignment_id, t.presentation)
        time.sleep(wait)
        svc.answer_auth(tok, t.assignment_id, "real", 2)
        time.sleep(wait)
        svc.answer_class(tok, t.assignment_id, svc.classes[0], 2)
    svc.end_break(tok)


def main() -> int:
    from browser_helpers import gate, next_screen, wait_screen
    from conftest_helpers import CHROMIUM_ARGS, StreamlitServer, chromium_path
    from playwright.sync_api import sync_playwright

    from study_app.serve.session import StudyService

    ap = argparse.ArgumentParser()
    ap.add_argument("study")
    ap.add_argument("--out", default=str(REPO / "docs" / "screenshot-trial.png"))
    ap.add_argument("--trials", type=int, default=8, help="main trials to time")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="study-shot-"))
    url = f"sqlite:///{tmp / 'shot.db'}"
    svc = StudyService(args.study, url)
    tok = svc.create_invites(1)[0].token
    _skip_practice(svc, tok)
    server = StreamlitServer(Path(args.study), url, tmp / "server.log").start()
    lat = []
    pause = svc.cfg.design.min_rt_ms + 150
    try:
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
            for width, height, out in ((1280, 900, Path(args.out)),
                                       (390, 844, Path(args.out).with_name(Path(args.out).stem + "-phone.png"))):
                page = b.new_page(viewport={"width": width, "height": height})
                page.set_default_timeout(60_000)
                page.goto(f"{server.base}/?t={tok}")
                wait_screen(page, "auth.ready")
                page.wait_for_timeout(800)
                page.screenshot(path=str(out), full_page=True)
                print(f"wrote {out}")
                if width == 390:
                    break
                for _ in range(args.trials):
                    s = wait_screen(page, "auth.ready")
                    for key in ("6", "1"):
                        page.wait_for_function("ms => performance.now() - window.__cytoGate.visibleAt >= ms", arg=pause)
                        page.keyboard.press(key)
                        s = next_screen(page, s)
                    page.wait_for_function("ms => performance.now() - window.__cytoGate.visibleAt >= ms", arg=pause)
                    page.evaluate("() => { window.__k = null; document.addEventListener('keydown',"
                                  " e => { window.__k = e.timeStamp; }, {once: true, capture: true}); }")
                    page.keyboard.press("3")
                    s = next_screen(page, s)
                    if "interlude" in s or "done" in s:
                        if "done" in s:
                            break
                        page.wait_for_timeout(300)
                        page.keyboard.press("Enter")
                        continue
                    # the new screen's gate opens once its image is decoded: wait for it, then read the times
                    page.wait_for_function("() => window.__cytoGate && window.__cytoGate.visibleAt != null")
                    g = gate(page)
                    t_key = page.evaluate("() => window.__k")
                    lat.append(g["visibleAt"] - t_key)
                page.close()
            b.close()
    finally:
        server.stop()
    if lat:
        a = np.asarray(lat)
        print(f"browser, 1 participant: last key of a trial -> next question visible (image decoded): "
              f"p50 {np.percentile(a, 50):.0f} ms, max {a.max():.0f} ms over {len(a)} trials")
    return 0


if __name__ == "__main__":
    sys.exit(main())
