"""Plain helpers shared by the study-app tests (importable as a module, unlike conftest)."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def chromium_path() -> str | None:
    for cand in ("/usr/bin/chromium", "/usr/bin/chromium-browser", shutil.which("chromium") or ""):
        if cand and Path(cand).exists():
            return cand
    return None


def pg_bindir() -> Path | None:
    import glob
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_start(bindir: Path, max_connections: int = 200) -> dict:
    """initdb + pg_ctl start in a new temp dir on a free localhost port (as the postgres user when root)."""
    import os
    import pwd
    import subprocess
    import tempfile
    root = Path(tempfile.mkdtemp(prefix="cytostudy-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        pg = pwd.getpwnam("postgres")
        os.chown(root, pg.pw_uid, pg.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    data, log = root / "data", root / "server.log"
    port = free_port()
    subprocess.run(prefix + [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                             "--no-instructions"], check=True, capture_output=True)
    subprocess.run(prefix + [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o",
                             f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections={max_connections}",
                             "start"], check=True, capture_output=True)
    return {"port": port, "url": f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", "root": root,
            "data": data, "prefix": prefix, "bindir": bindir}


def pg_stop(server: dict) -> None:
    import subprocess
    subprocess.run(server["prefix"] + [str(server["bindir"] / "pg_ctl"), "-D", str(server["data"]), "-m", "immediate",
                                       "stop"], capture_output=True)
    shutil.rmtree(server["root"], ignore_errors=True)


def new_pg_database(server: dict) -> str:
    import uuid

    import psycopg
    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(f"host=127.0.0.1 port={server['port']} user=postgres dbname=postgres",
                         autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"postgresql+psycopg://postgres@127.0.0.1:{server['port']}/{name}"


# --------------------------------------------------------------------------------------------- a real server
def healthy(base: str) -> bool:
    import urllib.request
    try:
        with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


class StreamlitServer:
    """``cytostudy serve`` as a subprocess (the same command users run), on a free port."""

    def __init__(self, study: Path, db_url: str, log: Path, port: int | None = None, password: str = "pw"):
        self.study, self.db_url, self.log, self.password = study, db_url, log, password
        self.port = port or free_port()
        self.base = f"http://localhost:{self.port}"
        self.proc = None

    def start(self, timeout: float = 180.0) -> "StreamlitServer":
        import time
        from study_app.serve.server import serve
        self._fh = open(self.log, "ab")
        self.proc = serve(self.study, port=self.port, host="localhost", db_url=self.db_url,
                          admin_password=self.password, wait=False,
                          extra_env={"OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}, stdout=self._fh, stderr=self._fh)
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"streamlit exited ({self.proc.returncode}); see {self.log}:\n"
                                   + self.log.read_text()[-2000:])
            if healthy(self.base):
                return self
            time.sleep(0.3)
        raise RuntimeError(f"streamlit did not become healthy in {timeout:.0f} s; see {self.log}")

    def kill(self) -> None:
        """SIGKILL: no shutdown handlers, no flushing: what a crash or an OOM kill does."""
        import signal
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        from study_app.serve.server import stop_group
        if self.proc and self.proc.poll() is None:
            stop_group(self.proc, timeout=20)
        if getattr(self, "_fh", None):
            self._fh.close()
