"""In-training quality monitor: for each new EMA export of a running training, measure class fidelity (and the
global-colour error) and append one row per export and guidance to a CSV.

    python benchmarks/quality_monitor.py --model /work/runs/cpu-32/model --csv /work/scratch/monitor.csv \\
        --n 16 --guidance 2 --steps 25 --watch 600

The export folder is copied before use (training rewrites it every ``checkpoint_every`` steps; a copy that changed
while being taken is retried), and a step already in the CSV is not measured again. ``--watch S`` repeats every S
seconds until the export reaches ``--until-step`` (or forever). Fidelity uses the baseline classifier, as in
``quality_fidelity.py``; colour error is the largest per-channel difference (0-255) between the mean colour of the
generated images and of the real training images.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from quality_common import DEFAULT_BASELINE, DEFAULT_DATA, generate_balanced, load_real, setup_runtime


def snapshot(model_dir: Path, dest: Path, tries: int = 5) -> dict:
    """Copy a model folder that a running training may rewrite; returns its metadata."""
    meta_file = model_dir / "cytomodel.json"
    for _ in range(tries):
        if not meta_file.is_file():
            raise FileNotFoundError(f"{model_dir} has no cytomodel.json (no export yet?)")
        before = meta_file.read_text()
        stamp = [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in sorted(model_dir.iterdir())]
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(model_dir, dest)
        after = meta_file.read_text()
        stamp2 = [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in sorted(model_dir.iterdir())]
        if before == after and stamp == stamp2:
            return json.loads(after)
        time.sleep(5)
    raise RuntimeError(f"{model_dir} kept changing while being copied")


def measured_steps(csv_path: Path) -> set[tuple[int, float]]:
    if not csv_path.is_file():
        return set()
    with open(csv_path, newline="") as fh:
        return {(int(r["train_steps"]), float(r["guidance"])) for r in csv.DictReader(fh)}


def measure_once(args, clf, real_mean) -> int:
    from cytomodel.models import load_model

    csv_path = Path(args.csv)
    with tempfile.TemporaryDirectory() as tmp:
        snap = Path(tmp) / "model"
        meta = snapshot(Path(args.model), snap)
        step = int(meta.get("train_steps", -1))
        todo = [g for g in args.guidance if (step, float(g)) not in measured_steps(csv_path)]
        if not todo:
            return step
        model = load_model(snap)
        rows = []
        for g in todo:
            t0 = time.time()
            images, labels = generate_balanced(model, snap, args.n, g, args.steps, args.precision, args.seed,
                                               use_cache=False, log=None)
            pred = clf.predict(images)
            colour = np.abs(images.reshape(-1, 3).mean(0) - real_mean)
            row = {"utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "train_steps": step,
                   "train_wall_seconds": meta.get("wall_seconds"), "guidance": g, "n_per_class": args.n,
                   "ddim_steps": args.steps, "fidelity": round(float((pred == labels).mean()), 4),
                   "colour_error": round(float(colour.max()), 2)}
            for i, c in enumerate(model.class_names):
                row[f"fid_{c}"] = round(float((pred[labels == i] == i).mean()), 4)
            row["seconds"] = round(time.time() - t0, 1)
            rows.append(row)
            print(f"step {step} guidance {g:g}: fidelity {row['fidelity']:.3f}, colour error "
                  f"{row['colour_error']:.1f}/255 ({row['seconds']:.0f}s)", flush=True)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    new = not csv_path.is_file()
    with open(csv_path, "a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        if new:
            w.writeheader()
        w.writerows(rows)
    return step


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="a training run's model/ export folder")
    p.add_argument("--csv", required=True, help="CSV to append to")
    p.add_argument("--baseline", default=str(DEFAULT_BASELINE))
    p.add_argument("--data", default=str(DEFAULT_DATA), help="real data (train split: reference colour)")
    p.add_argument("--n", type=int, default=16, help="images per class (%(default)s)")
    p.add_argument("--guidance", type=float, nargs="+", default=[2.0])
    p.add_argument("--steps", type=int, default=25, help="DDIM steps (%(default)s)")
    p.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--watch", type=float, help="poll every this many seconds")
    p.add_argument("--until-step", type=int, help="with --watch: stop once this step was measured")
    args = p.parse_args(argv)
    setup_runtime()
    from cytomodel.evaluate import load_baseline

    clf = load_baseline(args.baseline)
    real = load_real(args.data, "train", clf.resolution, clf.class_names)
    real_mean = real.images.reshape(-1, 3).mean(0)
    while True:
        step = measure_once(args, clf, real_mean)
        if not args.watch or (args.until_step is not None and step >= args.until_step):
            return 0
        time.sleep(args.watch)


if __name__ == "__main__":
    raise SystemExit(main())
