"""``cytostudy`` command line (also ``python -m study_app``)."""
from __future__ import annotations

import argparse
import logging
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEMO_CONFIG = Path(__file__).resolve().parent / "demo.toml"


def _say(msg: str) -> None:
    print(f"· {msg}", flush=True)


def _default_model() -> str:
    from cytomodel.model import bundled_model_path
    return str(bundled_model_path())


def cmd_build(args) -> int:
    from .config import load_study_config
    from .stimuli import build_study

    over = {}
    if args.n_per_class is not None:
        over["stimuli.n_per_class"] = args.n_per_class
    if args.morph_strengths is not None:
        over["stimuli.morph_strengths"] = [float(x) for x in args.morph_strengths.split(",") if x.strip()]
    if args.steps is not None:
        over["stimuli.steps"] = args.steps
    if args.seed is not None:
        over["stimuli.seed"] = args.seed
    if args.no_classify:
        over["stimuli.classify"] = False
    if args.crop_fraction is not None:
        over["stimuli.real_crop_fraction"] = args.crop_fraction
    cfg = load_study_config(args.config, over)
    build_study(args.data, args.model or _default_model(), args.out, cfg, overwrite=args.overwrite, progress=True,
                on_step=_say)
    print(f"study built in {args.out}; serve it with: cytostudy serve {args.out}")
    return 0


def _streamlit_cmd(study: Path, port: int, host: str) -> list[str]:
    app = Path(__file__).resolve().parent / "web" / "app.py"
    return [sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(port),
            "--server.address", host, "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--server.fileWatcherType", "none", "--client.toolbarMode", "viewer", "--theme.base", "light",
            "--server.runOnSave", "false"]


def serve(study: str | Path, port: int = 8501, host: str = "localhost", db_url: str | None = None,
          admin_password: str | None = None, extra_env: dict | None = None, wait: bool = True, **popen_kw):
    """Start ``streamlit run`` on the study; returns the Popen (``wait=False``) or its exit code."""
    study = Path(study).resolve()
    env = dict(os.environ, CYTOSTUDY_STUDY_DIR=str(study), PYTHONPATH=str(REPO) + os.pathsep
               + os.environ.get("PYTHONPATH", ""))
    if db_url:
        env["CYTOSTUDY_DB_URL"] = db_url
    if admin_password:
        env["CYTOSTUDY_ADMIN_PASSWORD"] = admin_password
    env.update(extra_env or {})
    proc = subprocess.Popen(_streamlit_cmd(study, port, host), env=env, cwd=str(study), **popen_kw)
    if not wait:
        return proc
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        return proc.wait()


def _check_study(study: Path, db_url: str | None):
    from .session import StudyService
    return StudyService(study, db_url)


def cmd_serve(args) -> int:
    svc = _check_study(Path(args.study), args.db_url)
    pw = args.admin_password or os.environ.get("CYTOSTUDY_ADMIN_PASSWORD")
    base = f"http://{args.host}:{args.port}"
    print(f"study {svc.cfg.id!r}: {len(svc.study.manifest)} stimuli, database {svc.db.dialect}")
    if svc.cfg.code:
        print(f"participants: {base}/?code={svc.cfg.code}   (or personal links: cytostudy invite {args.study})")
    print(f"admin:        {base}/admin" + ("" if pw else "   (disabled: set CYTOSTUDY_ADMIN_PASSWORD)"))
    svc.close()
    return serve(args.study, args.port, args.host, args.db_url, pw)


def cmd_demo(args) -> int:
    from .config import load_study_config
    from .stimuli import STUDY_FILE, build_study

    out = Path(args.out)
    model = args.model or _default_model()
    if not Path(model, "cytomodel.json").is_file():
        print(f"cytostudy demo: no model at {model}; pass --model DIR (a cytomodel folder)", file=sys.stderr)
        return 2
    if args.rebuild and out.exists():
        shutil.rmtree(out)
    if not (out / STUDY_FILE).is_file():
        _say(f"building the demo study in {out} (once; later runs reuse it)")
        cfg = load_study_config(DEMO_CONFIG, {"stimuli.classify": not args.no_classify})
        build_study(args.data, model, out, cfg, overwrite=True, progress=True, on_step=_say)
    else:
        _say(f"using the demo study in {out} (--rebuild to rebuild it)")
    svc = _check_study(out, None)
    inv = svc.create_invites(1, label="demo")[0]
    pw = os.environ.get("CYTOSTUDY_ADMIN_PASSWORD") or secrets.token_urlsafe(9)
    base = f"http://{args.host}:{args.port}"
    print("\n  Demo study ready (SQLite: " + str(Path(out, "study.db")) + ")")
    print(f"  participant (personal link): {inv.url(base)}")
    print(f"  participant (study code):    {base}/?code={svc.cfg.code}")
    print(f"  admin:                       {base}/admin   password: {pw}\n", flush=True)
    svc.close()
    if args.no_serve:
        return 0
    return serve(out, args.port, args.host, None, pw)


def cmd_simulate(args) -> int:
    import time

    import numpy as np

    from .bots import make_profile, simulate_raters
    from .session import StudyService

    svc = StudyService(args.study, args.db_url)
    prof = make_profile(svc, d_prime=args.d_prime, criterion=args.criterion, class_accuracy=args.class_accuracy,
                        meta_ratio=args.meta_ratio, lapse=args.lapse, cannot_tell_rate=args.cannot_tell,
                        class_threshold=args.class_threshold)
    t0 = time.perf_counter()
    res = simulate_raters(svc, args.n, prof, seed=args.seed, threads=args.threads, realtime=args.realtime)
    lat = np.concatenate([r.latencies_ms for r in res]) if res else np.array([])
    print(f"{len(res)} simulated raters answered {sum(r.answered for r in res)} trials in "
          f"{time.perf_counter() - t0:.1f} s; answer -> next image p50 {np.percentile(lat, 50):.1f} ms, "
          f"p95 {np.percentile(lat, 95):.1f} ms")
    return 0


def cmd_export(args) -> int:
    from .export import export_responses, write_export
    from .session import StudyService

    svc = StudyService(args.study, args.db_url)
    df = export_responses(svc, include_practice=not args.main_only)
    paths = write_export(df, args.out)
    print(f"{len(df)} responses from {df['participant_id'].nunique()} participants -> "
          + ", ".join(map(str, paths)))
    return 0


def cmd_invite(args) -> int:
    from .session import StudyService

    svc = StudyService(args.study, args.db_url)
    print("participant_id,number,link")
    for inv in svc.create_invites(args.n, label=args.label):
        print(f"{inv.participant_id},{inv.number},{inv.url(args.base_url)}")
    return 0


def cmd_audit(args) -> int:
    from .audit import leak_audit
    from .design import trial_sequence
    from .stimuli import audit_population, load_study

    st = load_study(args.study)
    m = audit_population(st.manifest.reset_index(drop=True))
    seqs = [[t.stimulus_id for t in trial_sequence(m, st.config, k) if t.phase == "main"] for k in range(24)]
    res = leak_audit(m, st.path, st.config.stimuli.leak_auroc_max, sequences=seqs)
    print(res.summary())
    for n in res.notes:
        print("  " + n)
    return 0 if res.passed else 1


def cmd_status(args) -> int:
    from .session import StudyService

    svc = StudyService(args.study, args.db_url)
    c = svc.counts()
    print(", ".join(f"{k}: {v}" for k, v in c.items()))
    df = svc.participants_table()
    if len(df):
        print(df[["participant_id", "number", "entry", "role", "answered", "trials", "completed_at"]]
              .to_string(index=False))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cytostudy", description="Expert studies of real vs AI-generated blood cells.")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="build a leak-proof stimulus set (real + synthetic + morphs) into a study folder")
    b.add_argument("--data", required=True, help="labelled real images (class folders or manifest CSV)")
    b.add_argument("--model", help="cytomodel folder (default: the bundled data/models/cpu-32)")
    b.add_argument("--out", required=True, help="study folder to create")
    b.add_argument("--config", help="study TOML ([study], [stimuli], [design], [confidence], [text])")
    b.add_argument("--n-per-class", type=int, help="real (and synthetic) main stimuli per class")
    b.add_argument("--morph-strengths", help="comma list of SDEdit strengths, e.g. 0.2,0.4,0.6,0.8")
    b.add_argument("--crop-fraction", type=float, help="centre crop of real images (e.g. 0.6667 for raw PBC)")
    b.add_argument("--steps", type=int, help="DDIM steps")
    b.add_argument("--seed", type=int, help="stimulus seed")
    b.add_argument("--no-classify", action="store_true", help="skip the diffusion classifier (model columns NaN)")
    b.add_argument("--overwrite", action="store_true", help="replace an existing folder (never one with study.db)")
    b.set_defaults(func=cmd_build)

    def study_args(q, db=True):
        q.add_argument("study", help="study folder (built with cytostudy build)")
        if db:
            q.add_argument("--db-url", help="SQLAlchemy URL (default: $CYTOSTUDY_DB_URL or STUDY/study.db)")

    s = sub.add_parser("serve", help="run the study in the browser (streamlit)")
    study_args(s)
    s.add_argument("--port", type=int, default=8501)
    s.add_argument("--host", default="localhost", help="address to listen on (0.0.0.0 for a server)")
    s.add_argument("--admin-password", help="admin password (default: $CYTOSTUDY_ADMIN_PASSWORD)")
    s.set_defaults(func=cmd_serve)

    d = sub.add_parser("demo", help="build (once) and serve a demo study from data/pbc_mini + the bundled model")
    d.add_argument("--data", default=str(REPO / "data" / "pbc_mini"))
    d.add_argument("--model", help="cytomodel folder (default: the bundled data/models/cpu-32)")
    d.add_argument("--out", default="demo_study")
    d.add_argument("--port", type=int, default=8501)
    d.add_argument("--host", default="localhost")
    d.add_argument("--rebuild", action="store_true")
    d.add_argument("--no-classify", action="store_true", help="skip the diffusion classifier (faster build)")
    d.add_argument("--no-serve", action="store_true", help="build and print the links, do not start the server")
    d.set_defaults(func=cmd_demo)

    m = sub.add_parser("simulate", help="simulated raters through the participant code path")
    study_args(m)
    m.add_argument("--n", type=int, default=5, help="number of raters")
    m.add_argument("--d-prime", type=float, default=1.0, help="real vs synthetic sensitivity d'")
    m.add_argument("--criterion", type=float, default=0.0, help="bias (> 0: tends to answer real)")
    m.add_argument("--class-accuracy", type=float, default=0.8, help="P(correct cell type)")
    m.add_argument("--class-threshold", type=float, help="use the model margin as class evidence (threshold)")
    m.add_argument("--meta-ratio", type=float, default=0.8, help="metacognitive efficiency meta-d'/d'")
    m.add_argument("--lapse", type=float, default=0.02)
    m.add_argument("--cannot-tell", type=float, default=0.0, help="P(cannot tell) at the lowest confidence")
    m.add_argument("--threads", type=int, default=1, help="raters at once")
    m.add_argument("--realtime", action="store_true", help="wait the simulated response times")
    m.add_argument("--seed", type=int, default=0)
    m.set_defaults(func=cmd_simulate)

    e = sub.add_parser("export", help="tidy responses (CSV + Parquet)")
    study_args(e)
    e.add_argument("--out", required=True, help="folder, or file name ending .csv/.parquet")
    e.add_argument("--main-only", action="store_true", help="leave out practice trials")
    e.set_defaults(func=cmd_export)

    i = sub.add_parser("invite", help="create personal invite links (printed once as CSV)")
    study_args(i)
    i.add_argument("--n", type=int, default=1)
    i.add_argument("--label", default="")
    i.add_argument("--base-url", default="http://localhost:8501")
    i.set_defaults(func=cmd_invite)

    a = sub.add_parser("audit", help="re-run the leak audit on a built study")
    study_args(a, db=False)
    a.set_defaults(func=cmd_audit)

    t = sub.add_parser("status", help="participants and response counts")
    study_args(t)
    t.set_defaults(func=cmd_status)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    from cytomodel.data import DataError

    from .audit import LeakAuditError
    from .config import StudyConfigError
    from .session import StudyMismatch
    from .stimuli import StudyBuildError
    from .storage import StorageUnavailable
    try:
        return args.func(args) or 0
    except LeakAuditError as exc:
        print(f"cytostudy {args.command}: LEAK AUDIT FAILED: {exc}", file=sys.stderr)
        return 3
    except (StudyConfigError, StudyBuildError, DataError, FileNotFoundError, StudyMismatch, StorageUnavailable,
            ValueError) as exc:
        print(f"cytostudy {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
