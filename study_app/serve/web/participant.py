"""The participant's page: entry -> consent -> profile -> instructions -> practice (with feedback) -> main trials
(with breaks) -> end. Every state lives in the database (:mod:`study_app.serve.session`); this page renders it and
forwards clicks and key presses (all through the screen component's keyboard gate) to the service."""
from __future__ import annotations

import streamlit as st

from cytocore.schema import CANNOT_TELL

from ..errors import AccessDenied
from ..labels import class_name
from ..media import served_name, stimulus_url
from ...storage import StorageUnavailable
from .actions import act, claim_now, claimed, continue_here, session_id, show_errors
from .common import get_service, storage_error, style, unexpected_error
from .screen import event, screen
from .trial import trial_screen

PRETTY_ROLES = {"haematologist": "Haematologist / haematopathologist", "trainee": "Trainee in haematology",
                "biomedical_scientist": "Biomedical scientist / laboratory technologist", "other": "Other"}
REMEMBER = "_cyto_remember"


def _token() -> str | None:
    t = st.query_params.get("t")
    return t or st.session_state.get("token")


def _enter(token: str) -> None:
    st.session_state["token"] = token
    st.query_params["t"] = token
    if "code" in st.query_params:
        del st.query_params["code"]


def _join(code: str, remembered: str | None) -> None:
    """The person agreed to the consent text on the study-code page: now they become a participant."""
    try:
        _enter(get_service().join_with_code(code, remembered or None).token)
    except AccessDenied:
        st.session_state["error"] = "badcode"
    except StorageUnavailable:
        st.session_state["error"] = "storage"


def _recalled() -> None:
    got = event("recalled")
    st.session_state["remembered"] = (got or {}).get("token") or ""


# --------------------------------------------------------------------------------------------- stages
def _entry(svc) -> None:
    """No token yet: the study-code page. One participant per browser per study: a browser that holds a session
    of this study continues it; anyone else reads the consent text and becomes a participant by agreeing."""
    st.title(svc.cfg.title)
    if not svc.cfg.code:
        screen("no-code")
        st.info("Please open the personal link you received from the study team.")
        return
    remembered = st.session_state.get("remembered")
    if remembered is None:                       # first ask the browser what it remembers
        screen("entry-recall", recall=svc.cfg.id, on_recalled=_recalled)
        st.caption("One moment…")
        return
    if remembered and svc.is_valid(remembered):
        screen("resume", {"ENTER": "resume"}, svc.cfg.design.min_rt_ms)
        st.success("**Welcome back.** This browser has a session of this study: you continue where you stopped.")
        st.button("`Enter` Continue where I stopped", type="primary", key="resume", on_click=_enter,
                  args=(remembered,))
        st.caption("Someone else on this computer? Please take part in a private window or another browser, "
                   "or ask the study team for a personal link.")
        return
    code = st.query_params.get("code", "")
    if svc.code_is_valid(code):
        _consent_text(svc, "code-consent")
        st.button("`Enter` I have read the information above and agree to take part", type="primary",
                  key="consent-agree", on_click=_join, args=(code, remembered))
        show_errors()
        return
    screen("entry")
    st.write("Welcome! Enter the study code you were given to begin.")
    with st.form("join"):
        value = st.text_input("Study code", value=code, max_chars=64)
        if st.form_submit_button("Begin", type="primary"):
            if svc.code_is_valid(value):
                st.query_params["code"] = value.strip()
                st.rerun()
            st.session_state["error"] = "badcode"
    show_errors()
    st.session_state.pop("error", None)


def _consent_text(svc, screen_id: str) -> None:
    screen(screen_id, {"ENTER": "consent-agree"}, svc.cfg.design.min_rt_ms)
    st.title(svc.cfg.title)
    st.markdown(svc.cfg.text.consent)
    if svc.cfg.text.contact:
        st.caption(f"Contact: {svc.cfg.text.contact}")


def _consent(svc, token: str) -> None:
    _consent_text(svc, "consent")
    st.caption("Tip: bookmark this page; the same address brings you back to where you stopped.")
    st.button("`Enter` I have read the information above and agree to take part", type="primary",
              key="consent-agree", on_click=act, args=("give_consent", token))


def _elsewhere(svc) -> None:
    """This tab does not hold the study: another tab or window of the same link does (the newest one)."""
    screen("elsewhere", {"ENTER": "continue-here"}, svc.cfg.design.min_rt_ms)
    st.title(svc.cfg.title)
    if st.session_state.get("notice"):
        st.error(st.session_state["notice"])
    st.warning("**This study is open in another tab or window**, which now shows your next image and takes your "
               "answers. Everything you answered is saved. To go on in this tab instead, press *Continue here* "
               "(the other tab then stops taking answers).", icon="🗂️")
    st.button("`Enter` Continue here", type="primary", key="continue-here", on_click=continue_here)


def _choose_role(role: str | None) -> None:
    st.session_state["role_choice"] = role


def _profile(svc, token: str) -> None:
    st.header("About you")
    role = st.session_state.get("role_choice")
    if role is None:
        keys = {str(i + 1): f"role-{r}" for i, r in enumerate(svc.cfg.roles)}
        screen("profile-role", keys, svc.cfg.design.min_rt_ms)
        st.markdown('<div class="cyto-q">Your role</div><div class="cyto-hint cyto-keys">Press its number, or '
                    'click.</div>',
                    unsafe_allow_html=True)
        for i, r in enumerate(svc.cfg.roles):
            st.button(f"`{i + 1}` {PRETTY_ROLES.get(r, r)}", key=f"role-{r}", width="stretch", on_click=_choose_role,
                      args=(r,))
        return
    screen("profile-years", {"BACKSPACE": "role-change"}, svc.cfg.design.min_rt_ms,
           focus='[data-testid="stNumberInput"] input')
    st.markdown(f'<span class="cyto-chip">Role: {PRETTY_ROLES.get(role, role)}</span>', unsafe_allow_html=True)
    with st.form("profile"):
        years = st.number_input("Years of experience in blood-cell morphology (then Enter)", min_value=0.0,
                                max_value=70.0, step=1.0, value=None, placeholder="e.g. 5")
        ok = st.form_submit_button("Continue", type="primary")
    st.button("`Backspace` ← Change the role", key="role-change", on_click=_choose_role, args=(None,))
    if ok:
        if years is None:
            st.error("Please enter your years of experience (0 if you are starting).")
        else:
            act("save_profile", token, role, float(years))
            st.rerun()


def _instructions(svc, token: str, n_practice: int) -> None:
    screen("instructions", {"ENTER": "instructions-continue"}, svc.cfg.design.min_rt_ms)
    st.header("How it works")
    st.markdown(svc.cfg.text.instructions)
    ex = svc.examples()
    if ex:
        st.markdown("**Real example cells of each type**")
        cols = st.columns(min(4, len(ex)))
        for i, (cls, path) in enumerate(ex):
            with cols[i % len(cols)]:
                st.image(str(path), caption=class_name(cls), width=150, output_format="PNG")
    label = f"`Enter` Start {n_practice} practice images" if n_practice else "`Enter` Start"
    st.button(label, type="primary", on_click=act, args=("finish_instructions", token), key="instructions-continue")


def _interlude(svc, token: str, state) -> None:
    screen(f"interlude-{state.stage}-{state.block}", {"ENTER": "interlude"}, svc.cfg.design.min_rt_ms)
    if state.stage == "main_intro":
        st.header("Practice complete")
        st.markdown(f"Now the main part: **{state.n_main} images**. From here on there is no feedback. "
                    "Go with your best judgement; there is no time limit, but please do not deliberate too long.")
        label = "`Enter` Start the main part"
    else:
        st.header("Time for a short break")
        st.markdown(f"You have finished block {state.block} of {state.n_blocks} "
                    f"({state.main_done} of {state.n_main} images). Rest your eyes, then continue when ready.")
        label = "`Enter` Continue"
    st.button(label, type="primary", on_click=act, args=("end_break", token), key="interlude")


def _feedback(svc, fb: dict) -> None:
    # the name the trial's image was served under: the browser shows it again without downloading it again
    shown = list((st.session_state.get("stimulus_names") or {}).values())
    name = st.session_state.setdefault("feedback_name", shown[-1] if shown else served_name())
    url = stimulus_url(svc.image_bytes(fb["stimulus_id"]), name)
    st.header("Practice feedback")
    screen(f"feedback-{fb['tag']}", {"ENTER": "feedback-next"}, svc.cfg.design.min_rt_ms,
           image={"url": url, "width": min(260, svc.cfg.stimuli.display_px), "presentation": 0, "confirm": False})
    src = "real" if fb["source"] == "real" else "AI-generated"
    cls = class_name(fb["true_class"]).lower()
    said = "cannot tell" if fb["answer_class"] == CANNOT_TELL else class_name(str(fb["answer_class"])).lower()
    (st.success if fb["auth_correct"] else st.error)(
        f"This image was **{src}** — you said *{'real' if fb['answer_auth'] == 'real' else 'AI-generated'}*.")
    (st.success if fb["answer_class"] == fb["true_class"] else st.info)(
        f"Cell type: **{cls}** — you said *{said}*.")

    def next_image():
        st.session_state.pop("feedback", None)
        st.session_state.pop("feedback_name", None)
    st.button("`Enter` Next image", type="primary", key="feedback-next", on_click=next_image)


def _done(svc, token: str) -> None:
    screen("done")
    st.title("Thank you!")
    st.markdown(svc.cfg.text.end)
    if svc.cfg.design.show_score:
        sc = svc.score(token)
        if sc["n"]:
            a, b = st.columns(2)
            a.metric("Real vs AI-generated", f"{sc['auth_accuracy']:.0%}", help=f"correct on {sc['n']} images")
            b.metric("Cell type", f"{sc['class_accuracy']:.0%}", help=f"correct on {sc['n']} images")
            st.caption("Chance is 50 % for real vs AI-generated. These scores are for your information only.")


def _stage(svc, token: str, state, trial) -> None:
    fb = st.session_state.get("feedback")
    if fb is not None:
        _feedback(svc, fb)
    elif state.stage == "consent":
        _consent(svc, token)
    elif state.stage == "profile":
        _profile(svc, token)
    elif state.stage == "instructions":
        _instructions(svc, token, state.n_practice)
    elif state.stage in ("main_intro", "break"):
        _interlude(svc, token, state)
    elif state.stage in ("practice", "main"):
        if trial is None:  # the feedback screen was just dismissed: fetch (and present) the trial now
            state, trial = svc.view(token, session_id(), claim=False)
            if state.elsewhere:
                _elsewhere(svc)
                return
        trial_screen(svc, token, state, trial, session_id())
    else:
        _done(svc, token)


def participant_page() -> None:
    style()
    try:
        svc = get_service()
    except StorageUnavailable:
        storage_error("starting")
        st.button("Try again", type="primary", key="retry-start")
        return
    token = _token()
    if not token:
        _entry(svc)
        return
    key = session_id()
    st.session_state[REMEMBER] = {"study": svc.cfg.id, "token": token}    # this browser's session of the study
    try:
        state, trial = svc.view(token, key, claim=claim_now()) if "feedback" not in st.session_state else (
            svc.state(token), None)
        claimed()                    # (kept for the next run when the database could not be reached)
    except AccessDenied:
        st.session_state.pop(REMEMBER, None)
        screen("invalid", forget=svc.cfg.id)
        st.error("**This link is not valid.** It may be mistyped, or the participation was withdrawn. "
                 "Please use the personal link you received, or contact the study team.")
        st.session_state.pop("token", None)
        return
    except StorageUnavailable:
        storage_error()
        st.button("Try again", type="primary", key="retry-state")
        return
    st.session_state["token"] = token
    if st.session_state.get("error") == "storage":
        show_errors()
        return
    try:
        if state.elsewhere:
            _elsewhere(svc)
        else:
            _stage(svc, token, state, trial)
    except StorageUnavailable:
        storage_error()
        st.button("Try again", type="primary", key="retry-render")
        return
    except Exception as exc:  # noqa: BLE001 - a participant never sees a traceback
        unexpected_error(exc)
        return
    show_errors()
