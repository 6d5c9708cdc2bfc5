"""Stimuli go to the browser under random names that change with every presentation.

Streamlit's ``st.image`` serves bytes under a hash of their content, so anyone holding the public images could
compute, before an image loads, which served images are real. Here every presentation registers the file with
Streamlit's media manager under a fresh random name, which enters the media id: the URL says nothing about the
image. (The pixels themselves can still be matched against a public dataset by anyone who has it: a real study
should use unpublished real images; see docs/study_app.md.)"""
from __future__ import annotations

import secrets

MIMETYPE = "image/png"


def served_name() -> str:
    """A fresh random file name for one presentation of a stimulus."""
    return secrets.token_hex(12) + ".png"


def stimulus_url(data: bytes, name: str, coordinates: str = "cytostudy.stimulus") -> str:
    """The URL Streamlit serves ``data`` under for this page run: random through ``name`` (keep the same name
    across reruns of one presentation, or the image reloads)."""
    from streamlit import runtime

    if not runtime.exists():
        return ""
    return runtime.get_instance().media_file_mgr.add(data, MIMETYPE, coordinates, file_name=name)
