"""Memorisation: the share of generated images whose nearest training image is a near copy (target <= 1 %).

    python benchmarks/quality_memorisation.py --model data/models/cpu-32 --n 64 --guidance 2 --steps 25

Distance to the nearest training image, invariant to the 8 flips/rotations (the diffusion model trains with them):
  * pixel space: RMS difference of the RGB pixels, in 0-255 units;
  * feature space: 1 - cosine similarity of the baseline classifier's penultimate features.
"Near copy" threshold, calibrated on real data instead of picked by eye: the 1st percentile of the same distance
for held-out real *validation* images to the training set (real cells that are not copies, so about 1 % of real
held-out cells fall below it). The *test* images get the same treatment as an independent reference: a generator
that does not copy should score about what real test cells score (~1 %). Also printed: median nearest-neighbour
distances (generated much closer to the training set than real held-out cells = copying; much farther = off the
data manifold), and ``--out DIR`` writes the closest generated/training pairs as a PNG to look at.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from quality_common import (common_args, describe_model, dihedral_views, generate_balanced, lanczos_resize,
                            load_model_any, load_real, model_info, setup_runtime, wilson_interval, write_json)

TARGET = 0.01
PERCENTILE = 1.0


def nearest(queries: np.ndarray, bank: np.ndarray, metric: str, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Distance to, and index of, the nearest ``bank`` row for each query row (float32 vectors).
    metric 'rms': root-mean-square difference; 'cos': 1 - cosine similarity."""
    b = torch.from_numpy(np.ascontiguousarray(bank, dtype=np.float32))
    if metric == "cos":
        b = torch.nn.functional.normalize(b, dim=1)
    else:  # centred on the bank mean: smaller norms, less float32 cancellation in |q|^2 - 2 q.b + |b|^2
        centre = b.mean(0, keepdim=True)
        b = b - centre
        bn = (b * b).sum(1)
    dims = b.shape[1]
    dist, idx = [], []
    for s in range(0, len(queries), chunk):
        q = torch.from_numpy(np.ascontiguousarray(queries[s:s + chunk], dtype=np.float32))
        if metric == "cos":
            sim = torch.nn.functional.normalize(q, dim=1) @ b.T
            best, arg = sim.max(1)
            d = 1 - best
        else:
            q = q - centre
            d2 = (q * q).sum(1, keepdim=True) - 2 * q @ b.T + bn
            best, arg = d2.min(1)
            d = (best.clamp_min(0) / dims).sqrt()
        dist.append(d.numpy())
        idx.append(arg.numpy())
    return np.concatenate(dist), np.concatenate(idx)


def nn_dihedral(images: np.ndarray, bank: np.ndarray, embed) -> tuple[np.ndarray, np.ndarray]:
    """Nearest neighbour over the 8 symmetries of each query image (equivalent to symmetrising the bank)."""
    best_d = np.full(len(images), np.inf, np.float32)
    best_i = np.zeros(len(images), np.int64)
    for view in dihedral_views(images):
        d, i = embed(view, bank)
        better = d < best_d
        best_d[better], best_i[better] = d[better], i[better]
    return best_d, best_i


def main(argv=None) -> int:
    p = common_args(argparse.ArgumentParser(description=__doc__.split("\n\n")[0]))
    p.add_argument("--n", type=int, default=64, help="generated images per class (%(default)s)")
    p.add_argument("--guidance", type=float, default=2.0, help="(%(default)s)")
    p.add_argument("--n-real", type=int, default=1000, help="val (calibration) and test (reference) images (%(default)s)")
    p.add_argument("--out", help="folder for closest-pairs.png")
    args = p.parse_args(argv)
    setup_runtime()
    from cytomodel.evaluate import load_baseline

    t0 = time.time()
    model = load_model_any(args.model)
    clf = load_baseline(args.baseline)
    info = model_info(model)
    load = lambda s: load_real(args.data, s, model.resolution, model.class_names, model.crop_fraction)  # noqa: E731
    train, val, test = load("train"), load("val"), load("test")
    rng = np.random.default_rng(args.seed)
    pick = lambda d: d.images[np.sort(rng.permutation(len(d.images))[:args.n_real])]  # noqa: E731
    val_x, test_x = pick(val), pick(test)
    gen, gen_labels = generate_balanced(model, args.model, args.n, args.guidance, args.steps, args.precision,
                                        args.seed, not args.no_cache, superres_steps=args.superres_steps)

    train_pix = train.images.reshape(len(train.images), -1).astype(np.float32)
    # the judge sees every image at its own size (a 128-px cascade's cells are resized to the 32-px baseline's input)
    judge = lambda x: clf.features(lanczos_resize(x, clf.resolution), precision="bf16")  # noqa: E731
    train_feat = judge(train.images)

    def pix(view, bank):
        return nearest(view.reshape(len(view), -1).astype(np.float32), bank, "rms")

    def feat(view, bank):
        return nearest(judge(view), bank, "cos")

    results = {"model": str(args.model), "model_info": info, "baseline": str(args.baseline),
               "n_generated": int(len(gen)), "guidance": args.guidance, "steps": args.steps,
               "precision": args.precision, "n_train": int(len(train.images)), "n_val": int(len(val_x)),
               "n_test": int(len(test_x)), "target": TARGET,
               "threshold_definition": f"{PERCENTILE:g}th percentile of held-out real val images' "
                                       "dihedral-invariant nearest-training-image distance", "spaces": {}}
    flags = {}
    nn_idx = {}
    for space, embed, bank in (("pixel", pix, train_pix), ("feature", feat, train_feat)):
        d_val, _ = nn_dihedral(val_x, bank, embed)
        d_test, _ = nn_dihedral(test_x, bank, embed)
        d_gen, i_gen = nn_dihedral(gen, bank, embed)
        tau = float(np.percentile(d_val, PERCENTILE))
        flags[space] = d_gen < tau
        nn_idx[space] = (d_gen, i_gen)
        k = int(flags[space].sum())
        results["spaces"][space] = {
            "threshold": tau, "generated_near_copies": k, "generated_rate": k / len(gen),
            "generated_rate_ci95": list(wilson_interval(k, len(gen))),
            "test_reference_rate": float((d_test < tau).mean()),
            "median_nn_distance": {"generated": float(np.median(d_gen)), "val": float(np.median(d_val)),
                                   "test": float(np.median(d_test))},
            "min_nn_distance_generated": float(d_gen.min()),
            "per_class_rate": {c: float(flags[space][gen_labels == i].mean()) for i, c in
                               enumerate(model.class_names)},
        }
    either = flags["pixel"] | flags["feature"]
    results["either_rate"] = float(either.mean())
    results["either_count"] = int(either.sum())

    unit = {"pixel": "RMS, 0-255", "feature": "1-cos"}
    print(f"{describe_model(args.model, info)}; {len(gen)} generated (guidance {args.guidance:g}, "
          f"{args.steps} steps) vs {len(train.images)} training images; threshold = {PERCENTILE:g}st percentile "
          f"of {len(val_x)} real val images' nearest-training distance (8 flips/rotations)")
    for space, r in results["spaces"].items():
        med = r["median_nn_distance"]
        verdict = "meets" if r["generated_rate"] <= TARGET else "ABOVE"
        print(f"{space:>8} ({unit[space]}): threshold {r['threshold']:.4g}; near copies {r['generated_near_copies']}/"
              f"{len(gen)} = {r['generated_rate']:.2%} (95% CI {r['generated_rate_ci95'][0]:.2%}-"
              f"{r['generated_rate_ci95'][1]:.2%}) {verdict} the {TARGET:.0%} target; real test cells: "
              f"{r['test_reference_rate']:.2%}; median NN distance generated {med['generated']:.4g} / "
              f"real test {med['test']:.4g} / real val {med['val']:.4g}")
    print(f"near copy in pixel OR feature space: {results['either_count']}/{len(gen)} = {results['either_rate']:.2%}"
          f"  ({time.time() - t0:.0f}s)")
    if args.out:
        from pathlib import Path
        from cytomodel.pipelines import image_grid
        d, i = nn_idx["pixel"]
        order = np.argsort(d)[:16]
        pairs = np.concatenate([gen[order], train.images[i[order]]])
        Path(args.out).mkdir(parents=True, exist_ok=True)
        image_grid(pairs, rows=2, upscale=3).save(Path(args.out) / "closest-pairs.png")
        print(f"wrote {args.out}/closest-pairs.png (top: the 16 generated images closest to a training image in "
              f"pixel space; bottom: that training image, unrotated)")
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
