"""Shared pieces of the Streamlit pages: the per-process StudyService, styling, error boxes."""
from __future__ import annotations

import os

import streamlit as st

from ..session import StudyService

STUDY_DIR_ENV = "CYTOSTUDY_STUDY_DIR"
ADMIN_PASSWORD_ENV = "CYTOSTUDY_ADMIN_PASSWORD"
PUBLIC_URL_ENV = "CYTOSTUDY_PUBLIC_URL"


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
#MainMenu, footer, [data-testid="stToolbar"], [data-testid="stDecoration"] {visibility: hidden; height: 0;}
header[data-testid="stHeader"] {background: transparent; height: 0;}
.block-container {padding-top: 1.6rem; padding-bottom: 2rem; max-width: 860px;}
[data-testid="stImage"] img {border-radius: 6px; box-shadow: 0 1px 6px rgba(0,0,0,.18); image-rendering: auto;}
.st-key-stimulus {align-items: center;}
.st-key-stimulus [data-testid="stImage"], .st-key-stimulus [data-testid="stImageContainer"] {margin: 0 auto;}
.cyto-q {font-size: 1.05rem; font-weight: 600; margin: .2rem 0 .1rem 0;}
.cyto-hint {color: #666; font-size: .85rem; margin-bottom: .3rem;}
.cyto-side {font-weight: 600; font-size: .9rem; text-align: center; padding: .1rem 0; border-radius: 4px;}
.cyto-ai {color: #8a3b12; background: #fbeee6;}
.cyto-real {color: #16507a; background: #e7f1f9;}
.cyto-chip {display: inline-block; padding: .15rem .6rem; border-radius: 999px; background: #eef2f6;
            font-size: .9rem; margin-bottom: .4rem;}
.cyto-progress {color: #555; font-size: .85rem; margin-bottom: .2rem;}
div[data-testid="stButton"] button p {font-size: .92rem;}
</style>
"""


def style() -> None:
    st.markdown(CSS, unsafe_allow_html=True)


def storage_error(where: str = "") -> None:
    st.warning("**We could not reach the study database just now.** Everything you answered before is saved. "
               "Please wait a moment and press *Try again*" + (f" ({where})" if where else "") + ".", icon="⏳")
