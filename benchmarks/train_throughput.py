"""Training and sampling throughput of a preset on this machine, bf16 autocast vs fp32 side by side.

    python benchmarks/train_throughput.py --preset cpu-32 --threads 2 --train-steps 150 --repeats 1

Training: each (precision, repeat) runs the real ``cytomodel.train.train`` loop in a fresh subprocess (accelerate
fixes the precision per process) on the PBC train split (or random images if it is missing), and reports the
images/s that the loop itself logs for every 50-step window after the first (the first window includes warm-up).
Sampling: DDIM with classifier-free guidance from the model at ``--model`` (or a freshly initialised UNet of the
preset if absent), images/s at guidance 2 (two UNet passes per step) and 1 (one pass). Run it on an otherwise idle
machine: throughput is only meaningful without other jobs on the cores. Target (issue 2): >= 100 training images/s
with bf16 for cpu-32.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DEFAULT_DATA = Path(os.environ.get("CYTOSTUDY_SHARED_DATA", REPO.parent / "shared" / "data")) / "pbc"
TARGET = 100.0


def _data(preset_resolution: int, data: str):
    from cytomodel.data import ImageArrays, load_dataset
    if Path(data).exists():
        return load_dataset(data, preset_resolution, split="train" if (Path(data) / "manifest.csv").is_file()
                            else None), str(data)
    rng = np.random.default_rng(0)
    n = 2048
    imgs = rng.integers(0, 256, (n, preset_resolution, preset_resolution, 3), dtype=np.uint8)
    labels = np.arange(n) % 8
    return ImageArrays(imgs, labels, [f"c{i}" for i in range(8)], [], "random"), "random images"


def worker(args) -> dict:
    """One training measurement in this process."""
    from cytomodel.train import load_config, train

    cfg = load_config(args.preset, overrides={
        "max_steps": args.train_steps, "mixed_precision": args.worker, "checkpoint_every": 10 ** 9,
        "sample_every": 10 ** 9, "threads": args.threads, **dict(o.split("=", 1) for o in args.set)})
    data, source = _data(cfg.resolution, args.data)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.time()
        train(cfg, data, tmp, progress=False)
        wall = time.time() - t0
        rows = list(csv.DictReader(open(Path(tmp) / "train_log.csv")))
    windows = [float(r["images_per_s"]) for r in rows]
    steady = windows[1:] or windows
    return {"precision": args.worker, "steps": args.train_steps, "batch_size": cfg.batch_size,
            "windows_images_per_s": windows, "images_per_s": float(np.median(steady)),
            "warmup_excluded": len(windows) > 1, "wall_seconds_incl_setup": round(wall, 1), "data": source,
            "threads": args.threads}


def sampling(args) -> list[dict]:
    import torch

    from cytomodel.models import CytoModel, build_scheduler, build_unet, load_model
    from cytomodel.pipelines import sample
    from cytomodel.train import load_config
    from cytomodel.runtime import configure_runtime

    configure_runtime(args.threads)
    if args.model and (Path(args.model) / "cytomodel.json").is_file():
        model, what = load_model(args.model), args.model
    else:
        cfg = load_config(args.preset)
        torch.manual_seed(0)
        model = CytoModel(build_unet(cfg, 8), build_scheduler(cfg), [f"c{i}" for i in range(8)], cfg.resolution,
                          [0.5] * 3, [0.25] * 3)
        what = f"untrained {args.preset} UNet"
    out = []
    n = args.sample_n
    classes, seeds = [i % len(model.class_names) for i in range(n)], list(range(n))
    sample(model, classes[:4], seeds[:4], guidance=2.0, steps=2, precision="bf16")  # warm-up
    for guidance in (2.0, 1.0):
        for precision in ("bf16", "fp32"):
            t0 = time.time()
            sample(model, classes, seeds, guidance=guidance, steps=args.sample_steps, precision=precision,
                   batch_size=args.sample_batch)
            dt = time.time() - t0
            passes = n * args.sample_steps * (2 if guidance != 1.0 else 1)
            out.append({"guidance": guidance, "precision": precision, "images": n, "steps": args.sample_steps,
                        "seconds": round(dt, 2), "images_per_s": n / dt, "unet_image_passes_per_s": passes / dt,
                        "model": what})
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="cpu-32")
    p.add_argument("--data", default=str(DEFAULT_DATA), help="training images (%(default)s; random if missing)")
    p.add_argument("--model", default=str(REPO / "data" / "models" / "cpu-32"), help="model for sampling")
    p.add_argument("--threads", type=int, default=2, help="torch threads (%(default)s)")
    p.add_argument("--train-steps", type=int, default=150, help="steps per training run; 50-step windows")
    p.add_argument("--repeats", type=int, default=1, help="alternating bf16/fp32 runs per precision")
    p.add_argument("--sample-n", type=int, default=64, help="images per sampling measurement")
    p.add_argument("--sample-steps", type=int, default=50, help="DDIM steps per sampling measurement")
    p.add_argument("--sample-batch", type=int, default=64)
    p.add_argument("--skip-sampling", action="store_true")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    p.add_argument("--json", help="also write the figures here")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(worker(args)))
        return 0

    load_at_start = os.getloadavg()
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "CYTOMODEL_THREADS": str(args.threads)}
    runs = []
    for r in range(args.repeats):
        for precision in ("bf16", "no"):
            cmd = [sys.executable, __file__, "--worker", precision, "--preset", args.preset, "--data", args.data,
                   "--threads", str(args.threads), "--train-steps", str(args.train_steps)]
            for o in args.set:
                cmd += ["--set", o]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if proc.returncode or line is None:
                print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
                raise SystemExit(f"training worker ({precision}) failed")
            runs.append(json.loads(line[7:]))
            print(f"  train {args.preset} {'fp32' if precision == 'no' else precision} run {r + 1}: "
                  f"{runs[-1]['images_per_s']:.1f} img/s (windows {runs[-1]['windows_images_per_s']})", flush=True)
    med = {pr: float(np.median([x["images_per_s"] for x in runs if x["precision"] == pr])) for pr in ("bf16", "no")}
    results = {"preset": args.preset, "threads": args.threads, "cpu_count": os.cpu_count(),
               "load_average_at_start": load_at_start, "train_runs": runs,
               "train_images_per_s": {"bf16": med["bf16"], "fp32": med["no"]},
               "train_bf16_over_fp32": med["bf16"] / med["no"], "target_bf16": TARGET}
    print(f"\ntraining throughput, {args.preset}, batch {runs[0]['batch_size']}, {args.threads} threads "
          f"({runs[0]['data']}): bf16 {med['bf16']:.1f} img/s | fp32 {med['no']:.1f} img/s | ratio "
          f"{med['bf16'] / med['no']:.2f}x"
          + (f"; target >= {TARGET:.0f} img/s bf16: {'met' if med['bf16'] >= TARGET else 'NOT met'}"
             if args.preset == "cpu-32" else ""))
    if not args.skip_sampling:
        s = sampling(args)
        results["sampling"] = s
        print(f"sampling throughput ({s[0]['model']}, {args.sample_n} images, {args.sample_steps} DDIM steps, "
              f"batch {args.sample_batch}):")
        for g in (2.0, 1.0):
            b = next(x for x in s if x["guidance"] == g and x["precision"] == "bf16")
            f = next(x for x in s if x["guidance"] == g and x["precision"] == "fp32")
            print(f"  guidance {g:g}: bf16 {b['images_per_s']:.2f} img/s ({b['unet_image_passes_per_s']:.0f} UNet "
                  f"image-passes/s) | fp32 {f['images_per_s']:.2f} img/s | ratio "
                  f"{b['images_per_s'] / f['images_per_s']:.2f}x")
    print(f"(load average at start {load_at_start[0]:.2f} on {os.cpu_count()} cores: "
          "figures are only meaningful on an idle machine)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
