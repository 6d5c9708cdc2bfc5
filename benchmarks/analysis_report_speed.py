"""Wall time of the full report (10 raters × 300 trials), old code against new, side by side in one run.

Each run is ``python -m analysis report`` in a subprocess with ``PYTHONPATH`` pointing at one checkout, so
imports, model compilation, sampling, figures and the report all count, each code at its own defaults.
For every checkout the report runs twice against one fresh PyTensor ``base_compiledir`` (which holds both the C
compiledir and numba's cache): first empty ("cold": what a fresh machine pays, every model compiled), then again with
what that first run compiled ("warm").  CPU seconds of the report's process tree and the load average are printed
beside the wall time because this machine is shared; per fit, the seconds spent compiling and sampling where the
code records them (``fits/<name>.json`` → ``info``).  Targets (issue 24): cold ≤ 60 s, warm ≤ 40 s.

    git worktree add /tmp/old <sha>     # the code to compare with
    python benchmarks/analysis_report_speed.py --code /tmp/old --code . [--keep DIR] [--repeat 1]
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


def run_report(code: Path, data: Path, out: Path, compiledir: Path, extra: list[str]) -> dict:
    env = dict(os.environ, PYTHONPATH=str(code.resolve()), PYTENSOR_FLAGS=f"base_compiledir={compiledir}")
    load0 = os.getloadavg()[0]
    cpu0 = os.times()
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "analysis", "report", "--data", str(data), "--out", str(out),
                        "--allow-diagnostic-failures", *extra], env=env, capture_output=True, text=True,
                       cwd=str(code))
    wall = time.perf_counter() - t0
    cpu1 = os.times()
    cpu = (cpu1.children_user - cpu0.children_user) + (cpu1.children_system - cpu0.children_system)
    n_fail, fits, parts = -1, {}, {}
    diag = out / "tables" / "diagnostics.csv"
    if diag.exists():
        import pandas as pd
        d = pd.read_csv(diag)
        fits = dict(zip(d["model"], d["seconds"].round(1)))
        n_fail = int((~d["ok"]).sum())
    for f in sorted((out / "fits").glob("*.json")):
        info = json.loads(f.read_text()).get("info", {})
        if "compile_s" in info:
            parts[f.stem] = {k: info[k] for k in ("backend", "compile_s", "sample_s", "complete_s") if k in info}
    if p.returncode not in (0, 1):
        print(p.stderr[-3000:], flush=True)
    return {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "exit": p.returncode, "fits_failing_gate": n_fail,
            "load_before": round(load0, 2), "load_after": round(os.getloadavg()[0], 2), "per_fit_s": fits,
            "per_fit_parts": parts}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--code", action="append", default=None, help="a checkout to time (repeatable; default .)")
    ap.add_argument("--raters", type=int, default=10)
    ap.add_argument("--trials", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=1, help="warm runs per checkout")
    ap.add_argument("--keep", default=None, help="folder to keep the reports in")
    ap.add_argument("extra", nargs="*", help="extra report arguments after --, e.g. -- --jobs 1")
    a = ap.parse_args(argv)
    codes = [Path(c) for c in (a.code or ["."])]
    work = Path(a.keep or tempfile.mkdtemp(prefix="cytoanalysis_speed_"))
    work.mkdir(parents=True, exist_ok=True)
    data = work / "responses.parquet"
    subprocess.run([sys.executable, "-m", "analysis", "simulate", "--out", str(data), "--raters", str(a.raters),
                    "--trials", str(a.trials), "--seed", "1"], check=True,
                   env=dict(os.environ, PYTHONPATH=str(codes[-1].resolve())))
    results = []
    cdirs = {i: Path(tempfile.mkdtemp(prefix=f"pt_compiledir_{i}_")) for i in range(len(codes))}
    # interleaved (old cold, new cold, old warm, new warm, …) so that a change in the machine's load hits both
    for k, mode in enumerate(["cold"] + ["warm"] * a.repeat):
        for i, code in enumerate(codes):
            r = run_report(code, data, work / f"report_{i}_{mode}{k}", cdirs[i], a.extra)
            r.update({"code": str(code), "cache": mode})
            results.append(r)
            print(f"{code} ({mode} compile cache): wall {r['wall_s']:.1f} s"
                  + f" (target ≤ {40 if mode == 'warm' else 60} s: "
                  f"{'PASS' if r['wall_s'] <= (40 if mode == 'warm' else 60) else 'MISSED'})"
                  + f", CPU {r['cpu_s']:.1f} s, exit {r['exit']}, fits failing the gate {r['fits_failing_gate']}, "
                  f"load avg {r['load_before']:.1f}→{r['load_after']:.1f}", flush=True)
            print("   per fit (s): " + json.dumps(r["per_fit_s"]), flush=True)
            if r["per_fit_parts"]:
                print("   compile / sampling (s): " + json.dumps(r["per_fit_parts"]), flush=True)
    for mode in ("cold", "warm"):
        rs = [r for r in results if r["cache"] == mode]
        if len(codes) > 1 and rs:
            base = [r for r in rs if r["code"] == str(codes[0])][0]
            for r in rs[1:]:
                if r["code"] != str(codes[0]):
                    print(f"{mode}: wall {r['code']} ÷ {codes[0]} = {r['wall_s'] / base['wall_s']:.2f}, "
                          f"CPU {r['cpu_s'] / base['cpu_s']:.2f}")
    (work / "speed.json").write_text(json.dumps(results, indent=2))
    print(f"reports in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
