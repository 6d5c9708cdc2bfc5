"""The study server process: ``streamlit run`` on the app, in a process group of its own that the parent stops as
a whole on SIGTERM, SIGINT or SIGHUP (and that dies with the parent on Linux)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

APP = Path(__file__).resolve().parent / "web" / "app.py"
REPO = Path(__file__).resolve().parents[2]
STOP_TIMEOUT_S = 10.0


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


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_group(proc: subprocess.Popen, timeout: float = STOP_TIMEOUT_S) -> int:
    """SIGTERM to the server's whole process group, SIGKILL after ``timeout``; returns the exit code."""
    if proc.poll() is None:
        _signal_group(proc, signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
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

    stopping: list[tuple[int, float]] = []

    def forward(signum, _frame):  # no waiting in here: the main loop below owns proc.wait()
        if not stopping:
            stopping.append((signum, time.monotonic()))
            _signal_group(proc, signal.SIGTERM)
    old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        while True:
            try:
                rc = proc.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                if stopping and time.monotonic() - stopping[0][1] > STOP_TIMEOUT_S:
                    _signal_group(proc, signal.SIGKILL)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        _signal_group(proc, signal.SIGTERM)   # whatever the group still holds
    return 128 + stopping[0][0] if stopping else rc
