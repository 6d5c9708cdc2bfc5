"""Concurrency benchmark of the study app's storage and session path: J simultaneous joins, then N simulated
raters at once (the one benchmark of the study server; docs/study_app.md and the README quote its figures).

Each rater is a bot (study_app.bots.run_bot) that takes a whole study (practice + main trials) through the
participant's code path (StudyService: view -> confirm_loaded -> answer_auth -> choose_class -> answer_class: the
page's three screens), in its own thread, all at the same time, against SQLite (WAL file) and against PostgreSQL
(a throwaway server started here).

Reported per backend:
  * joins: J people agree to the consent of the study-code page at the same moment (a barrier releases J threads;
    each join creates a consented participant with its slot and trials):
    how many got a participant number (target: all; numbers 0..J-1, none twice), and the join latency;
  * answers lost: answers the server acknowledged (answer_class returned) that are not in the database afterwards
    (target 0), and duplicate rows (must be 0; the database enforces it);
  * answer -> next image latency: from submitting the answer to having the next trial's image bytes in hand
    (the work the server does between a click and the next image; Streamlit's rerun and the network come on top),
    p50 / p95 / max (target p95 <= 300 ms).

Usage:
  python benchmarks/study_concurrency.py [--study DIR] [--joins 100] [--raters 20] [--think-ms 300]
                                         [--backends sqlite,postgresql]
Needs only the study extra (+ psycopg for PostgreSQL, skipped without it or without the server binaries).
Without --study a small study is built in a temp dir from a tiny generated dataset and a 30-step tiny model.
Run it niced on a shared machine: ``nice -n 15 python benchmarks/study_concurrency.py``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "study_app"))   # conftest_helpers: the throwaway PostgreSQL (no pytest)


def tiny_study(root: Path) -> Path:
    from cytomodel.data import load_dataset
    from cytomodel.testing import make_dataset
    from cytomodel.train import load_config, train
    from study_app.config import load_study_config
    from study_app.build import build_study

    data = make_dataset(root / "data", n_per_class=20)
    cfg = load_config("tiny-16", overrides={"max_steps": 30, "sample_every": 10_000})
    train(cfg, load_dataset(data, cfg.resolution), root / "run", progress=False)
    study_cfg = load_study_config(None, {
        "id": "bench", "stimuli.n_per_class": 4, "stimuli.morph_strengths": [0.5], "stimuli.steps": 4,
        "stimuli.classify": False, "stimuli.display_px": 384, "design.block_size": 12,
        "design.practice_trials": 4, "design.attention_checks": 2})
    return build_study(data, root / "run" / "model", root / "study", study_cfg)


def run_joins(study: Path, url: str, n: int) -> dict:
    """``n`` simultaneous joins by study code."""
    from study_app.serve.session import StudyService

    svc = StudyService(study, url)
    code = svc.cfg.code or "BENCH"
    svc.cfg.code = code
    barrier, got, errors, lat = threading.Barrier(n), [], [], []

    def one():
        barrier.wait()
        t0 = time.perf_counter()
        try:
            got.append(svc.join_with_code(code).number)
            lat.append((time.perf_counter() - t0) * 1000)
        except Exception as exc:  # noqa: BLE001 - reported
            errors.append(f"{type(exc).__name__}: {exc}")
    threads = [threading.Thread(target=one) for _ in range(n)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    svc.close()
    a = np.asarray(lat) if lat else np.array([np.nan])
    return {"joins": n, "joined": len(got), "distinct_numbers": len(set(got)), "errors": errors[:3],
            "wall_s": round(wall, 1), "join_ms": {"p50": round(float(np.percentile(a, 50)), 1),
                                                  "p95": round(float(np.percentile(a, 95)), 1),
                                                  "max": round(float(np.max(a)), 1)}}


def run_backend(study: Path, url: str, n: int, think_ms: float, seed: int = 0) -> dict:
    from sqlalchemy import func, select

    from study_app.bots import make_profile, run_bot
    from study_app.serve.session import StudyService
    from study_app.storage import Response

    svc = StudyService(study, url)
    prof = make_profile(svc, d_prime=1.0)
    results, errors = [None] * n, []
    barrier = threading.Barrier(n)

    def one(i):
        try:
            barrier.wait()
            results[i] = run_bot(svc, prof, seed=seed * 1000 + i, think_ms=think_ms)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(f"{type(exc).__name__}: {exc}")

    t0, c0 = time.perf_counter(), time.process_time()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    done = [r for r in results if r is not None]
    acked = {rid for r in done for rid in r.acknowledged}
    stored = set(svc.db.read(lambda s: s.scalars(select(Response.id)).all()))
    per_assignment = svc.db.read(lambda s: s.execute(
        select(Response.assignment_id, func.count(Response.id)).group_by(Response.assignment_id)
        .having(func.count(Response.id) > 1)).all())
    lat = np.concatenate([r.latencies_ms for r in done]) if done else np.array([np.nan])
    svc.close()
    return {
        "raters": n, "raters_finished": len(done), "errors": errors[:5], "answers_acknowledged": len(acked),
        "answers_lost": len(acked - stored), "duplicate_rows": len(per_assignment),
        "answers_per_rater": sorted({r.answered for r in done}), "wall_s": round(wall, 1),
        "answers_per_s": round(len(acked) / wall, 1),
        "cpu_s": round(cpu, 1), "cpu_ms_per_answer": round(1000 * cpu / max(1, len(acked)), 1),
        "cpu_share_of_one_core": round(cpu / wall, 2),
        "latency_ms": {"p50": round(float(np.percentile(lat, 50)), 1), "p95": round(float(np.percentile(lat, 95)), 1),
                       "max": round(float(np.max(lat)), 1), "n": int(lat.size)},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", help="a built study folder (default: build a small one in a temp dir)")
    ap.add_argument("--joins", type=int, default=100, help="simultaneous joins by study code")
    ap.add_argument("--raters", type=int, default=20)
    ap.add_argument("--think-ms", type=float, default=300.0,
                    help="time each bot looks at an image before answering (people take seconds)")
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    tmp = Path(tempfile.mkdtemp(prefix="study-bench-"))
    study = Path(args.study) if args.study else tiny_study(tmp)
    out = {"study": str(study), "think_ms": args.think_ms, "cpus": os.cpu_count(), "joins": args.joins,
           "load_avg_at_start": os.getloadavg()[0]}
    for backend in args.backends.split(","):
        if backend == "sqlite":
            out["sqlite"] = run_backend(study, f"sqlite:///{tmp / 'bench.db'}", args.raters, args.think_ms)
            out["sqlite"]["join"] = run_joins(study, f"sqlite:///{tmp / 'joins.db'}", args.joins)
        elif backend == "postgresql":
            from conftest_helpers import new_pg_database, pg_bindir, pg_start, pg_stop
            bindir = pg_bindir()
            try:
                import psycopg  # noqa: F401
            except ImportError:
                bindir = None
            if bindir is None:
                out["postgresql"] = "skipped: PostgreSQL server binaries or psycopg not found"
                continue
            server = pg_start(bindir)
            try:
                out["postgresql"] = run_backend(study, new_pg_database(server), args.raters, args.think_ms)
                out["postgresql"]["join"] = run_joins(study, new_pg_database(server), args.joins)
            finally:
                pg_stop(server)
        print(f"{backend}: {json.dumps(out[backend])}", flush=True)
    out["load_avg_at_end"] = os.getloadavg()[0]
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    ok = all(isinstance(out.get(b), dict) and out[b]["answers_lost"] == 0 and out[b]["duplicate_rows"] == 0
             and out[b]["raters_finished"] == out[b]["raters"]
             and out[b]["join"]["joined"] == out[b]["join"]["distinct_numbers"] == args.joins
             for b in args.backends.split(",") if isinstance(out.get(b), dict))
    for b in args.backends.split(","):
        r = out.get(b)
        if isinstance(r, dict):
            print(f"{b:10s} raters {r['raters_finished']}/{r['raters']}  answers {r['answers_acknowledged']}  "
                  f"lost {r['answers_lost']}  duplicates {r['duplicate_rows']}  answer->next image "
                  f"p50 {r['latency_ms']['p50']} ms  p95 {r['latency_ms']['p95']} ms  max {r['latency_ms']['max']} ms  "
                  f"({r['answers_per_s']} answers/s; {r['cpu_ms_per_answer']} ms CPU per answer, this process got "
                  f"{r['cpu_share_of_one_core']:.0%} of a core)")
            j = r["join"]
            print(f"{b:10s} {j['joins']} simultaneous joins: {j['joined']} joined, {j['distinct_numbers']} distinct "
                  f"numbers, join p50 {j['join_ms']['p50']} ms p95 {j['join_ms']['p95']} ms ({j['wall_s']} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
