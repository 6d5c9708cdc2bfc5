"""Streamlit entry point: ``streamlit run study_app/web/app.py`` (use ``cytostudy serve STUDY_DIR``).

Two pages: the participant's study at ``/`` and the admin page at ``/admin`` (no navigation is shown)."""
from __future__ import annotations

import streamlit as st

from study_app.web.admin import admin_page
from study_app.web.participant import participant_page

st.set_page_config(page_title="Blood-cell study", page_icon="🔬", layout="centered",
                   initial_sidebar_state="collapsed")
page = st.navigation([st.Page(participant_page, title="Study", url_path="study", default=True),
                      st.Page(admin_page, title="Admin", url_path="admin")], position="hidden")
page.run()
