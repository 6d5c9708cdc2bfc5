"""Simulated raters that take the study through exactly the participant's code path.

Each bot joins like a person (an invite), consents, fills in the profile (role ``bot``), reads the instructions,
does the practice and the main trials, takes the breaks, and answers every trial through
:class:`study_app.serve.session.StudyService` (``view`` -> ``confirm_loaded`` -> ``answer_auth`` ->
``choose_class`` -> ``answer_class``), the same methods the Streamlit page calls. The answers come from the rater
model :func:`cytocore.rater_model.simulate_response` (chosen d', bias, class accuracy, metacognitive efficiency,
lapses), which the analysis's simulated studies share — no analysis stack is needed.
Response times are measured by the server as for people: before each answer a bot waits ``think_ms`` (default: just
over ``design.min_rt_ms``, the per-screen minimum) or, with ``realtime``, the simulated response times.
"""
from __future__ import annotations

import dataclasses
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from cytocore.rater_model import RaterProfile, simulate_response
from cytocore.schema import CANNOT_TELL

from .serve.session import StudyService, TooFast


@dataclass
class BotResult:
    participant_id: str
    token: str
    answered: int = 0
    acknowledged: list[int] = field(default_factory=list)       # response ids the server acknowledged
    latencies_ms: list[float] = field(default_factory=list)     # answer submitted -> next image ready
    errors: list[str] = field(default_factory=list)


def run_bot(service: StudyService, profile: RaterProfile, seed: int = 0, token: str | None = None,
            think_ms: float | None = None, realtime: bool = False, max_trials: int | None = None,
            on_ack: Callable[[BotResult, int], None] | None = None) -> BotResult:
    rng = np.random.default_rng(seed)
    if token is None:
        inv = service.create_invites(1, label="bot", entry="bot")[0]
        token = inv.token
    res = BotResult(service.participant_id(token), token)
    wait = (service.cfg.design.min_rt_ms + 15.0) if think_ms is None else think_ms
    session_key = f"bot-{seed}-{threading.get_ident()}"
    classes = service.classes
    st = service.state(token)
    if st.stage == "consent":
        service.give_consent(token)
        st = service.state(token)
    if st.stage == "profile":
        service.save_profile(token, "bot", float(rng.integers(1, 30)))
        st = service.state(token)
    if st.stage == "instructions":
        service.finish_instructions(token)
    trial = None
    while True:
        if trial is None:
            st, trial = service.view(token, session_key)
            if st.stage in ("main_intro", "break"):
                service.end_break(token)
                continue
            if st.stage == "done" or trial is None or (max_trials is not None and res.answered >= max_trials):
                break
            _ = service.image_bytes(trial.stimulus_id)
            service.confirm_loaded(token, trial.assignment_id, trial.presentation)
        # missing model outputs (a study built without the classifier) are left out, not passed on as NaN
        stim = {k: v for k, v in service.study.stimulus(trial.stimulus_id).items()
                if not (isinstance(v, float) and math.isnan(v))}
        prof = dataclasses.replace(profile, d_prime=4.0) if trial.is_attention_check else profile
        ans = simulate_response(prof, stim, classes, rng)
        if realtime:
            time.sleep(ans["auth_rt_ms"] / 1000.0)
        else:
            time.sleep(wait / 1000.0)
        try:
            service.answer_auth(token, trial.assignment_id, ans["auth_response"], ans["auth_confidence_level"])
        except TooFast:
            time.sleep(wait / 1000.0)
            continue
        if realtime:
            time.sleep(max(wait, ans["class_rt_ms"] - ans["auth_rt_ms"]) / 1000.0)
        else:
            time.sleep(wait / 1000.0)
        if ans["class_response"] != CANNOT_TELL:      # the page's third screen: the cell type, then its confidence
            _patiently(lambda: service.choose_class(token, trial.assignment_id, ans["class_response"]), wait)
            time.sleep(wait / 1000.0)
        t0 = time.perf_counter()
        out = _patiently(lambda: service.answer_class(token, trial.assignment_id, ans["class_response"],
                                                      ans["class_confidence_level"]), wait)
        res.answered += 1
        res.acknowledged.append(out.response_id)
        if on_ack is not None:
            on_ack(res, out.response_id)
        # the next image, as the page would fetch it
        st, trial = service.view(token, session_key)
        if trial is not None:
            _ = service.image_bytes(trial.stimulus_id)
            service.confirm_loaded(token, trial.assignment_id, trial.presentation)
        res.latencies_ms.append((time.perf_counter() - t0) * 1000.0)
    return res


def _patiently(submit: Callable, wait_ms: float, tries: int = 5):
    """Submit; a :class:`TooFast` (the server's clock saw the screen later than the bot did) waits and resubmits."""
    for _ in range(tries - 1):
        try:
            return submit()
        except TooFast:
            time.sleep(wait_ms / 1000.0)
    return submit()


def simulate_raters(service: StudyService, n: int, profile: RaterProfile, seed: int = 0, threads: int = 1,
                    think_ms: float | None = None, realtime: bool = False) -> list[BotResult]:
    """Run ``n`` bots (``threads`` at a time); returns one result per bot."""
    def one(i: int) -> BotResult:
        return run_bot(service, profile, seed=seed * 1000 + i, think_ms=think_ms, realtime=realtime)
    if threads <= 1:
        return [one(i) for i in range(n)]
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, range(n)))


def make_profile(service: StudyService, d_prime: float = 1.0, criterion: float = 0.0,
                 class_accuracy: float | None = 0.8, meta_ratio: float = 0.8, lapse: float = 0.02,
                 cannot_tell_rate: float = 0.0, class_threshold: float | None = None, class_width: float = 0.08
                 ) -> RaterProfile:
    return RaterProfile(d_prime=d_prime, criterion=criterion, class_accuracy=class_accuracy or 0.8,
                        meta_ratio=meta_ratio, confidence_levels=service.K, lapse=lapse,
                        class_threshold=class_threshold, class_width=class_width,
                        cannot_tell_rate=cannot_tell_rate)
