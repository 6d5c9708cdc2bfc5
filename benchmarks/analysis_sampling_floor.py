"""How fast the report could be at its defaults: the floor set by the number of gradients NUTS needs.

Runs the report (10 raters × 300 trials, simulated as in ``analysis_report_speed.py``) in this process, one fit
after another (``--jobs 1``), and for every fit records

* the leapfrog steps nutpie took (``n_steps`` of the kept draws; the tuning steps are estimated at the same rate,
  since nutpie does not keep them at the defaults),
* the cost of one log-density + gradient call made directly (no sampler around it; the median of ``--calls``
  calls at the initial point) and inside nutpie (sampling seconds ÷ steps: the sampler's own work and the Python
  call from Rust included).

The floor of the report's sampling is Σ steps × direct cost: what sampling would cost if nutpie's overhead and
its Python callback were free, with the same number of chains, draws, tuning steps and the same posterior
geometry.  Divided by the CPUs, it is the wall time below which no change of compiler or backend can bring the
report at those settings (compilation, the posterior predictive, figures and the report itself come on top).

    python benchmarks/analysis_sampling_floor.py [--out DIR] [--set sampler.tune=300 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analysis import nutpie_backend  # noqa: E402
from analysis.steps import base as steps_base  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None, help="folder for the simulated data, the report and floor.json")
    ap.add_argument("--raters", type=int, default=10)
    ap.add_argument("--trials", type=int, default=300)
    ap.add_argument("--calls", type=int, default=2000, help="direct calls timed per fit")
    ap.add_argument("--cpus", type=int, default=None, help="CPUs the wall-time floor divides by (default: all)")
    ap.add_argument("--set", nargs="*", default=[], help="report settings, e.g. sampler.tune=300")
    a = ap.parse_args(argv)
    work = Path(a.out or tempfile.mkdtemp(prefix="cytoanalysis_floor_"))
    work.mkdir(parents=True, exist_ok=True)
    data = work / "responses.parquet"
    from analysis.cli import main as analysis_main
    if not data.exists():
        analysis_main(["simulate", "--out", str(data), "--raters", str(a.raters), "--trials", str(a.trials),
                       "--seed", "1"])

    rows: dict[str, dict] = {}
    real_sample = nutpie_backend.sample_nutpie

    def timed_sample(c, **kw):
        q = c.initial_point(0)
        c.logp_dlogp(q)
        ts = []
        for _ in range(a.calls):
            t0 = time.perf_counter()
            c.logp_dlogp(q)
            ts.append(time.perf_counter() - t0)
        t0 = time.process_time()
        idata = real_sample(c, **kw)
        cpu = time.process_time() - t0
        steps = idata.sample_stats["n_steps"].values
        kept = float(steps.sum())
        total = kept * (kw["draws"] + kw["tune"]) / kw["draws"]
        name = getattr(c.model, "fit_name", None) or f"fit{len(rows)}"
        rows.setdefault(name, {"runs": []})["runs"].append({
            "dims": c.n_dim, "backend": c.backend, "direct_us": round(1e6 * float(np.median(ts)), 1),
            "steps_kept": int(kept), "steps_total_est": int(total), "steps_per_draw": round(float(steps.mean()), 2),
            "sample_cpu_s": round(cpu, 2), "in_sampler_us": round(1e6 * cpu / total, 1)})
        return idata

    nutpie_backend.sample_nutpie = timed_sample
    real_fit = steps_base.fit_model

    def named_fit(name, model, *args, **kwargs):
        model.fit_name = name
        return real_fit(name, model, *args, **kwargs)

    steps_base.fit_model = named_fit
    t0 = time.perf_counter()
    analysis_main(["report", "--data", str(data), "--out", str(work / "report"), "--jobs", "1",
                   "--allow-diagnostic-failures", *(["--set", *a.set] if a.set else [])])
    wall = time.perf_counter() - t0
    cpus = a.cpus or os.cpu_count() or 1
    floor = sum(r["steps_total_est"] * r["direct_us"] for v in rows.values() for r in v["runs"]) * 1e-6
    sampled = sum(r["sample_cpu_s"] for v in rows.values() for r in v["runs"])
    out = {"settings": a.set, "report_wall_s_one_process": round(wall, 1), "sampling_cpu_s": round(sampled, 1),
           "floor_sampling_cpu_s": round(floor, 1), "cpus": cpus,
           "floor_wall_s": round(floor / cpus, 1), "fits": rows}
    (work / "floor.json").write_text(json.dumps(out, indent=1))
    for name, v in rows.items():
        for r in v["runs"]:
            print(f"{name:28s} {r['backend']:5s} dims {r['dims']:4d}  steps/draw {r['steps_per_draw']:5.1f}  "
                  f"steps {r['steps_total_est']:7d}  direct {r['direct_us']:6.1f} µs  in nutpie "
                  f"{r['in_sampler_us']:6.1f} µs  sampling {r['sample_cpu_s']:5.1f} s CPU")
    print(f"sampling: {sampled:.1f} s CPU; floor (steps × direct cost) {floor:.1f} s CPU = {floor / cpus:.1f} s "
          f"wall on {cpus} CPUs, before compiling, the posterior predictive, figures and the report "
          f"(report in one process: {wall:.1f} s wall)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
