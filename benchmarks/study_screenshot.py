"""Screenshots of a trial in Chromium (docs/screenshot-trial.png at 1280 x 800, docs/screenshot-trial-phone.png at
390 x 844 with touch emulation: what the participant sees without scrolling) and one participant's whole session
in the browser, keyboard only, against ``cytostudy serve`` on a built study.

  python benchmarks/study_screenshot.py STUDY [--shots docs] [--no-shots] [--pause-ms 400]

Measured in the page, for every main trial that follows another main trial (no break between), from the keydown
of the trial's last answer (the gate's log) to
  * **next image decoded**: the next trial's stimulus decoded (img.decode() resolved, two frames painted), and
  * **buttons usable**: the next trial's first question answerable (the keyboard gate's time: the server has
    confirmed the load, the buttons are on the page and enabled, two frames painted),
p50 / p95 over the trials; and the image bytes the browser received over the session (stimuli, the practice
feedback, the instruction page's example cells; Streamlit's fonts, also under ``/media/``, are listed apart).
``--mbps 10 --rtt-ms 20`` emulates a slow hospital network for the image downloads. The database is a throwaway SQLite file
(the study's own study.db is not touched). Prints one JSON object (with the load average before and after).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "study_app"))   # pytest-free helpers of the browser tests
sys.path.insert(0, str(REPO))


def _onboard_by_service(svc, tok) -> None:
    svc.give_consent(tok)
    svc.save_profile(tok, "haematologist", 10)
    svc.finish_instructions(tok)


def phone_shot(browser, base: str, svc, out: Path | None) -> None:
    from browser_helpers import wait_answerable, wait_screen
    tok = svc.create_invites(1, label="screenshot")[0].token
    _onboard_by_service(svc, tok)
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = ctx.new_page()
    page.set_default_timeout(120_000)
    page.goto(f"{base}/?t={tok}")
    wait_screen(page, "auth.ready")
    wait_answerable(page, 600)
    if out:
        page.screenshot(path=str(out))
        print(f"wrote {out}", file=sys.stderr)
    ctx.close()


def session(browser, base: str, svc, out: Path | None, pause: float, mbps: float | None = None,
            rtt_ms: float = 0.0) -> dict:
    """One participant from the consent page to the end, by keyboard; the page's gate log and the media bytes.
    ``mbps``: a network of this download speed and round trip (Chromium's network emulation; HTTP only)."""
    from browser_helpers import gate, wait_answerable
    from study_app.serve.labels import class_keys
    tok = svc.create_invites(1, label="benchmark")[0].token
    letter = class_keys(svc.classes)[svc.classes[0]]
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    page = ctx.new_page()
    page.set_default_timeout(120_000)
    if mbps:
        cdp = ctx.new_cdp_session(page)
        cdp.send("Network.enable")
        cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": rtt_ms,
                                                      "downloadThroughput": mbps * 1e6 / 8,
                                                      "uploadThroughput": mbps * 1e6 / 8})
    media: list[tuple[int, str]] = []
    page.on("response", lambda r: media.append((int(r.headers.get("content-length") or 0),
                                                r.headers.get("content-type", "")))
            if "/media/" in r.url else None)
    page.goto(f"{base}/?t={tok}")
    shot_taken = False
    last = None
    while True:
        page.wait_for_function("last => { const G = window.__cytoGate; return G && G.visibleAt !== null &&"
                               " G.screen !== last && (G.screen.endsWith('.ready') || !G.screen.includes('.p')); }",
                               arg=last)
        s = gate(page)["screen"]
        last = s
        if s == "done":
            break
        wait_answerable(page, pause)
        if s.startswith("profile-years"):
            page.keyboard.type("8")
            page.keyboard.press("Enter")
            continue
        if ".auth." in s:
            if s.startswith("m") and not shot_taken and out:
                page.screenshot(path=str(out))
                print(f"wrote {out}", file=sys.stderr)
                shot_taken = True
            key = "6"
            if page.get_by_text("Attention check").count():
                key = "8" if "answer Real" in page.locator("[data-testid='stAlert']").inner_text() else "1"
        elif ".class." in s:
            key = letter
        elif ".cconf." in s:
            key = "2"
        elif s.startswith("profile-role"):
            key = "1"
        else:
            key = "Enter"
        page.keyboard.press(key)
    g = page.evaluate("() => ({events: window.__cytoGate.events, accepted: window.__cytoGate.acceptedLog})")
    ctx.close()
    return {"events": g["events"], "accepted": g["accepted"], "media": media}


def latencies(events: list[dict], accepted: list[dict]) -> tuple[list[float], list[float]]:
    """Last key of main trial j -> trial j+1's image decoded, -> its first question answerable (no break between)."""
    decoded, usable = [], []
    for e in accepted:
        m = re.match(r"m(\d+)\.p\d+\.cconf\.ready$", e["screen"])
        if not m:
            continue
        t0, nxt = e["at"], f"m{int(m.group(1)) + 1}."
        after = [v for v in events if v["at"] > t0]
        first_ready = next((v for v in after if v["what"] == "answerable"), None)
        if first_ready is None or not first_ready["screen"].startswith(nxt):
            continue                                       # a break (or the end) came between
        dec = next((v for v in after if v["what"] == "decoded" and v["screen"].startswith(nxt)), None)
        if dec is not None:
            decoded.append(dec["at"] - t0)
        usable.append(first_ready["at"] - t0)
    return decoded, usable


def main() -> int:
    from conftest_helpers import CHROMIUM_ARGS, StreamlitServer, chromium_path
    from playwright.sync_api import sync_playwright

    from study_app.serve.session import StudyService

    ap = argparse.ArgumentParser()
    ap.add_argument("study")
    ap.add_argument("--shots", default=str(REPO / "docs"), help="folder for the two screenshots")
    ap.add_argument("--no-shots", action="store_true")
    ap.add_argument("--pause-ms", type=float, default=None, help="wait per screen (default min_rt_ms + 150)")
    ap.add_argument("--mbps", type=float, default=None, help="emulate a network of this speed (default: none)")
    ap.add_argument("--rtt-ms", type=float, default=20.0, help="... and this round trip")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="study-shot-"))
    url = f"sqlite:///{tmp / 'shot.db'}"
    svc = StudyService(args.study, url)
    pause = args.pause_ms if args.pause_ms is not None else svc.cfg.design.min_rt_ms + 150
    shots = None if args.no_shots else Path(args.shots)
    load_before = os.getloadavg()
    server = StreamlitServer(Path(args.study), url, tmp / "server.log").start()
    try:
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
            phone_shot(b, server.base, svc, shots / "screenshot-trial-phone.png" if shots else None)
            run = session(b, server.base, svc, shots / "screenshot-trial.png" if shots else None, pause,
                          args.mbps, args.rtt_ms)
            b.close()
    finally:
        server.stop()
    decoded, usable = latencies(run["events"], run["accepted"])
    sizes = [n for n, t in run["media"] if not t.startswith("font/")]   # (Streamlit's fonts come from /media/)
    pct = (lambda a, q: round(float(np.percentile(a, q)), 1) if a else None)
    out = {"study": args.study, "trials_timed": len(usable),
           "key_to_next_image_decoded_ms": {"p50": pct(decoded, 50), "p95": pct(decoded, 95), "n": len(decoded)},
           "key_to_buttons_usable_ms": {"p50": pct(usable, 50), "p95": pct(usable, 95), "n": len(usable)},
           "media_bytes_per_response": {f"{n} {t}": run["media"].count((n, t)) for n, t in sorted(set(run["media"]))},
           "image_bytes_per_session": sum(sizes), "image_responses_per_session": len(sizes),
           "network": f"{args.mbps} Mbit/s, {args.rtt_ms} ms round trip" if args.mbps else "localhost",
           "pause_per_screen_ms": pause, "load_average_before": [round(x, 2) for x in load_before],
           "load_average_after": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count()}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
