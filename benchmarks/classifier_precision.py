"""Do bf16 and fp32 rank the classes the same? Same images, same trials, both precisions (exhaustive).

    nice -n 15 env OMP_NUM_THREADS=1 CYTOMODEL_THREADS=1 python benchmarks/classifier_precision.py \\
        --model /work/runs/cpu-32/model --data ../shared/data/pbc --split val --per-class 2 --trials 16
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main():
    from scipy.stats import spearmanr

    from cytomodel.classify import ClassifierConfig, estimate_errors
    from cytomodel.evaluate.evaluation import _arrays, balanced_items
    from cytomodel.models import load_model
    from cytomodel.runtime import configure_runtime

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--per-class", type=int, default=2)
    ap.add_argument("--trials", type=int, default=16)
    args = ap.parse_args()
    configure_runtime()
    model = load_model(args.model)
    items = balanced_items(args.data, args.split, args.per_class, model.class_names)
    images, _ = _arrays(items, model.resolution)
    res, secs = {}, {}
    for prec in ("fp32", "bf16"):
        t0 = time.perf_counter()
        res[prec] = estimate_errors(model, images, ClassifierConfig(strategy="exhaustive", trials=args.trials,
                                                                    precision=prec))
        secs[prec] = time.perf_counter() - t0
    a, b = res["fp32"], res["bf16"]
    same_top = float(np.mean(a.errors.argmin(1) == b.errors.argmin(1)))
    rhos = [spearmanr(x, y).statistic for x, y in zip(a.errors, b.errors)]
    te_a, te_b = a.draw_errors, b.draw_errors
    rel = np.abs(te_b - te_a) / np.abs(te_a)
    gaps_a = np.sort(a.errors, 1)[:, 1] - np.sort(a.errors, 1)[:, 0]
    dev = np.abs((b.errors - a.errors) - (b.errors - a.errors).mean(1, keepdims=True)).max(1)
    print(f"model step {model.metadata.get('train_steps')}, {len(images)} {args.split} images, {args.trials} trials x "
          f"{len(model.class_names)} classes")
    print(f"same predicted class: {same_top:.3f}; Spearman rank correlation of the class errors per image: median "
          f"{np.median(rhos):.3f}, min {np.min(rhos):.3f}")
    print(f"per-(trial, class) relative error difference: median {np.median(rel):.2e}, 99th pct "
          f"{np.quantile(rel, 0.99):.2e}; class-relative shift of mean errors vs best-vs-runner-up gap: median "
          f"{np.median(dev / gaps_a):.3f}")
    print(f"time: fp32 {secs['fp32']:.1f} s, bf16 {secs['bf16']:.1f} s ({secs['fp32'] / secs['bf16']:.2f}x)")


if __name__ == "__main__":
    main()
