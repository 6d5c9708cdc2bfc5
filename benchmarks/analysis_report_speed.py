"""Wall time of the full report (10 raters × 300 trials by default), each sampler, in a fresh process.

Each run is ``python -m analysis report`` in a subprocess, so imports, model compilation and sampling all count.
PyTensor caches compiled C code in its compiledir across processes; ``--cold`` points each run at an empty
compiledir (first-ever-run cost), otherwise the cache is whatever this machine already has ("warm").
Target: ≤ 60 s wall.  The load average is printed because this machine may be shared; CPU seconds (this
report's process tree) are printed beside the wall time because they are much less sensitive to other jobs.
Every sampler × jobs × cores × tune × ppc-draws combination runs in the same invocation, one after the other, so
their ratio is measured side by side.  ``--jobs``: processes running groups of fits at once ("auto" = one per CPU,
the default of ``cytoanalysis report``, chains one after the other inside each); with ``--jobs 1`` the fits run one
after another and ``--cores`` sets the processes for each fit's chains ("auto" = one per chain up to the CPUs).

    python benchmarks/analysis_report_speed.py [--samplers pymc,nutpie] [--jobs auto,1] [--cores auto] [--cold]
                                               [--tune 1000,500] [--ppc-draws 500,0]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--raters", type=int, default=10)
    ap.add_argument("--trials", type=int, default=300)
    ap.add_argument("--samplers", default="pymc", help="comma-separated: pymc, nutpie (default pymc)")
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--tune", default="1000", help="comma-separated tuning steps per chain (default 1000)")
    ap.add_argument("--ppc-draws", default="500",
                    help="comma-separated draws replicating the data for the posterior predictive checks (0: all)")
    ap.add_argument("--jobs", default="auto,1", help="comma-separated processes for groups of fits; 'auto' = default")
    ap.add_argument("--cores", default="auto", help="comma-separated processes for the chains when --jobs is 1")
    ap.add_argument("--cold", action="store_true", help="use an empty PyTensor compiledir per run")
    ap.add_argument("--keep", default=None, help="folder to keep the reports in")
    a = ap.parse_args(argv)
    work = Path(a.keep or tempfile.mkdtemp(prefix="cytoanalysis_speed_"))
    work.mkdir(parents=True, exist_ok=True)
    data = work / "responses.parquet"
    subprocess.run([sys.executable, "-m", "analysis", "simulate", "--out", str(data), "--raters", str(a.raters),
                    "--trials", str(a.trials), "--seed", "1"], check=True)
    results = []
    runs = [(s, j, c, t, pp) for s in a.samplers.split(",") for j in a.jobs.split(",")
            for c in (a.cores.split(",") if j == "1" else ["1"]) for t in a.tune.split(",")
            for pp in a.ppc_draws.split(",")]
    for sampler, jobs, cores, tune, ppc in runs:
        env = dict(os.environ)
        if a.cold:
            env["PYTENSOR_FLAGS"] = f"compiledir={tempfile.mkdtemp(prefix='pt_cold_')}"
        label = (f"jobs {jobs}" + (f", cores {cores}" if jobs == "1" else "")
                 + (f", tune {tune}" if "," in a.tune else "") + (f", ppc draws {ppc}" if "," in a.ppc_draws else ""))
        out = work / f"report_{sampler}_jobs-{jobs}_cores-{cores}_tune-{tune}_ppc-{ppc}"
        load0 = os.getloadavg()[0]
        cpu0 = os.times()
        t0 = time.perf_counter()
        p = subprocess.run([sys.executable, "-m", "analysis", "report", "--data", str(data), "--out", str(out),
                            "--sampler", sampler, "--draws", str(a.draws), "--tune", tune,
                            "--ppc-draws", ppc, "--allow-diagnostic-failures"]
                           + ([] if jobs == "auto" else ["--jobs", jobs])
                           + ([] if cores == "auto" or jobs != "1" else ["--cores", cores]),
                           env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        cpu1 = os.times()
        cpu = (cpu1.children_user - cpu0.children_user) + (cpu1.children_system - cpu0.children_system)
        load1 = os.getloadavg()[0]
        fits = {}
        diag = out / "tables" / "diagnostics.csv"
        if diag.exists():
            import pandas as pd
            d = pd.read_csv(diag)
            fits = dict(zip(d["model"], d["seconds"].round(1)))
            n_fail = int((~d["ok"]).sum())
        else:
            n_fail = -1
        results.append({"sampler": sampler, "setting": label, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
                        "exit": p.returncode,
                        "fits_failing_diagnostics": n_fail, "load_before": round(load0, 2),
                        "load_after": round(load1, 2), "per_fit_s": fits})
        print(f"{sampler}, {label}: wall {wall:.1f} s (target ≤ 60 s: {'PASS' if wall <= 60 else 'MISSED'}), "
              f"CPU {cpu:.1f} s, exit "
              f"{p.returncode}, fits failing diagnostics {n_fail}, load avg {load0:.1f}→{load1:.1f}, "
              f"{'cold' if a.cold else 'warm'} compile cache", flush=True)
        print("   per fit (s): " + json.dumps(fits), flush=True)
        if p.returncode not in (0, 1):
            print(p.stderr[-3000:])
    if len(results) > 1:
        base = results[-1]
        for r in results[:-1]:
            print(f"wall ratio {base['sampler']} {base['setting']} ÷ {r['sampler']} {r['setting']}: "
                  f"{base['wall_s'] / max(r['wall_s'], 1e-9):.2f}×")
    (work / "speed.json").write_text(json.dumps(results, indent=2))
    print(f"reports in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
