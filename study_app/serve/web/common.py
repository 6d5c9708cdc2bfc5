"""Shared pieces of the Streamlit pages: the per-process StudyService, styling, calm error boxes."""
from __future__ import annotations

import logging
import os

import streamlit as st

from ..session import StudyService

STUDY_DIR_ENV = "CYTOSTUDY_STUDY_DIR"
ADMIN_PASSWORD_ENV = "CYTOSTUDY_ADMIN_PASSWORD"
PUBLIC_URL_ENV = "CYTOSTUDY_PUBLIC_URL"
log = logging.getLogger("cytostudy.web")


@st.cache_resource(show_spinner=False)
def _service(study_dir: str, db_url: str | None) -> StudyService:
    return StudyService(study_dir, db_url)


def get_service() -> StudyService:
    study_dir = os.environ.get(STUDY_DIR_ENV)
    if not study_dir:
        st.error(f"No study configured: start the app with `cytostudy serve STUDY_DIR` (or set {STUDY_DIR_ENV}).")
        st.stop()
    return _service(study_dir, os.environ.get("CYTOSTUDY_DB_URL") or None)


CSS = """
<style>
#MainMenu, footer, [data-testid="stToolbar"], [data-testid="stDecoration"], [data-testid="stStatusWidget"]
  {visibility: hidden; height: 0;}
header[data-testid="stHeader"] {background: transparent; height: 0;}
.block-container {padding-top: 1.6rem; padding-bottom: 2rem; max-width: 1040px;}
[data-testid="stImage"] img, img.cyto-stim {border-radius: 6px; box-shadow: 0 1px 6px rgba(0,0,0,.18);}
.cyto-stim-wrap {display: flex; flex-direction: column; align-items: center; margin: .2rem 0 .6rem 0;}
img.cyto-stim {width: var(--cyto-w); max-width: 100%; height: auto; aspect-ratio: 1 / 1; background: #f3f3f3;}
.cyto-stim-error {text-align: center; padding: 2rem 1rem; border: 1px dashed #aaa; border-radius: 6px;}
.cyto-stim-error button {font-size: 1rem; padding: .4rem 1rem; border-radius: .5rem; border: 1px solid #888;
  background: #fff; cursor: pointer;}
.cyto-q {font-size: 1.05rem; font-weight: 600; margin: .2rem 0 .1rem 0;}
.cyto-hint {color: #555; font-size: .85rem; margin-bottom: .3rem;}
.cyto-side {font-weight: 600; font-size: .9rem; text-align: center; padding: .1rem 0; border-radius: 4px;
  margin-bottom: .35rem;
  color: #333; background: #eef1f4;}
.cyto-chip {display: inline-block; padding: .15rem .6rem; border-radius: 999px; background: #eef2f6;
  font-size: .9rem; margin-bottom: .4rem;}
.cyto-progress {color: #555; font-size: .85rem; margin-bottom: .2rem;}
div[data-testid="stButton"] button {height: auto; min-height: 2.6rem; padding: .3rem .4rem;}
div[data-testid="stButton"] button p {font-size: .92rem; white-space: normal; overflow-wrap: anywhere;
  line-height: 1.2;}
.cyto-notice {margin: 0 0 .5rem 0; padding: .55rem .8rem; border-radius: .5rem; background: #fff4e5;
  border: 1px solid #f0b35a; color: #4a3000; font-size: .95rem;}
div[data-testid="stButton"] button code {font-size: .78rem; padding: 0 .3rem; margin-right: .15rem; color: #444;
  background: #f3f3f3; border: 1px solid #bbb; border-radius: 3px;}
#cyto-outage {position: fixed; inset: 0; background: rgba(255,255,255,.82); z-index: 1000000; display: flex;
  align-items: center; justify-content: center;}
.cyto-outage-card {max-width: 28rem; padding: 1.2rem 1.4rem; border-radius: 10px; background: #fff;
  box-shadow: 0 2px 14px rgba(0,0,0,.2); font-size: 1rem; line-height: 1.45; color: #222;}
div[data-testid="stButton"] button {touch-action: manipulation;}
/* touch screens: no key hints, and no hover or focus look that would stay on the option under the finger
   (the light theme's plain secondary button; test_browser checks a hovered, focused one looks the same) */
@media (hover: none) and (pointer: coarse) {
  div[data-testid="stButton"] button code, .cyto-keys {display: none;}
  div[data-testid="stButton"] button[kind="secondary"]:hover, div[data-testid="stButton"] button[kind="secondary"]:focus,
  div[data-testid="stButton"] button[kind="secondary"]:focus-visible {border-color: rgb(220, 216, 212);
    color: rgb(47, 45, 43); background-color: rgb(255, 255, 255); box-shadow: none; outline: none;}
}
/* a phone: the two sides of the real / AI scale side by side (each side a column, most sure on top), the
   option grids keep their rows, less space between elements */
@media (max-width: 640px) {
  .block-container {padding-top: .8rem; padding-left: .7rem; padding-right: .7rem;}
  [data-testid="stVerticalBlock"] {gap: .45rem;}
  [class*="st-key-scale-"] [data-testid="stHorizontalBlock"], [class*="st-key-grid-"] [data-testid="stHorizontalBlock"]
    {flex-wrap: nowrap; gap: .35rem;}
  [class*="st-key-scale-"] [data-testid="stColumn"], [class*="st-key-grid-"] [data-testid="stColumn"]
    {min-width: 0 !important; width: auto !important; flex: 1 1 0 !important;}
  [class*="st-key-side-"] [data-testid="stHorizontalBlock"] {flex-direction: column; gap: .3rem;}
  [class*="st-key-side-real-"] [data-testid="stHorizontalBlock"] {flex-direction: column-reverse;}
  div[data-testid="stButton"] button {min-height: 2.3rem;}
  div[data-testid="stButton"] button p {font-size: .88rem;}
  .cyto-q {font-size: 1rem; margin-bottom: .3rem;}
  img.cyto-stim {width: min(var(--cyto-w), 100%, 44vh);}
}
</style>
"""


def style() -> None:
    st.markdown(CSS, unsafe_allow_html=True)


def storage_error(where: str = "") -> None:
    st.warning("**We could not reach the study database just now.** Everything you answered before is saved. "
               "Please wait a moment and press *Try again*" + (f" ({where})" if where else "") + ".", icon="⏳")


def unexpected_error(exc: BaseException) -> None:
    """Never a traceback for a participant: log it for the study team, say something calm."""
    log.exception("unexpected error on a study page", exc_info=exc)
    st.warning("**Something went wrong on our side.** Everything you answered before is saved. Please reload the "
               "page; if this keeps happening, contact the study team.", icon="⚠️")
