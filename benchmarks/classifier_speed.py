"""Exhaustive vs adaptive evaluation on the same images: UNet calls/image, seconds/image, accuracy, ratios.

    nice -n 15 env OMP_NUM_THREADS=1 CYTOMODEL_THREADS=1 python benchmarks/classifier_speed.py \\
        --model /work/runs/cpu-32/model --data ../shared/data/pbc --split test --per-class 5

Both runs are live (timed). The adaptive run evaluates a subset of the exhaustive run's (trial, class) pairs (same
per-image trial plan), which is checked here with ``replay_strategy``. Seconds/image depend on the threads this
process gets: the line "threads" says how many torch used and the load average says how busy the machine was.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main():
    from cytomodel.classify import ClassifierConfig, estimate_errors, replay_strategy
    from cytomodel.evaluate import classification_summary
    from cytomodel.evaluate.evaluation import _arrays, balanced_items
    from cytomodel.models import load_model
    from cytomodel.runtime import configure_runtime
    import torch

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--per-class", type=int, default=5)
    ap.add_argument("--exhaustive-trials", type=int, default=48)
    ap.add_argument("--strategies", default="topk,paired-ttest",
                    help="adaptive strategies to run, comma-separated (ClassifierConfig defaults otherwise)")
    ap.add_argument("--precision", default="bf16")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the numbers here")
    args = ap.parse_args()

    configure_runtime()
    model = load_model(args.model)
    items = balanced_items(args.data, args.split, args.per_class, model.class_names, seed=args.seed)
    images, _ = _arrays(items, model.resolution)
    labels = np.array([model.class_names.index(lab) for _, lab in items])
    base = ClassifierConfig(precision=args.precision, seed=args.seed)
    exh = dataclasses.replace(base, strategy="exhaustive", trials=args.exhaustive_trials)
    runs = [("exhaustive", exh)] + [(s, dataclasses.replace(base, strategy=s)) for s in args.strategies.split(",")]
    # warm-up (allocator, autocast caches) outside the timing
    estimate_errors(model, images[:2], dataclasses.replace(exh, trials=2))
    out = {}
    for name, cfg in runs:
        t0 = time.perf_counter()
        est = estimate_errors(model, images, cfg)
        dt = time.perf_counter() - t0
        pred = est.errors.argmin(1)
        out[name] = {"config": cfg.to_dict(), "unet_calls_per_image": float(est.unet_calls.mean()),
                     "seconds_per_image": dt / len(images), "accuracy": float(np.mean(pred == labels)),
                     "balanced_accuracy": classification_summary(labels, pred, len(model.class_names))["balanced_accuracy"],
                     "pred": pred.tolist(), "est": est}
    e = out["exhaustive"]
    for name, cfg in runs[1:]:
        if cfg.trials <= exh.trials:
            same = bool((replay_strategy(e["est"], cfg).unet_calls == out[name]["est"].unet_calls).all())
            print(f"replay check ({name} == subset of the exhaustive trials): {'ok' if same else 'MISMATCH'}")
    print(f"model {args.model} (step {model.metadata.get('train_steps')}), {len(images)} {args.split} images "
          f"({args.per_class}/class), {args.precision}, threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'':14s} {'calls/img':>10s} {'s/img':>8s} {'accuracy':>9s} {'bal.acc':>8s}")
    for name, _ in runs:
        r = out[name]
        print(f"{name:14s} {r['unet_calls_per_image']:10.1f} {r['seconds_per_image']:8.3f} {r['accuracy']:9.4f} "
              f"{r['balanced_accuracy']:8.4f}")
    for name, _ in runs[1:]:
        a = out[name]
        a["calls_ratio"] = e["unet_calls_per_image"] / a["unet_calls_per_image"]
        a["time_ratio"] = e["seconds_per_image"] / a["seconds_per_image"]
        a["agree"] = float(np.mean(np.array(e["pred"]) == np.array(a["pred"])))
        print(f"ratio exhaustive/{name}: UNet calls {a['calls_ratio']:.2f}x, time {a['time_ratio']:.2f}x; accuracy "
              f"change {100 * (a['accuracy'] - e['accuracy']):+.2f} points; predictions agree on {a['agree']:.3f}")
    if args.json:
        for r in out.values():
            r.pop("est")
        Path(args.json).write_text(json.dumps({**out, "train_steps": model.metadata.get("train_steps")}, indent=1))


if __name__ == "__main__":
    main()
