"""Class fidelity: the share of generated images that the discriminative baseline assigns to the class they were
generated for, per class and overall, at several guidance scales (target >= 0.90 at 32 px, >= 0.95 for a 128-px
cascade judged by a 128-px baseline: pass --target).

    python benchmarks/quality_fidelity.py --model data/models/cpu-32 --n 32 --guidance 1 2 4 --steps 25

Reference figure printed alongside: the baseline's balanced accuracy on the same number of real test images per
class (what a perfect generator would score, up to sampling noise).
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from quality_common import (common_args, describe_model, generate_balanced, lanczos_resize, load_model_any, load_real,
                            model_info, setup_runtime, wilson_interval, write_json)

TARGET = 0.90  # the 32-px base model's target; a cascade's is 0.95 (--target 0.95)


def fidelity_table(pred: np.ndarray, labels: np.ndarray, class_names) -> dict:
    per = {c: float((pred[labels == i] == i).mean()) for i, c in enumerate(class_names) if (labels == i).any()}
    hits = int((pred == labels).sum())
    lo, hi = wilson_interval(hits, len(labels))
    assigned = np.bincount(pred, minlength=len(class_names)) / len(pred)
    return {"overall": hits / len(labels), "ci95": [lo, hi], "per_class": per,
            "assigned_share": dict(zip(class_names, assigned.round(4).tolist())), "n": int(len(labels))}


def main(argv=None) -> int:
    p = common_args(argparse.ArgumentParser(description=__doc__.split("\n\n")[0]))
    p.add_argument("--n", type=int, default=32, help="images per class per guidance (%(default)s)")
    p.add_argument("--guidance", type=float, nargs="+", default=[1.0, 2.0, 4.0], help="(%(default)s)")
    p.add_argument("--target", type=float, default=TARGET, help="fidelity to meet (%(default)s)")
    p.add_argument("--resize-for-judge", action="store_true",
                   help="judge cells resized (Lanczos) to the baseline's size when it was trained at another one: a "
                        "coarse check that a cascade keeps the class, not a fidelity figure at the cascade's size")
    args = p.parse_args(argv)
    setup_runtime()
    from cytomodel.evaluate import load_baseline

    t0 = time.time()
    model = load_model_any(args.model)
    clf = load_baseline(args.baseline)
    if clf.class_names != model.class_names or (clf.resolution != model.resolution and not args.resize_for_judge):
        raise SystemExit(f"baseline ({clf.resolution}px, {clf.class_names}) does not match the model "
                         f"({model.resolution}px, {model.class_names}); train a baseline at the model's size "
                         "(`cytomodel baseline train --resolution N --stem-stride 4`) or pass --resize-for-judge")
    judge = lambda x: clf.predict(lanczos_resize(x, clf.resolution))  # noqa: E731
    info = model_info(model)
    print(f"{describe_model(args.model, info)}; baseline {args.baseline}")
    results = {"model": str(args.model), "model_info": info, "baseline": str(args.baseline), "n_per_class": args.n,
               "steps": args.steps, "superres_steps": args.superres_steps, "precision": args.precision, "seed": args.seed,
               "target": args.target, "guidance": {},
               "judge_input_px": clf.resolution, "resized_for_judge": clf.resolution != model.resolution}

    # reference: the baseline on n real test images per class (balanced, first n of each class in manifest order)
    try:
        test = load_real(args.data, "test", model.resolution, model.class_names, model.crop_fraction)
        idx = np.concatenate([np.flatnonzero(test.labels == c)[:args.n] for c in range(len(model.class_names))])
        ref = fidelity_table(judge(test.images[idx]), test.labels[idx], model.class_names)
        results["real_test_reference"] = ref
    except Exception as exc:  # real data are optional for this figure
        ref = None
        print(f"(no real-data reference: {exc})")

    for g in args.guidance:
        images, labels = generate_balanced(model, args.model, args.n, g, args.steps, args.precision, args.seed,
                                           not args.no_cache, superres_steps=args.superres_steps)
        results["guidance"][f"{g:g}"] = fidelity_table(judge(images), labels, model.class_names)

    names = model.class_names
    cols = [f"g={g}" for g in results["guidance"]] + (["real test"] if ref else [])
    tables = list(results["guidance"].values()) + ([ref] if ref else [])
    print(f"\nclass fidelity (share assigned to the intended class by the baseline), n={args.n} per class, "
          f"{args.steps} DDIM steps, {args.precision}")
    print(f"{'class':<14}" + "".join(f"{c:>11}" for c in cols))
    for c in names:
        print(f"{c:<14}" + "".join(f"{t['per_class'].get(c, float('nan')):>11.3f}" for t in tables))
    print(f"{'overall':<14}" + "".join(f"{t['overall']:>11.3f}" for t in tables))
    print(f"{'95% CI':<14}" + "".join(f"{'%.2f-%.2f' % tuple(t['ci95']):>11}" for t in tables))
    for g, t in results["guidance"].items():
        verdict = "meets" if t["overall"] >= args.target else "BELOW"
        print(f"guidance {g}: fidelity {t['overall']:.3f} {verdict} the {args.target:.2f} target")
    print(f"({time.time() - t0:.0f}s)")
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
