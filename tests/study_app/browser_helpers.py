"""Helpers for the browser tests: a study copy with a realistic minimum response time, key presses that wait for
their screen, what the page's keyboard gate did, and screenshots with layout checks."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

SHOTS_ENV = "CYTOSTUDY_SCREENSHOTS"     # a folder: the browser tests also save their screenshots there (docs/)


def study_with_min_rt(built_study: Path, dst: Path, min_rt_ms: float, display_px: int | None = None) -> Path:
    """A copy of the built study whose design.min_rt_ms is ``min_rt_ms`` (the tiny study's 30 ms is for speed) and,
    optionally, whose images are shown at ``display_px`` (the page's layout of a real study; the files stay)."""
    shutil.copytree(built_study, dst, ignore=shutil.ignore_patterns("study.db*", "exports"))
    toml = (dst / "study.toml").read_text()
    toml = re.sub(r"min_rt_ms = [0-9.]+", f"min_rt_ms = {min_rt_ms}", toml)
    if display_px:
        toml = re.sub(r"display_px = [0-9]+", f"display_px = {display_px}", toml)
    (dst / "study.toml").write_text(toml)
    return dst


def gate(page) -> dict:
    """The keyboard gate's state: current screen, when it became answerable (visibleAt) and its image decoded,
    the keys it ignored and why, the answers it accepted, whether it is in sync with the server, the notice shown."""
    return page.evaluate("() => { const G = window.__cytoGate; return G ? {screen: G.screen, visibleAt: G.visibleAt,"
                         " decodedAt: G.decodedAt, ignored: G.ignored.slice(), accepted: G.acceptedLog.slice(),"
                         " synced: G.synced, notice: G.notice} : null; }")


def wait_answerable(page, ms: float) -> None:
    """Until the current screen has been answerable for ``ms``."""
    page.wait_for_function("ms => { const G = window.__cytoGate; return G.visibleAt !== null &&"
                           " performance.now() - G.visibleAt >= ms; }", arg=ms)


def wait_screen(page, part: str, timeout: float = 60_000) -> str:
    """Wait until the gate's current screen id contains ``part`` and the screen is visible; returns the id."""
    page.wait_for_function("p => { const G = window.__cytoGate; return G && G.screen && G.screen.includes(p)"
                           " && G.visibleAt !== null; }", arg=part, timeout=timeout)
    return gate(page)["screen"]


def press_on(page, part: str, key: str, after_ms: float = 0.0) -> str:
    """Press ``key`` once the screen whose id contains ``part`` has been visible for ``after_ms``."""
    screen = wait_screen(page, part)
    if after_ms:
        page.wait_for_function("ms => performance.now() - window.__cytoGate.visibleAt >= ms", arg=after_ms)
    page.keyboard.press(key)
    return screen


def next_screen(page, previous: str, timeout: float = 60_000) -> str:
    page.wait_for_function("p => { const G = window.__cytoGate; return G && G.screen !== p && G.visibleAt !== null; }",
                           arg=previous, timeout=timeout)
    return gate(page)["screen"]


def shoot(page, tmp: Path, name: str) -> Path:
    """A full-page screenshot (also into $CYTOSTUDY_SCREENSHOTS as screenshot-<name>.png when set)."""
    import os
    path = tmp / f"screenshot-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get(SHOTS_ENV):
        shutil.copy(path, Path(os.environ[SHOTS_ENV]) / path.name)
    return path


def cut_labels(page) -> list[str]:
    """Button labels that do not fit their button (cut off or overflowing)."""
    return page.evaluate("""() => Array.from(document.querySelectorAll('[data-testid="stButton"] button'))
        .filter(b => b.offsetParent !== null)
        .filter(b => b.scrollWidth > b.clientWidth + 1 || Array.from(b.querySelectorAll('p')).some(
            p => p.scrollWidth > p.clientWidth + 1))
        .map(b => b.innerText)""")


def button_styles(page, prefix: str) -> set[tuple[str, str, str]]:
    """(background, colour, border) of the visible buttons whose key starts with ``prefix``."""
    rows = page.evaluate("""pre => Array.from(document.querySelectorAll('[class*="st-key-' + pre + '"] button'))
        .map(b => { const s = getComputedStyle(b); return [s.backgroundColor, s.color, s.borderColor]; })""", prefix)
    return {tuple(r) for r in rows}


def reading_order(page, prefix: str) -> list[str]:
    """The visible buttons with keys starting ``prefix``, top to bottom then left to right: their labels."""
    return page.evaluate("""pre => Array.from(document.querySelectorAll('[class*="st-key-' + pre + '"] button'))
        .map(b => { const r = b.getBoundingClientRect(); return [Math.round(r.top), Math.round(r.left), b.innerText]; })
        .sort((a, b) => a[0] - b[0] || a[1] - b[1]).map(x => x[2])""", prefix)
