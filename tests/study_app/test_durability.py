"""Durability: a process answering trials is SIGKILLed mid-study; every answer it had acknowledged is in the
database, and a restarted process continues the same participant at the next unanswered trial (SQLite and
PostgreSQL). The browser-level version (streamlit killed under a live page) is in test_browser.py."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

from sqlalchemy import func, select

from study_app.serve.session import StudyService
from study_app.storage import Response

CHILD = r"""
import sys
from study_app.bots import make_profile, run_bot
from study_app.serve.session import StudyService
svc = StudyService(sys.argv[1], sys.argv[2])
prof = make_profile(svc, d_prime=1.0)
run_bot(svc, prof, seed=int(sys.argv[4]), token=sys.argv[3], think_ms=35,
        on_ack=lambda res, rid: print(f"ACK {rid}", flush=True))
print("DONE", flush=True)
"""


def child(study, url, token, seed):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-c", CHILD, str(study), url, token, str(seed)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_sigkill_mid_study_loses_no_acknowledged_answer(built_study, db_url):
    svc = StudyService(built_study, db_url)
    tok = svc.create_invites(1)[0].token
    p = child(built_study, db_url, tok, 1)
    acked = []
    for line in p.stdout:
        if line.startswith("ACK"):
            acked.append(int(line.split()[1]))
        if len(acked) == 5:
            time.sleep(random.uniform(0, 0.05))         # somewhere inside the next trial
            os.kill(p.pid, signal.SIGKILL)
            break
    p.wait(60)
    assert p.returncode == -signal.SIGKILL, p.stderr.read()
    stored = set(svc.db.read(lambda s: s.scalars(select(Response.id)).all()))
    assert set(acked) <= stored                          # every acknowledged answer survived
    assert len(stored) in (5, 6)                         # plus at most the one in flight, committed or not
    st = svc.state(tok)
    assert st.practice_done + st.main_done == len(stored)
    total = st.n_practice + st.n_main                    # (the trials exist from consent on)
    assert total > 6
    # restart: the same participant continues where the database says, to the end, without duplicates
    p2 = child(built_study, db_url, tok, 2)
    out, err = p2.communicate(timeout=300)
    assert p2.returncode == 0 and out.strip().endswith("DONE"), err[-2000:]
    n, distinct = svc.db.read(lambda s: (s.scalar(select(func.count(Response.id))),
                                         s.scalar(select(func.count(func.distinct(Response.assignment_id))))))
    assert n == distinct == total
    assert svc.state(tok).stage == "done"
    svc.close()


def test_sigterm_to_cytostudy_serve_stops_the_whole_server(built_study, tmp_path):
    """``cytostudy serve`` runs Streamlit as a child; SIGTERM to the command must not leave it serving the port."""
    import urllib.request

    from conftest_helpers import free_port, healthy
    port = free_port()
    env = dict(os.environ, CYTOSTUDY_DB_URL=f"sqlite:///{tmp_path / 'serve.db'}", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "study_app", "serve", str(built_study), "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://localhost:{port}"
    t0 = time.monotonic()
    while not healthy(base):
        assert proc.poll() is None and time.monotonic() - t0 < 180, proc.stdout.read() if proc.poll() else "slow"
        time.sleep(0.3)
    children = [int(p) for p in os.popen(f"pgrep -P {proc.pid}").read().split()]
    assert children, "the server runs as a child process"
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    t0 = time.monotonic()
    while any(os.path.exists(f"/proc/{c}") for c in children) and time.monotonic() - t0 < 20:
        time.sleep(0.2)
    assert not any(os.path.exists(f"/proc/{c}") for c in children), "the Streamlit child survived SIGTERM"
    try:
        urllib.request.urlopen(f"{base}/_stcore/health", timeout=2)
        served = True
    except OSError:
        served = False
    assert not served
