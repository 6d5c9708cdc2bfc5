"""What a click or a key press does on the participant's page: the service call, and what the participant is told
when it could not be stored. Shared by the page (:mod:`.participant`) and the trial screen (:mod:`.trial`).

Nothing is dropped silently: an answer the server refuses (too early for its screen, an image not confirmed
loaded, another tab holding the study) sets a *notice* that the next screen shows above the image, and the same
question is asked again; a database outage keeps the action for *Try again*."""
from __future__ import annotations

import secrets

import streamlit as st

from ..errors import AccessDenied, NotLoaded, Superseded, TooFast
from ...storage import StorageUnavailable
from .common import get_service, storage_error

NOT_STORED_EARLY = ("**Your last answer was not stored**: it came before this question was ready. "
                    "Please answer again.")
NOT_STORED_ELSEWHERE = ("**Your last answer was not stored**: this study is now open in another tab or window.")
ANSWERS = ("answer_auth", "choose_class", "answer_class")


def session_id() -> str:
    """This browser session's key (a reload or a reconnect to a restarted server is a new session)."""
    ss = st.session_state
    if "_cyto_session" not in ss:
        ss["_cyto_session"] = secrets.token_hex(8)
        ss["_cyto_claim"] = True          # a new tab (or reload) takes the study: see serve/presenting.py
    return ss["_cyto_session"]


def claim_now() -> bool:
    """Whether this page run takes the study for this tab (its first run, or "Continue here"; the page calls
    :func:`claimed` once the service has it)."""
    return bool(st.session_state.get("_cyto_claim", False))


def claimed() -> None:
    st.session_state.pop("_cyto_claim", None)


def continue_here() -> None:
    st.session_state["_cyto_claim"] = True
    st.session_state.pop("notice", None)


def act(action: str, *args) -> None:
    """Button callback: call ``service.<action>(*args)``; on a database outage keep the action for *Try again*."""
    ss = st.session_state
    ss.pop("error", None)
    if action in ANSWERS:
        ss.pop("notice", None)
    try:
        result = getattr(get_service(), action)(*args)
    except StorageUnavailable:
        ss["pending"], ss["error"] = (action, args), "storage"
        return
    except (TooFast, NotLoaded):
        if action in ANSWERS:
            ss["notice"] = NOT_STORED_EARLY
        return
    except Superseded:
        ss["notice"] = NOT_STORED_ELSEWHERE
        return
    except AccessDenied:
        ss["error"] = "denied"
        return
    except ValueError as exc:
        ss["error"] = str(exc)
        return
    ss.pop("pending", None)
    if action == "answer_class" and result.feedback is not None:
        ss["feedback"] = result.feedback


def retry() -> None:
    pending = st.session_state.pop("pending", None)
    st.session_state.pop("error", None)
    if pending:
        act(pending[0], *pending[1])


def show_errors() -> None:
    err = st.session_state.get("error")
    if err == "storage":
        storage_error()
        st.button("Try again", on_click=retry, type="primary", key="retry")
    elif err == "denied":
        st.error("This action does not belong to your link. Please reload the page.")
    elif err == "badcode":
        st.error("That study code is not valid. Please check it and try again.")
    elif err:
        st.error(err)
