"""The participant's page: entry -> consent -> profile -> instructions -> practice (with feedback) -> main trials
(with breaks) -> end. Every state lives in the database (see :mod:`study_app.session`); this page only renders it
and forwards clicks / key presses to the service."""
from __future__ import annotations

import streamlit as st

from ..session import CANNOT_TELL, AccessDenied, StorageUnavailable, TooFast
from .common import get_service, storage_error, style

PRETTY_ROLES = {"haematologist": "Haematologist / haematopathologist", "trainee": "Trainee in haematology",
                "biomedical_scientist": "Biomedical scientist / laboratory technologist", "other": "Other"}
# keys for class buttons: digits first, then letters that Streamlit allows (C and R are reserved)
CLASS_KEYS = list("123456789") + list("ABDEFGHIJKLMNOPQSTUVWXYZ")


def _session_id() -> str:
    from streamlit.runtime.scriptrunner import get_script_run_ctx
    ctx = get_script_run_ctx()
    return ctx.session_id if ctx is not None else "no-session"


def _token() -> str | None:
    t = st.query_params.get("t")
    return t or st.session_state.get("token")


def _act(action: str, *args) -> None:
    """Button callback: call ``service.<action>(*args)``; on a database outage keep the action for *Try again*."""
    ss = st.session_state
    ss.pop("error", None)
    try:
        result = getattr(get_service(), action)(*args)
    except StorageUnavailable:
        ss["pending"] = (action, args)
        ss["error"] = "storage"
        return
    except TooFast:
        ss["error"] = "toofast"
        return
    except AccessDenied:
        ss["error"] = "denied"
        return
    except ValueError as exc:
        ss["error"] = str(exc)
        return
    ss.pop("pending", None)
    if action == "answer_class":
        ss.pop("class_choice", None)
        if result.feedback is not None:
            ss["feedback"] = {**result.feedback, "answer_auth": ss.get("last_auth"), "answer_class": args[2]}
    if action == "answer_auth":
        ss["last_auth"] = args[2]


def _retry() -> None:
    pending = st.session_state.pop("pending", None)
    st.session_state.pop("error", None)
    if pending:
        _act(pending[0], *pending[1])


def _choose_class(assignment_id: int, cls: str | None) -> None:
    st.session_state["class_choice"] = (assignment_id, cls) if cls is not None else None


def _join(code: str) -> None:
    try:
        inv = get_service().join_with_code(code)
    except AccessDenied:
        st.session_state["error"] = "badcode"
        return
    except StorageUnavailable:
        st.session_state["error"] = "storage"
        return
    st.session_state["token"] = inv.token
    st.query_params["t"] = inv.token
    if "code" in st.query_params:
        del st.query_params["code"]


def _errors() -> None:
    err = st.session_state.get("error")
    if err == "storage":
        storage_error()
        st.button("Try again", on_click=_retry, type="primary", shortcut="Enter", key="retry")
    elif err == "toofast":
        st.toast("That was very fast; please look at the image and answer again.")
        st.session_state.pop("error", None)
    elif err == "denied":
        st.error("This action does not belong to your link. Please reload the page.")
    elif err == "badcode":
        st.error("That study code is not valid. Please check it and try again.")
    elif err:
        st.error(err)


# --------------------------------------------------------------------------------------------- stages
def _entry(svc) -> None:
    st.title(svc.cfg.title)
    code = st.query_params.get("code", "")
    if not svc.cfg.code:
        st.info("Please open the personal link you received from the study team.")
        return
    st.write("Welcome! Enter the study code you were given to begin.")
    with st.form("join"):
        value = st.text_input("Study code", value=code, max_chars=64)
        if st.form_submit_button("Begin", type="primary"):
            _join(value)
            st.rerun()
    _errors()


def _consent(svc, token: str) -> None:
    st.title(svc.cfg.title)
    st.markdown(svc.cfg.text.consent)
    if svc.cfg.text.contact:
        st.caption(f"Contact: {svc.cfg.text.contact}")
    if st.session_state.get("token") and not st.query_params.get("t"):
        st.query_params["t"] = token
    st.caption("Tip: bookmark this page; the same address brings you back to where you stopped.")
    agree = st.checkbox("I have read the information above and agree to take part.", key="agree")
    st.button("Continue", type="primary", disabled=not agree, on_click=_act, args=("give_consent", token),
              key="consent-continue")


def _profile(svc, token: str) -> None:
    st.header("About you")
    with st.form("profile"):
        role = st.selectbox("Your role", svc.cfg.roles, format_func=lambda r: PRETTY_ROLES.get(r, r), index=None,
                            placeholder="Choose your role")
        years = st.number_input("Years of experience in blood-cell morphology", min_value=0.0, max_value=70.0,
                                step=1.0, value=None, placeholder="e.g. 5")
        ok = st.form_submit_button("Continue", type="primary")
    if ok:
        if role is None or years is None:
            st.error("Please choose your role and enter your years of experience.")
        else:
            _act("save_profile", token, role, float(years))
            st.rerun()


def _instructions(svc, token: str, n_practice: int) -> None:
    st.header("How it works")
    st.markdown(svc.cfg.text.instructions)
    ex = svc.examples()
    if ex:
        st.markdown("**Real example cells of each type**")
        cols = st.columns(min(4, len(ex)))
        for i, (cls, path) in enumerate(ex):
            with cols[i % len(cols)]:
                st.image(str(path), caption=cls.replace("_", " ").capitalize(), width=150, output_format="PNG")
    label = f"Start {n_practice} practice images" if n_practice else "Start"
    st.button(label, type="primary", shortcut="Enter", on_click=_act, args=("finish_instructions", token),
              key="instructions-continue")


def _interlude(svc, token: str, state) -> None:
    if state.stage == "main_intro":
        st.header("Practice complete")
        st.markdown(f"Now the main part: **{state.n_main} images**. From here on there is no feedback. "
                    "Go with your best judgement; there is no time limit, but please do not deliberate too long.")
        label = "Start the main part"
    else:
        st.header("Time for a short break")
        st.markdown(f"You have finished block {state.block} of {state.n_blocks} "
                    f"({state.main_done} of {state.n_main} images). Rest your eyes, then continue when ready.")
        label = "Continue"
    st.button(label, type="primary", shortcut="Enter", on_click=_act, args=("end_break", token), key="interlude")


def _feedback(fb: dict) -> None:
    src = "real" if fb["source"] == "real" else "AI-generated"
    cls = fb["true_class"].replace("_", " ")
    st.header("Practice feedback")
    (st.success if fb["auth_correct"] else st.error)(
        f"This image was **{src}** — you said *{'real' if fb['answer_auth'] == 'real' else 'AI-generated'}*.")
    (st.success if fb["answer_class"] == fb["true_class"] else st.info)(
        f"Cell type: **{cls}** — you said *{str(fb['answer_class']).replace('_', ' ')}*.")
    st.button("Next image", type="primary", shortcut="Enter", key="feedback-next",
              on_click=lambda: st.session_state.pop("feedback", None))


def _done(svc, token: str) -> None:
    st.title("Thank you!")
    st.markdown(svc.cfg.text.end)
    if svc.cfg.design.show_score:
        sc = svc.score(token)
        if sc["n"]:
            a, b = st.columns(2)
            a.metric("Real vs AI-generated", f"{sc['auth_accuracy']:.0%}", help=f"correct on {sc['n']} images")
            b.metric("Cell type", f"{sc['class_accuracy']:.0%}", help=f"correct on {sc['n']} images")
            st.caption("Chance is 50 % for real vs AI-generated. These scores are for your information only.")


def _auth_buttons(svc, token: str, trial) -> None:
    K = svc.K
    cfg = svc.cfg.confidence
    pct = [round(50 + 50 * (k - 1) / (K - 1)) for k in range(1, K + 1)]
    label = (lambda k: f"{pct[k - 1]} %") if cfg.style == "percent" else (lambda k: cfg.labels[k - 1])
    st.markdown('<div class="cyto-q">1 · Real or AI-generated?</div>'
                '<div class="cyto-hint">Pick the side and how sure you are: one click or one key '
                f'(1–{K} AI-generated, {K + 1}–{2 * K} real).</div>', unsafe_allow_html=True)
    left, right = st.columns(2, gap="medium")
    with left:
        st.markdown('<div class="cyto-side cyto-ai">◀ AI-generated</div>', unsafe_allow_html=True)
        cols = st.columns(K, gap="small")
        for i, k in enumerate(range(K, 0, -1)):  # certain ... guessing, from the outside in
            cols[i].button(label(k), key=f"auth-{trial.assignment_id}-synthetic-{k}", shortcut=str(i + 1),
                           width="stretch", on_click=_act,
                           args=("answer_auth", token, trial.assignment_id, "synthetic", k))
    with right:
        st.markdown('<div class="cyto-side cyto-real">Real ▶</div>', unsafe_allow_html=True)
        cols = st.columns(K, gap="small")
        for i, k in enumerate(range(1, K + 1)):
            cols[i].button(label(k), key=f"auth-{trial.assignment_id}-real-{k}", shortcut=str(K + i + 1),
                           width="stretch", on_click=_act,
                           args=("answer_auth", token, trial.assignment_id, "real", k))


def _class_buttons(svc, token: str, trial) -> None:
    K = svc.K
    cfg = svc.cfg.confidence
    side = "Real" if trial.auth_response == "real" else "AI-generated"
    pct = round(50 + 50 * (trial.auth_confidence_level - 1) / (K - 1))
    conf = f"{pct} %" if cfg.style == "percent" else cfg.labels[trial.auth_confidence_level - 1]
    st.markdown(f'<span class="cyto-chip">1 · {side}, {conf}</span>', unsafe_allow_html=True)
    choice = st.session_state.get("class_choice")
    chosen = choice[1] if choice and choice[0] == trial.assignment_id else None
    if chosen is None:
        st.markdown('<div class="cyto-q">2 · Which cell type?</div>'
                    '<div class="cyto-hint">Press the key shown on the button; 0 = cannot tell.</div>',
                    unsafe_allow_html=True)
        classes = svc.classes
        ncol = 3 if len(classes) + 1 <= 9 else 4
        cols = st.columns(ncol, gap="small")
        for i, c in enumerate(classes):
            cols[i % ncol].button(c.replace("_", " ").capitalize(), key=f"class-{trial.assignment_id}-{c}",
                                  shortcut=CLASS_KEYS[i], width="stretch", on_click=_choose_class,
                                  args=(trial.assignment_id, c))
        cols[len(classes) % ncol].button("Cannot tell", key=f"class-{trial.assignment_id}-{CANNOT_TELL}",
                                         shortcut="0", width="stretch", on_click=_act,
                                         args=("answer_class", token, trial.assignment_id, CANNOT_TELL, 1))
    else:
        st.markdown(f'<div class="cyto-q">2 · How sure are you that it is a {chosen.replace("_", " ")}?</div>'
                    f'<div class="cyto-hint">Keys 1–{K}; Backspace to change the cell type.</div>',
                    unsafe_allow_html=True)
        chance = 100.0 / len(svc.classes)
        cols = st.columns(K + 1, gap="small")
        for k in range(1, K + 1):
            lab = cfg.labels[k - 1]
            if cfg.style == "percent":
                lab = f"{lab} ({round(chance + (100 - chance) * (k - 1) / (K - 1))} %)"
            cols[k - 1].button(lab, key=f"cconf-{trial.assignment_id}-{k}", shortcut=str(k), width="stretch",
                               type="primary" if k == K else "secondary", on_click=_act,
                               args=("answer_class", token, trial.assignment_id, chosen, k))
        cols[K].button("← Change", key=f"cback-{trial.assignment_id}", shortcut="Backspace", width="stretch",
                       on_click=_choose_class, args=(trial.assignment_id, None))


def _trial(svc, token: str, state, trial) -> None:
    if trial is None:
        st.rerun()
    if trial.phase == "practice":
        head = f"Practice {trial.trial_index + 1} of {trial.n_in_phase}"
        frac = trial.trial_index / max(1, trial.n_in_phase)
    else:
        head = f"Image {trial.trial_index + 1} of {trial.n_in_phase}"
        if state.n_blocks > 1:
            head += f" · block {trial.block + 1} of {state.n_blocks}"
        frac = trial.trial_index / max(1, trial.n_in_phase)
    st.markdown(f'<div class="cyto-progress">{head}</div>', unsafe_allow_html=True)
    st.progress(frac)
    if trial.is_attention_check:
        want = "Real" if trial.instructed_answer == "real" else "AI-generated"
        st.info(f"**Attention check:** please answer **{want}** for this image (any confidence), "
                "then any cell type.", icon="👁️")
    px = svc.cfg.stimuli.display_px
    with st.container(key="stimulus"):
        # output_format="PNG": the file's bytes go out unchanged ("auto" would re-encode RGB images as JPEG,
        # whose size depends on the content: a real-vs-synthetic leak)
        st.image(svc.image_bytes(trial.stimulus_id), width=px, output_format="PNG")
    if trial.auth_response is None:
        _auth_buttons(svc, token, trial)
    else:
        _class_buttons(svc, token, trial)


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
    try:
        state, trial = svc.view(token, _session_id()) if "feedback" not in st.session_state else (
            svc.state(token), None)
    except AccessDenied:
        st.error("**This link is not valid.** It may be mistyped, or the participation was withdrawn. "
                 "Please use the personal link you received, or contact the study team.")
        st.session_state.pop("token", None)
        return
    except StorageUnavailable:
        storage_error()
        st.button("Try again", type="primary", shortcut="Enter", key="retry-state")
        return
    st.session_state["token"] = token
    if st.session_state.get("error") == "storage":
        _errors()
        return
    try:
        fb = st.session_state.get("feedback")
        if fb is not None:
            _feedback(fb)
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
                state, trial = svc.view(token, _session_id())
            _trial(svc, token, state, trial)
        else:
            _done(svc, token)
    except StorageUnavailable:
        storage_error()
        st.button("Try again", type="primary", shortcut="Enter", key="retry-render")
        return
    _errors()
