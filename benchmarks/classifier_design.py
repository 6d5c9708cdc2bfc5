"""Design study for the diffusion classifier on validation data (never the test split).

One exhaustive run stores every (trial, class) error of a class-balanced validation sample over the full timestep
range; from it, offline and exactly (adaptive runs evaluate a subset of the same trials, see
``replay_strategy``), we compare timestep windows, weightings, trial counts and adaptive strategies.

    nice -n 15 env OMP_NUM_THREADS=1 CYTOMODEL_THREADS=1 python benchmarks/classifier_design.py run \\
        --model /work/runs/cpu-32/model --data ../shared/data/pbc --split val --per-class 8 --trials 64 \\
        --out reports/classifier/design_val.npz
    python benchmarks/classifier_design.py analyze reports/classifier/design_val.npz
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cytomodel.classify import ClassifierConfig, ErrorEstimate, estimate_errors, replay_strategy  # noqa: E402


def balanced_sample(source, split, per_class, resolution, seed=0, classes=None):
    """``per_class`` images of every class of a split (deterministic), preprocessed like training data."""
    from cytomodel.data import load_arrays, scan_dataset

    records = scan_dataset(source, split=split)
    rng = np.random.default_rng(seed)
    by = {}
    for r in records:
        by.setdefault(r.label, []).append(r)
    names = sorted(by) if classes is None else list(classes)
    pick = []
    for c in names:
        rs = by.get(c, [])
        idx = rng.permutation(len(rs))[:per_class] if per_class else np.arange(len(rs))
        pick += [rs[i] for i in sorted(idx)]
    return load_arrays(pick, resolution, class_names=names, use_cache=False)


def cmd_run(args):
    from cytomodel.models import load_model
    from cytomodel.runtime import configure_runtime

    configure_runtime()
    model = load_model(args.model)
    data = balanced_sample(args.data, args.split, args.per_class, model.resolution, classes=model.class_names)
    cfg = ClassifierConfig(strategy="exhaustive", trials=args.trials, t_min=args.t_min, t_max=args.t_max,
                           weighting="uniform", precision=args.precision, seed=args.seed)
    t0 = time.time()
    est = estimate_errors(model, data.images, cfg, progress=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, trial_errors=est.draw_errors, timesteps=est.timesteps, labels=data.labels,
                        paths=np.array([str(r.path) for r in data.records]), class_names=np.array(model.class_names),
                        alphas_cumprod=model.scheduler.alphas_cumprod.numpy(),
                        meta=json.dumps({"model": str(args.model), "train_steps": model.metadata.get("train_steps"),
                                         "config": cfg.to_dict(), "split": args.split, "seconds": time.time() - t0,
                                         "unet_calls": int(est.unet_calls.sum())}))
    print(f"{len(data.images)} images, {est.unet_calls.sum()} UNet calls, {time.time() - t0:.0f} s -> {out}")


def _acc(errors, labels):
    return float(np.mean(errors.argmin(1) == labels))


def _bacc(errors, labels):
    pred = errors.argmin(1)
    return float(np.mean([np.mean(pred[labels == c] == c) for c in np.unique(labels)]))


def cmd_analyze(args):
    z = np.load(args.npz)
    te, ts, labels, alphas = z["trial_errors"], z["timesteps"], z["labels"], z["alphas_cumprod"]
    meta = json.loads(str(z["meta"]))
    n, k, c = te.shape
    print(f"{n} images, {k} trials, {c} classes; model step {meta['train_steps']}; split {meta['split']}")
    snr = alphas[ts] / (1 - alphas[ts])
    weights = {"uniform": np.ones_like(snr), "min-snr": np.minimum(snr, 5.0) / snr}
    print("\n## timestep window x weighting (all trials in the window; accuracy / balanced accuracy)")
    windows = [(0, 999), (20, 980), (50, 950), (100, 900), (200, 800), (300, 700), (0, 500), (250, 750),
               (500, 999), (100, 600)]
    for lo, hi in windows:
        row = []
        for wname, w in weights.items():
            m = ((ts >= lo) & (ts <= hi)).astype(float)[..., None]
            e = (te * w[..., None] * m).sum(1) / np.maximum(m.sum(1), 1)
            row.append(f"{wname}: {_acc(e, labels):.3f}/{_bacc(e, labels):.3f}")
        print(f"t in [{lo:3d},{hi:3d}] (~{int(((ts >= lo) & (ts <= hi)).sum(1).mean())} trials)  " + "  ".join(row))
    print("\n## trials (prefix, full range, uniform): accuracy")
    for kk in (2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128):
        if kk <= k:
            print(f"{kk:4d} trials ({kk * c} calls): {_acc(te[:, :kk].mean(1), labels):.3f}")
    full = ErrorEstimate(te.mean(1), te, ts, np.full(n, k), np.full(n, k * c))
    ref = _acc(full.errors, labels)
    print(f"\n## adaptive strategies replayed on these trials (exhaustive {k} trials: acc {ref:.3f}, {k * c} calls)")
    configs = []
    for trials in (24, 32, 48, 64):
        for min_trials in (4, 6, 8):
            for p in (2e-3, 1e-2):
                for every in (1, 2, 5):
                    configs.append(ClassifierConfig(strategy="paired-ttest", trials=trials, min_trials=min_trials,
                                                    p_value=p, test_every=every))
        for sched in (((4, 4), (10, 2)), ((2, 4), (6, 2)), ((4, 3), (12, 2)), ((6, 4), (16, 2)), ((4, 2),),
                      ((8, 2),), ((4, 4), (10, 2), (20, 1))):
            configs.append(ClassifierConfig(strategy="topk", trials=trials, topk_schedule=sched))
    rows = []
    for cfg in configs:
        if cfg.trials > k:
            continue
        r = replay_strategy(full, cfg)
        agree = float(np.mean(r.errors.argmin(1) == full.errors.argmin(1)))
        rows.append((r.unet_calls.mean(), _acc(r.errors, labels), agree, cfg))
    rows.sort(key=lambda r: r[0])
    for calls, acc, agree, cfg in rows:
        desc = (f"ttest trials={cfg.trials} min={cfg.min_trials} p={cfg.p_value:g} every={cfg.test_every}"
                if cfg.strategy == "paired-ttest" else f"topk trials={cfg.trials} schedule={list(cfg.topk_schedule)}")
        print(f"{calls:7.1f} calls/img ({k * c / calls:4.1f}x fewer)  acc {acc:.3f}  agrees with exhaustive "
              f"{agree:.3f}  {desc}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--model", required=True)
    r.add_argument("--data", required=True)
    r.add_argument("--split", default="val")
    r.add_argument("--per-class", type=int, default=8)
    r.add_argument("--trials", type=int, default=64)
    r.add_argument("--t-min", type=int, default=0)
    r.add_argument("--t-max", type=int, default=999)
    r.add_argument("--precision", default="bf16")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--out", required=True)
    r.set_defaults(func=cmd_run)
    a = sub.add_parser("analyze")
    a.add_argument("npz")
    a.set_defaults(func=cmd_analyze)
    args = ap.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
