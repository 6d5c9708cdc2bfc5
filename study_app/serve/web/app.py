"""Streamlit entry point (start it with ``cytostudy serve STUDY_DIR``, which also turns Streamlit's error details
off: a participant never sees a traceback).

Two pages: the participant's study at ``/`` and the admin page at ``/admin`` (no navigation is shown)."""
from __future__ import annotations

import streamlit as st

from study_app.serve.web.admin import admin_page
from study_app.serve.web.common import unexpected_error
from study_app.serve.web.participant import participant_page

st.set_page_config(page_title="Blood-cell study", page_icon="🔬", layout="centered",
                   initial_sidebar_state="collapsed")
page = st.navigation([st.Page(participant_page, title="Study", url_path="study", default=True),
                      st.Page(admin_page, title="Admin", url_path="admin")], position="hidden")
try:
    page.run()
except Exception as exc:  # noqa: BLE001 - the last line of defence: a calm message, the details in the log
    unexpected_error(exc)
