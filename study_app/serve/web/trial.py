"""One trial on screen: the stimulus (served under a random name, answers only after the browser confirmed it
loaded), then three screens, each answerable by one key: real or AI-generated with confidence, the cell type (or
cannot tell), the confidence in the cell type. Every option of a rating scale is styled alike, and buttons are laid
out row by row so a phone stacks them in key order."""
from __future__ import annotations

import streamlit as st

from ..media import served_name, stimulus_url
from ..trials import CANNOT_TELL
from ...storage import utcnow
from .screen import event, screen

# keys for class buttons: digits first, then letters (0 is "cannot tell")
CLASS_KEYS = list("123456789") + list("ABDEFGHIJKLMNOPQSTUVWXYZ")


def _act(*args) -> None:
    from .participant import act
    act(*args)


def _percent(k: int, K: int, chance: float) -> int:
    return round(100 * (chance + (1 - chance) * (k - 1) / (K - 1)))


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


def _auth_keys(svc, trial) -> dict[str, str]:
    K = svc.K
    aid = trial.assignment_id
    keys = {str(i + 1): f"auth-{aid}-synthetic-{k}" for i, k in enumerate(range(K, 0, -1))}
    keys.update({str(K + i + 1): f"auth-{aid}-real-{k}" for i, k in enumerate(range(1, K + 1))})
    return keys


def _auth_buttons(svc, token: str, trial) -> None:
    K, cfg = svc.K, svc.cfg.confidence
    label = (lambda k: f"{_percent(k, K, 0.5)} %") if cfg.style == "percent" else (lambda k: cfg.labels[k - 1])
    st.markdown('<div class="cyto-q">1 · Real or AI-generated?</div>'
                '<div class="cyto-hint">Pick the side and how sure you are: one click or one key '
                f'(1–{K} AI-generated, {K + 1}–{2 * K} real).</div>', unsafe_allow_html=True)
    left, right = st.columns(2, gap="medium")
    for side_col, side, title, levels, first in ((left, "synthetic", "◀ AI-generated", range(K, 0, -1), 1),
                                                 (right, "real", "Real ▶", range(1, K + 1), K + 1)):
        with side_col:
            st.markdown(f'<div class="cyto-side">{title}</div>', unsafe_allow_html=True)
            cols = st.columns(K, gap="small")
            for i, k in enumerate(levels):
                cols[i].button(f"{first + i} · {label(k)}", key=f"auth-{trial.assignment_id}-{side}-{k}",
                               width="stretch", on_click=_act,
                               args=("answer_auth", token, trial.assignment_id, side, k))


def _choose_class(assignment_id: int, cls: str | None) -> None:
    st.session_state["class_choice"] = (assignment_id, cls, utcnow()) if cls is not None else None


def _chosen(trial):
    choice = st.session_state.get("class_choice")
    return choice if choice and choice[0] == trial.assignment_id else None


def _class_keys(svc, trial) -> dict[str, str]:
    aid = trial.assignment_id
    choice = _chosen(trial)
    if choice is None:
        keys = {CLASS_KEYS[i]: f"class-{aid}-{c}" for i, c in enumerate(svc.classes)}
        keys["0"] = f"class-{aid}-{CANNOT_TELL}"
        return keys
    keys = {str(k): f"cconf-{aid}-{k}" for k in range(1, svc.K + 1)}
    keys["BACKSPACE"] = f"cback-{aid}"
    return keys


def _class_buttons(svc, token: str, trial) -> None:
    K, cfg = svc.K, svc.cfg.confidence
    side = "Real" if trial.auth_response == "real" else "AI-generated"
    conf = (f"{_percent(trial.auth_confidence_level, K, 0.5)} %" if cfg.style == "percent"
            else cfg.labels[trial.auth_confidence_level - 1])
    st.markdown(f'<span class="cyto-chip">1 · {side}, {conf}</span>', unsafe_allow_html=True)
    choice = _chosen(trial)
    if choice is None:
        st.markdown('<div class="cyto-q">2 · Which cell type?</div>'
                    '<div class="cyto-hint">Press the key shown on the button; 0 = cannot tell.</div>',
                    unsafe_allow_html=True)
        options = [(CLASS_KEYS[i], c, c.replace("_", " ").capitalize()) for i, c in enumerate(svc.classes)]
        options.append(("0", CANNOT_TELL, "Cannot tell"))
        ncol = 3 if len(options) <= 9 else 4
        for row in range(0, len(options), ncol):       # row by row: a phone stacks them in key order
            cols = st.columns(ncol, gap="small")
            for col, (key, c, text) in zip(cols, options[row:row + ncol]):
                if c == CANNOT_TELL:
                    col.button(f"{key} · {text}", key=f"class-{trial.assignment_id}-{c}", width="stretch",
                               on_click=_act, args=("answer_class", token, trial.assignment_id, CANNOT_TELL, 1))
                else:
                    col.button(f"{key} · {text}", key=f"class-{trial.assignment_id}-{c}", width="stretch",
                               on_click=_choose_class, args=(trial.assignment_id, c))
        return
    chosen, since = choice[1], choice[2]
    st.markdown(f'<div class="cyto-q">2 · How sure are you that it is a {chosen.replace("_", " ")}?</div>'
                f'<div class="cyto-hint">Keys 1–{K}; Backspace to change the cell type.</div>',
                unsafe_allow_html=True)
    chance = 1.0 / len(svc.classes)
    cols = st.columns(K, gap="small")
    for k in range(1, K + 1):
        lab = cfg.labels[k - 1] + (f" ({_percent(k, K, chance)} %)" if cfg.style == "percent" else "")
        cols[k - 1].button(f"{k} · {lab}", key=f"cconf-{trial.assignment_id}-{k}", width="stretch", on_click=_act,
                           args=("answer_class", token, trial.assignment_id, chosen, k, since))
    st.button("Backspace · ← Change the cell type", key=f"cback-{trial.assignment_id}", on_click=_choose_class,
              args=(trial.assignment_id, None))


def trial_screen(svc, token: str, state, trial, session_key: str) -> None:
    if trial is None:
        st.rerun()
    _header(state, trial)
    aid = trial.assignment_id
    step = "auth" if trial.auth_response is None else ("class" if _chosen(trial) is None else "cconf")
    keys = {} if not trial.loaded else (_auth_keys(svc, trial) if step == "auth" else _class_keys(svc, trial))
    url = stimulus_url(svc.image_bytes(trial.stimulus_id), _stimulus_name(trial))

    def loaded():
        got = event("loaded") or {}
        _act("confirm_loaded", token, aid, int(got.get("presentation", -1)))

    def retry():
        _act("retry_image", token, aid, session_key)
    screen(f"t{aid}.p{trial.presentation}.{step}.{'ready' if trial.loaded else 'loading'}", keys,
           svc.cfg.design.min_rt_ms,
           image={"url": url, "width": svc.cfg.stimuli.display_px, "presentation": trial.presentation,
                  "confirm": not trial.loaded}, on_loaded=loaded, on_retry=retry)
    if not trial.loaded:
        st.caption("Loading the image…")
        return
    if step == "auth":
        _auth_buttons(svc, token, trial)
    else:
        _class_buttons(svc, token, trial)
