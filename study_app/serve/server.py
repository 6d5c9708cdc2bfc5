"""The study server process: ``streamlit run`` on the app, in a process group of its own that the parent stops as
a whole on SIGTERM, SIGINT or SIGHUP (and that dies with the parent on Linux)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

APP = Path(__file__).resolve().parent / "web" / "app.py"
REPO = Path(__file__).resolve().parents[2]


def streamlit_command(port: int, host: str) -> list[str]:
    """``streamlit run`` with the settings a study needs: headless, no file watcher or telemetry, the developer
    toolbar and error details off (participants never see a traceback)."""
    return [sys.executable, "-m", "streamlit", "run", str(APP), "--server.port", str(port), "--server.address", host,
            "--server.headless", "true", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
            "--client.toolbarMode", "viewer", "--client.showErrorDetails", "none", "--theme.base", "light",
            "--server.runOnSave", "false"]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    os.setsid()
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def stop_group(proc: subprocess.Popen, timeout: float = 10.0) -> int:
    """SIGTERM to the server's whole process group, SIGKILL after ``timeout``; returns the exit code."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.wait()


def serve(study: str | Path, port: int = 8501, host: str = "localhost", db_url: str | None = None,
          admin_password: str | None = None, extra_env: dict | None = None, wait: bool = True, **popen_kw):
    """Start the study server; returns the Popen (``wait=False``) or, after it ends, its exit code. With
    ``wait``, SIGTERM / SIGINT / SIGHUP to this process stop the server's whole process group."""
    study = Path(study).resolve()
    env = dict(os.environ, CYTOSTUDY_STUDY_DIR=str(study),
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if db_url:
        env["CYTOSTUDY_DB_URL"] = db_url
    if admin_password:
        env["CYTOSTUDY_ADMIN_PASSWORD"] = admin_password
    env.update(extra_env or {})
    proc = subprocess.Popen(streamlit_command(port, host), env=env, cwd=str(study), preexec_fn=_die_with_parent,
                            **popen_kw)
    if not wait:
        return proc

    def forward(signum, _frame):
        stop_group(proc)
        sys.exit(128 + signum)
    old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        return proc.wait()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        stop_group(proc)
