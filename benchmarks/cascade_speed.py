"""Seconds per generated cell: a cascade at the study's settings, each stage timed, bf16 and fp32 side by side.

    python benchmarks/cascade_speed.py --model data/models/cascade-128 --n 16 --superres-steps 10 20

Base stage: DDIM ``--steps`` with classifier-free guidance 2 (two UNet passes per step), as `cytostudy build` uses it.
Super-resolution stage: ``--superres-steps`` DDIM steps on whole 128-px cells (one pass per step). Run on an idle
machine; the figures mean nothing beside other jobs.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=str(REPO / "data" / "models" / "cascade-128"))
    p.add_argument("--n", type=int, default=16, help="cells per measurement (%(default)s)")
    p.add_argument("--steps", type=int, default=50, help="base-stage DDIM steps (%(default)s)")
    p.add_argument("--guidance", type=float, default=2.0)
    p.add_argument("--superres-steps", type=int, nargs="+", default=[10, 20])
    p.add_argument("--precisions", nargs="+", default=["bf16", "fp32"])
    p.add_argument("--json")
    args = p.parse_args(argv)

    from cytomodel.models import load_generator
    from cytomodel.pipelines import sample, super_resolve
    from cytomodel.runtime import configure_runtime

    configure_runtime()
    cascade = load_generator(args.model)
    classes = [i % len(cascade.class_names) for i in range(args.n)]
    seeds = list(range(args.n))
    sample(cascade.base, classes[:2], seeds[:2], steps=2)  # warm-up
    load = os.getloadavg()
    rows = []
    for precision in args.precisions:
        t0 = time.perf_counter()
        low = sample(cascade.base, classes, seeds, guidance=args.guidance, steps=args.steps, precision=precision)
        base_s = (time.perf_counter() - t0) / args.n
        for k in args.superres_steps:
            t0 = time.perf_counter()
            super_resolve(cascade.superres, low, classes, seeds, steps=k, precision=precision)
            sr_s = (time.perf_counter() - t0) / args.n
            rows.append({"precision": precision, "base_steps": args.steps, "superres_steps": k,
                         "base_s_per_cell": base_s, "superres_s_per_cell": sr_s, "total_s_per_cell": base_s + sr_s})
            print(f"{precision}: base {args.steps} steps (guidance {args.guidance:g}) {base_s:.3f} s/cell + "
                  f"super-resolution {k} steps {sr_s:.3f} s/cell = {base_s + sr_s:.3f} s per "
                  f"{cascade.resolution}-px cell", flush=True)
    print(f"(load average at start {load[0]:.2f} on {os.cpu_count()} cores)")
    if args.json:
        Path(args.json).write_text(json.dumps({"model": args.model, "n": args.n, "rows": rows,
                                               "load_average_at_start": load}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
