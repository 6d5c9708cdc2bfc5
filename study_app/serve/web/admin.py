"""The admin page (``/admin``): live progress (active, finished and abandoned participants), per-stimulus counts,
tidy export with provenance, invite links, withdrawal.

Protected by a password from ``CYTOSTUDY_ADMIN_PASSWORD`` or ``st.secrets["admin_password"]``; wrong passwords
back off across every browser session (:meth:`~study_app.serve.monitoring.Monitoring.admin_sign_in`); without a
password the page is disabled."""
from __future__ import annotations

import datetime as dt
import os

import pandas as pd
import streamlit as st

from ...export import NoResponses, export_study, export_zip
from ...storage import StorageUnavailable
from ..monitoring import wait_text
from .common import ADMIN_PASSWORD_ENV, PUBLIC_URL_ENV, get_service, storage_error, style


def _password() -> str | None:
    pw = os.environ.get(ADMIN_PASSWORD_ENV)
    if pw:
        return pw
    try:
        return st.secrets.get("admin_password")  # type: ignore[no-any-return]
    except Exception:  # no secrets file
        return None


def _base_url() -> str:
    env = os.environ.get(PUBLIC_URL_ENV)
    if env:
        return env.rstrip("/")
    try:
        url = st.context.url or ""
        return url.split("/admin")[0].rstrip("/") or "http://localhost:8501"
    except Exception:
        return "http://localhost:8501"


def _login(svc) -> bool:
    if st.session_state.get("admin_ok"):
        return True
    expected = _password()
    st.title("Study admin")
    if not expected:
        st.error(f"The admin page is disabled: set the environment variable {ADMIN_PASSWORD_ENV} "
                 "(or `admin_password` in .streamlit/secrets.toml) and restart.")
        return False
    with st.form("admin-login"):
        pw = st.text_input("Admin password", type="password")
        ok = st.form_submit_button("Sign in", type="primary")
    if ok:
        res = svc.admin_sign_in(pw, expected)
        if res.ok:
            st.session_state["admin_ok"] = True
            st.rerun()
        if not res.checked:
            st.error(f"Too many wrong passwords: wait {wait_text(res.wait_s)} before the next attempt.")
        else:
            st.error("Wrong password." + (f" The next attempt is possible in {wait_text(res.wait_s)}."
                                          if res.wait_s > 0 else ""))
    return False


@st.fragment(run_every="10s")
def _live(svc) -> None:
    c = svc.counts()
    cols = st.columns(6)
    cols[0].metric("Participants", c["participants"])
    cols[1].metric("Consented", c["started"])
    cols[2].metric("Completed", c["completed"])
    cols[3].metric("Responses", c["responses"])
    cols[4].metric("Active", c["active"])
    cols[5].metric("Abandoned", c["abandoned"], help=f"started, unfinished and idle for "
                   f"{svc.cfg.design.abandon_after_minutes:g} min: their counterbalancing slot goes to the next "
                   "person who joins (they can still come back)")
    last = c["last_response_at"]
    st.caption(f"Last answer {last.strftime('%H:%M:%S UTC') if last else '—'} · live: refreshed every 10 s (last "
               f"{dt.datetime.now(dt.timezone.utc):%H:%M:%S} UTC).")


def admin_page() -> None:
    style()
    try:
        svc = get_service()
    except StorageUnavailable:
        storage_error("starting")
        return
    if not _login(svc):
        return
    meta = svc.study.meta
    st.title(f"Admin · {svc.cfg.title}")
    st.caption(f"study `{svc.cfg.id}` · config `{meta['config_hash'][:12]}` · content `{meta['content_hash'][:12]}` · "
               f"database `{svc.db.dialect}` · leak audit max AUROC "
               f"{max(meta['leak_audit']['auroc'].values()):.3f} ({'pass' if meta['leak_audit']['passed'] else 'FAIL'})")
    try:
        _live(svc)
        tabs = st.tabs(["Participants", "Stimuli", "Invite links", "Export", "Withdraw"])
        with tabs[0]:
            df = svc.participants_table()
            if len(df):
                df["progress"] = df["answered"] / df["trials"].where(df["trials"] > 0, 1)
            st.dataframe(df, hide_index=True, width="stretch", column_config={
                "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0)})
        with tabs[1]:
            stim = svc.stimulus_table()
            st.dataframe(stim, hide_index=True, width="stretch", column_config={
                "said_real": st.column_config.NumberColumn("said real", format="%.2f")})
            st.caption("Main-phase ratings per stimulus (attention checks and practice excluded).")
        with tabs[2]:
            _invites(svc)
        with tabs[3]:
            _export(svc)
        with tabs[4]:
            _withdraw(svc)
    except StorageUnavailable:
        storage_error()
        st.button("Try again", key="admin-retry")


def _invites(svc) -> None:
    st.markdown("Each link is personal: it opens that participant's own session and resumes it. Links are shown "
                "**once** (only a hash is stored); download them now.")
    with st.form("invites"):
        n = st.number_input("Number of links", min_value=1, max_value=500, value=5, step=1)
        label = st.text_input("Label (optional, e.g. a site or cohort; no names or e-mails)")
        base = st.text_input("Public address of the study", value=_base_url())
        go = st.form_submit_button("Create links", type="primary")
    if go:
        inv = svc.create_invites(int(n), label=label)
        st.session_state["new_invites"] = pd.DataFrame(
            {"participant_id": [i.participant_id for i in inv], "number": [i.number for i in inv],
             "label": label, "link": [i.url(base) for i in inv]})
    df = st.session_state.get("new_invites")
    if df is not None:
        st.dataframe(df, hide_index=True, width="stretch",
                     column_config={"link": st.column_config.LinkColumn("link")})
        st.download_button("Download links (CSV)", df.to_csv(index=False).encode(), "invite-links.csv", "text/csv")
    if svc.cfg.code:
        st.info(f"Open entry: {_base_url()}/?code={svc.cfg.code} (anyone with the code can join).")


def _export(svc) -> None:
    st.markdown("Two tables keyed by `stimulus_id`, in the columns of `docs/tidy-responses.md` (checked together "
                "with `cytocore.validation.validate_responses`): **responses**, one row per answer, and **stimuli**, "
                "one row per stimulus of the study with the model's judgements — each as CSV and Parquet, with the "
                "provenance, in one zip.")
    practice = st.checkbox("include practice trials (phase = practice)", value=True)
    if st.button("Prepare export", type="primary"):
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        try:
            df, paths = export_study(svc, svc.study.path / "exports" / f"responses-{stamp}.csv",
                                     include_practice=practice)
        except NoResponses as exc:
            st.info(str(exc))
            return
        st.session_state["export"] = (df, export_zip(paths), f"export-{stamp}.zip", [str(p) for p in paths])
    ex = st.session_state.get("export")
    if ex is not None:
        df, zipped, name, paths = ex
        st.write(f"{len(df)} rows, {df['participant_id'].nunique() if len(df) else 0} participants"
                 + (f"; also saved to {', '.join(paths)}" if paths else ""))
        st.download_button("Download export (zip: responses + stimuli)", zipped, name, "application/zip")
        st.dataframe(df.head(50), hide_index=True, width="stretch")


def _withdraw(svc) -> None:
    st.markdown("Withdrawing **deletes** the participant, their trial sequence and every answer. "
                "This cannot be undone (exports already downloaded are not affected).")
    df = svc.participants_table()
    if not len(df):
        st.write("No participants yet.")
        return
    pid = st.selectbox("Participant", df["participant_id"], index=None, placeholder="choose a participant id")
    confirm = st.text_input("Type the participant id again to confirm")
    if st.button("Withdraw and delete", type="primary", disabled=not pid or confirm.strip() != pid):
        n = svc.withdraw(pid)
        st.success(f"Participant {pid} withdrawn: {n} responses deleted.")
