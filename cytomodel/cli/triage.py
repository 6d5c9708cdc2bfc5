"""``cytomodel triage``: accept / review / flag cells from classification tables (argument parsing only)."""
from __future__ import annotations

import argparse
from pathlib import Path

from cytocore.classification import with_current_names
from cytocore.provenance import sha256_file

from .. import classify


def _read(path: str) -> "pd.DataFrame":  # noqa: F821
    import pandas as pd  # ~1 s: only when the command runs, not when the parser is built

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such classification table; write one with `cytomodel classify --out {p.name}`"
                                " or `cytomodel baseline predict --out ...`")
    table = pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p)
    return with_current_names(table)  # a baseline table of before the one schema (path, predicted, p_<class>)


def _num(v) -> str:
    return "never (no threshold met the target)" if v is None else f"{v:.4g}"


def _pair(text: str) -> tuple[str, str, str]:
    """NAME=CALIBRATION,CELLS"""
    try:
        name, rest = text.split("=", 1)
        cal, cells = rest.split(",", 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME=CALIBRATION.csv,CELLS.csv, got {text!r}") from None
    return name, cal, cells


def cmd_triage(args: argparse.Namespace) -> int:
    runs = [("diffusion", args.calibration, args.cells), *args.compare]
    tables = {name: (_read(cal), _read(cells)) for name, cal, cells in runs}
    sources = {name: {"calibration": cal, "calibration_sha256": sha256_file(cal), "cells": cells,
                      "cells_sha256": sha256_file(cells)} for name, cal, cells in runs}
    rec = classify.run_triage(args.out, tables, target_error=args.target_error, target_flag_rate=args.flag_rate,
                              delta=args.delta, report_targets=args.report_targets, held_out=args.held_out,
                              sources=sources)
    for name, r in rec["classifiers"].items():
        s, rule = r["summary"], r["rule"]
        line = (f"{name}: accept {s['coverage']:.1%}, review {s['review_rate']:.1%}, flag {s['flag_rate']:.1%} "
                f"of {s['n']} cells (thresholds: confidence ≥ {_num(rule['accept_threshold'])}, anomaly > "
                f"{_num(rule['flag_threshold'])})")
        if s.get("error_among_accepted") is not None:
            lo, hi = s["error_ci95"]
            line += f"; error among accepted {s['error_among_accepted']:.2%} (95% CI {lo:.2%}–{hi:.2%})"
        print(line)
        if r.get("calibration_cells_of_held_out_classes_left_out"):
            print(f"  {r['calibration_cells_of_held_out_classes_left_out']} calibration cells of held-out classes "
                  "left out of the fit")
        k = s.get("trained_classes")
        if k and k.get("error_among_accepted") is not None:
            print(f"  cells of the trained classes: accept {k['coverage']:.1%}, error among accepted "
                  f"{k['error_among_accepted']:.2%} of {k['n']}")
        for c, d in s.get("by_label", {}).items():
            if not d["n"]:
                print(f"  {c}: no cell of the table is labelled {c}")
                continue
            print(f"  {c}: flagged {d['flag']:.1%}, review {d['review']:.1%}, accepted {d['accept']:.1%} "
                  f"of {d['n']}")
    print(f"guarantee: {next(iter(rec['classifiers'].values()))['guarantee']}")
    print(f"wrote {args.out}/triage.json, decisions_<classifier>.csv, risk_coverage.pdf|png")
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "triage", help="accept / review / flag cells with a guaranteed error rate among accepted cells",
        description="Fit thresholds on a labelled calibration table (e.g. `cytomodel classify --split val`) and triage "
                    "a table of cells: accepted with their class, sent to review (uncertain) or flagged (unlike any "
                    "trained class). With probability ≥ 1-delta the error among accepted cells is ≤ the target, and "
                    "a cell of a trained class is flagged with probability ≤ the flag rate, for cells exchangeable "
                    "with the calibration cells. Method: docs/classifier.md#triage.")
    p.add_argument("--calibration", required=True, help="labelled classification table (.csv/.parquet) to fit on")
    p.add_argument("--cells", required=True, help="classification table of the cells to triage")
    p.add_argument("--compare", type=_pair, nargs="+", action="extend", default=[], metavar="NAME=CAL,CELLS",
                   help="other classifiers' tables, side by side (e.g. baseline=b_val.csv,b_test.csv)")
    p.add_argument("--target-error", type=float, default=0.01, help="error rate among accepted cells (%(default)s)")
    p.add_argument("--flag-rate", type=float, default=0.02, help="false-flag rate on trained classes (%(default)s)")
    p.add_argument("--delta", type=float, default=0.1, help="risk that the error bound fails (%(default)s)")
    p.add_argument("--report-targets", type=float, nargs="+", default=[0.01, 0.02],
                   help="also report the coverage each classifier reaches at these target errors")
    p.add_argument("--held-out", nargs="+", default=[], metavar="LABEL",
                   help="labels of classes the model never saw: report where their cells went (their cells in the "
                        "calibration table are left out of the fit)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.set_defaults(func=cmd_triage)
