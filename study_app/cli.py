"""``cytostudy`` command line (also ``python -m study_app``): argument parsing only; every command calls library
functions, whose errors speak of arguments and fields and are printed here without a traceback."""
from __future__ import annotations

import argparse
import logging
import os
import secrets
import sys
from pathlib import Path

from .demo import DEMO_DATA, DEMO_MODEL, analysis_hint, ensure_demo_study


def _say(msg: str) -> None:
    print(f"· {msg}", flush=True)


def cmd_build(args) -> int:
    from .build import build_study
    from .config import load_study_config

    over = {k: v for k, v in {
        "stimuli.n_per_class": args.n_per_class, "stimuli.steps": args.steps, "stimuli.seed": args.seed,
        "stimuli.real_crop_fraction": args.crop_fraction, "stimuli.superres_steps": args.superres_steps,
        "stimuli.morph_strengths": None if args.morph_strengths is None else
        [float(x) for x in args.morph_strengths.split(",") if x.strip()],
        "stimuli.classify": False if args.no_classify else None}.items() if v is not None}
    cfg = load_study_config(args.config, over)
    build_study(args.data, args.model or DEMO_MODEL, args.out, cfg, overwrite=args.overwrite, progress=True,
                on_step=_say, device=args.device, db_url=args.db_url)
    print(f"study built in {args.out}; serve it with: cytostudy serve {args.out}")
    return 0


def cmd_serve(args) -> int:
    from .serve.server import serve
    from .serve.session import StudyService

    svc = StudyService(Path(args.study), args.db_url)
    pw = args.admin_password or os.environ.get("CYTOSTUDY_ADMIN_PASSWORD")
    base = f"http://{args.host}:{args.port}"
    print(f"study {svc.cfg.id!r}: {len(svc.study.manifest)} stimuli, database {svc.db.dialect}")
    if svc.cfg.code:
        print(f"participants: {base}/?code={svc.cfg.code}   (or personal links: cytostudy invite {args.study})")
    print(f"admin:        {base}/admin" + ("" if pw else "   (disabled: set CYTOSTUDY_ADMIN_PASSWORD)"))
    print(analysis_hint(Path(args.study)), flush=True)
    svc.close()
    return serve(args.study, args.port, args.host, args.db_url, pw)


def cmd_demo(args) -> int:
    out = Path(args.out)
    ensure_demo_study(out, Path(args.data), Path(args.model or DEMO_MODEL), classify=not args.no_classify,
                      rebuild=args.rebuild, say=_say, device=args.device)
    if args.simulate:
        # the session, database and export code: only when simulated raters take the demo study
        from .workflow import SimulatedRaters, simulate_and_analyse

        raters = SimulatedRaters(n=args.simulate, seed=args.seed)
        report = simulate_and_analyse(out, raters, say=_say)
        print(f"\n  report: {report}\n  ({raters.describe()})")
        return 0
    from .serve.server import serve
    from .serve.session import StudyService

    svc = StudyService(out, None)
    inv = svc.create_invites(1, label="demo")[0]
    pw = os.environ.get("CYTOSTUDY_ADMIN_PASSWORD") or secrets.token_urlsafe(9)
    base = f"http://{args.host}:{args.port}"
    print(f"\n  Demo study ready (SQLite: {Path(out, 'study.db')})")
    print(f"  participant (personal link): {inv.url(base)}")
    print(f"  participant (study code):    {base}/?code={svc.cfg.code}")
    print(f"  admin:                       {base}/admin   password: {pw}")
    print(f"  {analysis_hint(out)}")
    print(f"  (or see the whole road without experts: cytostudy demo --simulate 10)\n", flush=True)
    svc.close()
    return 0 if args.no_serve else serve(out, args.port, args.host, None, pw)


def cmd_simulate(args) -> int:
    import time

    import numpy as np

    from .bots import make_profile, simulate_raters
    from .serve.session import StudyService

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
    from .export import export_study
    from .serve.session import StudyService

    svc = StudyService(args.study, args.db_url, check_version=False)
    if svc.version_note:
        _say(svc.version_note)
    df, paths = export_study(svc, args.out, include_practice=not args.main_only)
    print(f"{len(df)} responses from {df['participant_id'].nunique()} participants -> "
          + ", ".join(map(str, paths)))
    return 0


def cmd_invite(args) -> int:
    from .serve.session import StudyService

    svc = StudyService(args.study, args.db_url)
    print("participant_id,number,link")
    for inv in svc.create_invites(args.n, label=args.label):
        print(f"{inv.participant_id},{inv.number},{inv.url(args.base_url)}")
    return 0


def cmd_audit(args) -> int:
    from .audit import run_audits
    from .build.steps import AUDIT_PARTICIPANTS
    from .design import trial_sequence
    from .study import load_study

    st = load_study(args.study)
    m = st.manifest.reset_index(drop=True)
    seqs = [[t.stimulus_id for t in trial_sequence(m, st.config, k) if t.phase == "main"]
            for k in range(AUDIT_PARTICIPANTS)]
    res = run_audits(m, st.path, st.config, sequences=seqs,
                     crop_fraction=st.meta.get("provenance", {}).get("real_crop_fraction"))
    for line in res.lines():
        print(line)
    return 0 if res.passed else 1


def cmd_status(args) -> int:
    from .serve.session import StudyService

    svc = StudyService(args.study, args.db_url, check_version=False)
    if svc.version_note:
        _say(svc.version_note)
    print(", ".join(f"{k}: {v}" for k, v in svc.counts().items()))
    df = svc.participants_table()
    if len(df):
        print(df[["participant_id", "number", "slot", "status", "entry", "role", "answered", "trials",
                  "completed_at"]].to_string(index=False))
    return 0


def _study_args(q, db=True) -> None:
    q.add_argument("study", help="study folder (built with cytostudy build)")
    if db:
        q.add_argument("--db-url", help="SQLAlchemy URL (default: $CYTOSTUDY_DB_URL or STUDY/study.db)")


def _build_args(b) -> None:
    b.add_argument("--data", required=True, help="labelled real images (class folders or manifest CSV)")
    b.add_argument("--model", help=f"model folder: a cascade or a base stage (default: {DEMO_MODEL})")
    b.add_argument("--out", required=True, help="study folder to create")
    b.add_argument("--config", help="study TOML ([study], [stimuli], [design], [confidence], [text])")
    b.add_argument("--n-per-class", type=int, help="real (and synthetic) main stimuli per class")
    b.add_argument("--morph-strengths", help="comma list of SDEdit strengths, e.g. 0.2,0.4,0.6,0.8")
    b.add_argument("--crop-fraction", type=float,
                   help="centre crop of real images (default: from the model's record; a mismatch is refused)")
    b.add_argument("--steps", type=int, help="DDIM steps")
    b.add_argument("--superres-steps", type=int, help="a cascade's super-resolution steps (default: its own)")
    b.add_argument("--seed", type=int, help="stimulus seed")
    b.add_argument("--device", help="auto, cpu, cuda or cuda:N (default auto: CUDA if present, else the CPU)")
    b.add_argument("--db-url", help="the database the study will use (checked for answers before --overwrite)")
    b.add_argument("--no-classify", action="store_true", help="skip the diffusion classifier (model columns NaN)")
    b.add_argument("--overwrite", action="store_true",
                   help="replace an existing folder (never one whose study has answers in its database)")


def _simulate_args(m) -> None:
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cytostudy", description="Expert studies of real vs AI-generated blood cells.")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build a leak-proof stimulus set (real + synthetic + morphs) into a study folder")
    _build_args(b)
    b.set_defaults(func=cmd_build)

    s = sub.add_parser("serve", help="run the study in the browser (streamlit)")
    _study_args(s)
    s.add_argument("--port", type=int, default=8501)
    s.add_argument("--host", default="localhost", help="address to listen on (0.0.0.0 for a server)")
    s.add_argument("--admin-password", help="admin password (default: $CYTOSTUDY_ADMIN_PASSWORD)")
    s.set_defaults(func=cmd_serve)

    d = sub.add_parser("demo", help="build (once) and serve a demo study from data/pbc_mini + the bundled model")
    d.add_argument("--data", default=str(DEMO_DATA))
    d.add_argument("--model", help=f"model folder (default: {DEMO_MODEL})")
    d.add_argument("--out", default="demo_study")
    d.add_argument("--port", type=int, default=8501)
    d.add_argument("--host", default="localhost")
    d.add_argument("--device", help="auto, cpu, cuda or cuda:N (default auto: CUDA if present, else the CPU)")
    d.add_argument("--rebuild", action="store_true")
    d.add_argument("--no-classify", action="store_true", help="skip the diffusion classifier (faster build)")
    d.add_argument("--no-serve", action="store_true", help="build and print the links, do not start the server")
    d.add_argument("--simulate", type=int, metavar="N",
                   help="instead of serving: N simulated raters take the study, then export and analysis")
    d.add_argument("--seed", type=int, default=0, help="seed of the simulated raters")
    d.set_defaults(func=cmd_demo)

    m = sub.add_parser("simulate", help="simulated raters through the participant code path")
    _study_args(m)
    _simulate_args(m)
    m.set_defaults(func=cmd_simulate)

    e = sub.add_parser("export", help="tidy responses (CSV + Parquet, with provenance)")
    _study_args(e)
    e.add_argument("--out", required=True,
                   help="folder (responses.* and stimuli.*), or the responses file name ending .csv/.parquet")
    e.add_argument("--main-only", action="store_true", help="leave out practice trials")
    e.set_defaults(func=cmd_export)

    i = sub.add_parser("invite", help="create personal invite links (printed once as CSV)")
    _study_args(i)
    i.add_argument("--n", type=int, default=1)
    i.add_argument("--label", default="")
    i.add_argument("--base-url", default="http://localhost:8501")
    i.set_defaults(func=cmd_invite)

    a = sub.add_parser("audit", help="re-run the leak audit and the content-confound check on a built study")
    _study_args(a, db=False)
    a.set_defaults(func=cmd_audit)

    t = sub.add_parser("status", help="participants (active, completed, abandoned) and response counts")
    _study_args(t)
    t.set_defaults(func=cmd_status)
    return p


def _known_errors() -> tuple[type[BaseException], ...]:
    from .build.guard import StudyBuildError
    from .config import StudyConfigError
    from .export import NoResponses
    from .serve.errors import StudyMismatch
    from .storage import StorageUnavailable
    errors = [StudyConfigError, StudyBuildError, FileNotFoundError, StudyMismatch, StorageUnavailable, NoResponses,
              ValueError]
    try:
        from cytomodel.data import DataError
        errors.append(DataError)
    except ImportError:  # a study server without the model extra
        pass
    return tuple(errors)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    from .audit.leak import LeakAuditError
    try:
        return args.func(args) or 0
    except LeakAuditError as exc:
        print(f"cytostudy {args.command}: LEAK AUDIT FAILED: {exc}", file=sys.stderr)
        return 3
    except _known_errors() as exc:
        print(f"cytostudy {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
