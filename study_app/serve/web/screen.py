"""The page's screen component (``screen.js``): the stimulus with load confirmation, the keyboard gate, the
remembered session, the outage message and re-sync after a reconnect, the "not stored" notice. One instance per
page run, always under the same key."""
from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any, Callable

import streamlit as st

KEY = "cyto-screen"
OUTAGE_TEXT = ("<b>The connection to the study was interrupted.</b><br>Everything you answered is saved. "
               "This page reconnects by itself; please wait a moment. If nothing happens within a minute, "
               "reload the page: you will continue where you stopped.")
_JS = (Path(__file__).with_name("screen.js")).read_text()
_component = None


def _mount():
    global _component
    if _component is None:
        _component = st.components.v2.component("cytostudy_screen", js=_JS, isolate_styles=False)
    return _component


def _noop() -> None:
    pass


def event(name: str) -> dict[str, Any] | None:
    """The payload of the component's last ``name`` event (inside its callback)."""
    value = st.session_state.get(KEY)
    got = value.get(name) if value is not None else None
    return got if isinstance(got, dict) else None


def screen(screen_id: str, keymap: dict[str, str] | None = None, min_rt_ms: float = 0.0,
           image: dict[str, Any] | None = None, recall: str | None = None, forget: str | None = None,
           focus: str | None = None, notice: str | None = None, on_loaded: Callable | None = None,
           on_retry: Callable | None = None, on_recalled: Callable | None = None) -> None:
    """Mount the component for one screen. ``keymap``: key -> Streamlit key of the button it presses; ``image``:
    {url, width, presentation, confirm} (confirm: report "loaded" to the server); ``notice``: shown above the
    image (an answer that was not stored). The browser remembers the participant's token for this study
    (``session_state["_cyto_remember"]``, set by the page) on every screen. ``run`` changes with every page run:
    the page takes no key after a lost connection until a run reached it again."""
    data = {"screen": screen_id, "keymap": keymap or {}, "min_rt_ms": float(min_rt_ms), "image": image,
            "remember": st.session_state.get("_cyto_remember"), "recall": recall, "forget": forget, "focus": focus,
            "notice": notice, "outage_text": OUTAGE_TEXT, "run": secrets.token_hex(4)}
    _mount()(key=KEY, data=data, height="content", on_loaded_change=on_loaded or _noop,
             on_retry_change=on_retry or _noop, on_recalled_change=on_recalled or _noop,
             on_resync_change=_noop)
