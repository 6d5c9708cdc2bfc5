"""One trial on screen: the stimulus (served under a random name, answers only after the browser confirmed it
loaded), then three screens, each answerable by one key or one tap: real or AI-generated with confidence, the cell
type (or cannot tell), the confidence in the cell type. Options and keys come from :mod:`..labels` (consecutive
questions use different keys); every option of a rating scale is styled alike. The page's CSS lays the
real / AI scale out as two columns side by side on a phone (both sides visible without scrolling)."""
from __future__ import annotations

import streamlit as st

from cytocore.schema import CANNOT_TELL

from ..labels import auth_options, class_confidence_options, class_name, class_options, class_phrase, percent
from ..media import served_name, stimulus_url
from .actions import act
from .screen import event, screen


def _stimulus_name(trial) -> str:
    """One random served name per presentation, kept across the reruns of that presentation."""
    names = st.session_state.setdefault("stimulus_names", {})
    key = (trial.assignment_id, trial.presentation)
    if key not in names:
        names.clear()
        names[key] = served_name()
    return names[key]


def _header(state, trial) -> None:
    if trial.phase == "practice":
        head = f"Practice {trial.trial_index + 1} of {trial.n_in_phase}"
    else:
        head = f"Image {trial.trial_index + 1} of {trial.n_in_phase}"
        if state.n_blocks > 1:
            head += f" · block {trial.block + 1} of {state.n_blocks}"
    st.markdown(f'<div class="cyto-progress">{head}</div>', unsafe_allow_html=True)
    st.progress(trial.trial_index / max(1, trial.n_in_phase))
    if trial.is_attention_check:
        want = "Real" if trial.instructed_answer == "real" else "AI-generated"
        st.info(f"**Attention check:** please answer **{want}** for this image (any confidence), "
                "then any cell type.", icon="👁️")


def _keymap(svc, trial) -> dict[str, str]:
    """Key -> Streamlit key of the button it presses, for the question on screen."""
    cfg, tag = svc.cfg.confidence, trial.tag
    if trial.step == "auth":
        return {o.key: f"auth-{tag}-{o.side}-{o.value}" for o in auth_options(svc.K, cfg.style, cfg.labels) if o.key}
    if trial.step == "class":
        return {o.key: f"class-{tag}-{o.value}" for o in class_options(svc.classes, CANNOT_TELL) if o.key}
    keys = {o.key: f"cconf-{tag}-{o.value}"
            for o in class_confidence_options(svc.K, cfg.style, cfg.labels, len(svc.classes)) if o.key}
    keys["BACKSPACE"] = f"cback-{tag}"
    return keys


def _auth_buttons(svc, token: str, trial, session_key: str) -> None:
    K, cfg, tag = svc.K, svc.cfg.confidence, trial.tag
    opts = auth_options(K, cfg.style, cfg.labels)
    st.markdown('<div class="cyto-q">1 · Real or AI-generated?</div>'
                '<div class="cyto-hint cyto-keys">Pick the side and how sure you are: one key '
                f'(1–{K} AI-generated, {K + 1}–{2 * K} real) or one click.</div>', unsafe_allow_html=True)
    with st.container(key=f"scale-{tag}"):
        left, right = st.columns(2, gap="medium")
        for col, side, title, side_opts in ((left, "synthetic", "◀ AI-generated", opts[:K]),
                                            (right, "real", "Real ▶", opts[K:])):
            with col:
                st.markdown(f'<div class="cyto-side">{title}</div>', unsafe_allow_html=True)
                with st.container(key=f"side-{side}-{tag}"):
                    cols = st.columns(K, gap="small")
                    for c, o in zip(cols, side_opts):
                        c.button(o.label(), key=f"auth-{tag}-{side}-{o.value}", width="stretch", on_click=act,
                                 args=("answer_auth", token, trial.assignment_id, side, o.value, session_key))


def _grid(options, ncol: int, key: str, button) -> None:
    """Options row by row (a phone keeps the rows: see the page's CSS)."""
    with st.container(key=key):
        for row in range(0, len(options), ncol):
            cols = st.columns(ncol, gap="small")
            for col, o in zip(cols, options[row:row + ncol]):
                with col:
                    button(o)


def _class_buttons(svc, token: str, trial, session_key: str) -> None:
    K, cfg, tag, aid = svc.K, svc.cfg.confidence, trial.tag, trial.assignment_id
    side = "Real" if trial.auth_response == "real" else "AI-generated"
    conf = (f"{percent(trial.auth_confidence_level, K, 0.5)} %" if cfg.style == "percent"
            else cfg.labels[trial.auth_confidence_level - 1])
    st.markdown(f'<span class="cyto-chip">1 · {side}, {conf}</span>', unsafe_allow_html=True)
    if trial.step == "class":
        st.markdown('<div class="cyto-q">2 · Which cell type?</div>'
                    '<div class="cyto-hint cyto-keys">Press the key shown on the button; 0 = cannot tell.</div>',
                    unsafe_allow_html=True)

        def button(o):
            if o.value == CANNOT_TELL:   # ends the trial: no confidence in "cannot tell"
                st.button(o.label(), key=f"class-{tag}-{o.value}", width="stretch", on_click=act,
                          args=("answer_class", token, aid, CANNOT_TELL, 1, session_key))
            else:
                st.button(o.label(), key=f"class-{tag}-{o.value}", width="stretch", on_click=act,
                          args=("choose_class", token, aid, o.value, session_key))
        opts = class_options(svc.classes, CANNOT_TELL)
        _grid(opts, 3 if len(opts) <= 9 else 4, f"grid-class-{tag}", button)
        return
    chosen = trial.class_choice
    st.markdown(f'<div class="cyto-q">2 · How sure are you that it is {class_phrase(chosen)}?</div>'
                f'<div class="cyto-hint cyto-keys">Keys 1–{K}; Backspace to change the cell type.</div>',
                unsafe_allow_html=True)

    def button(o):
        st.button(o.label(), key=f"cconf-{tag}-{o.value}", width="stretch", on_click=act,
                  args=("answer_class", token, aid, chosen, o.value, session_key))
    _grid(class_confidence_options(K, cfg.style, cfg.labels, len(svc.classes)), K, f"grid-cconf-{tag}", button)
    st.button(f"`Backspace` ← Change the cell type ({class_name(chosen).lower()})", key=f"cback-{tag}",
              on_click=act, args=("choose_class", token, aid, None, session_key))


def trial_screen(svc, token: str, state, trial, session_key: str) -> None:
    if trial is None:
        st.rerun()
    _header(state, trial)
    aid = trial.assignment_id
    keys = _keymap(svc, trial) if trial.loaded else {}
    url = stimulus_url(svc.image_bytes(trial.stimulus_id), _stimulus_name(trial))

    def loaded():
        got = event("loaded") or {}
        act("confirm_loaded", token, aid, int(got.get("presentation", -1)))

    def retry():
        act("retry_image", token, aid, session_key)
    screen(f"{trial.tag}.p{trial.presentation}.{trial.step}.{'ready' if trial.loaded else 'loading'}", keys,
           svc.cfg.design.min_rt_ms,
           image={"url": url, "width": svc.cfg.stimuli.display_px, "presentation": trial.presentation,
                  "confirm": not trial.loaded}, on_loaded=loaded, on_retry=retry,
           notice=st.session_state.get("notice"))
    if not trial.loaded:
        st.caption("Loading the image…")
        return
    if trial.step == "auth":
        _auth_buttons(svc, token, trial, session_key)
    else:
        _class_buttons(svc, token, trial, session_key)
