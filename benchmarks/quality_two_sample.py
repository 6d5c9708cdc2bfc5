"""Two-sample classifier test: can a fresh small CNN tell held-out real test images from generated ones?

    python benchmarks/quality_two_sample.py --model data/models/cpu-32 --n 128 --guidance 2 --steps 25

Real: ``n`` test-split images per class (class-balanced, never seen by the diffusion model). Generated: ``n`` per class
at one guidance scale. Both sets are split in two disjoint halves (stratified by class); a fresh CNN (the baseline's
ResNetSmall architecture, narrower, dihedral augmentation only, no colour jitter so colour differences stay visible)
is trained on one half and scored on the other, then the halves swap (2-fold cross-fitting). Reported: accuracy on
unseen images, pooled over both folds, with a 95 % interval. 0.5 = indistinguishable; aim <= 0.75 at 32 px (issue 2),
<= 0.80 for a 128-px cascade (issue 12).

For a cascade, ``--floor`` also runs the same test on the base stage's own samples (same seeds) upscaled bicubically
to the cascade's size: what the cells would look like without a super-resolution stage, the floor it must beat.
``--stem-stride 2`` (or 4) gives the detector a strided stem so that 128-px images train at a bearable cost; the
same detector is used for every comparison of one run.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from quality_common import (bicubic_upscale, common_args, describe_model, generate_balanced, load_model_any, load_real,
                            model_info, setup_runtime, wilson_interval, write_json)

AIM = {32: 0.75, 128: 0.80}


def train_detector(x: np.ndarray, y: np.ndarray, epochs: int, seed: int, widths=(16, 32, 64), stem_stride: int = 1):
    """A fresh ResNetSmall with two outputs (0 = real, 1 = generated), trained with flips/rotations only."""
    from cytomodel.data import ImageArrays
    from cytomodel.evaluate import train_baseline

    data = ImageArrays(x, y, ["real", "generated"], [], "two-sample")
    batch = min(64, max(8, len(x) // 8))  # small sets still get several steps per epoch
    extra = {"stem_stride": stem_stride} if stem_stride != 1 else {}
    return train_baseline(data, epochs=epochs, batch_size=batch, seed=seed, progress=False, lr=2e-3,
                          widths=widths, blocks=(1, 1, 1), color_jitter=0.0, label_smoothing=0.0, **extra)


def two_sample_test(real: np.ndarray, real_labels: np.ndarray, fake: np.ndarray, fake_labels: np.ndarray,
                    epochs: int = 15, seed: int = 0, stem_stride: int = 1) -> dict:
    rng = np.random.default_rng(seed)

    def halves(labels):
        a = np.zeros(len(labels), bool)
        for c in np.unique(labels):
            idx = rng.permutation(np.flatnonzero(labels == c))
            a[idx[: len(idx) // 2]] = True
        return a

    ra, fa = halves(real_labels), halves(fake_labels)
    folds, correct, total = [], 0, 0
    for k, (rs, fs) in enumerate([(ra, fa), (~ra, ~fa)]):
        xtr = np.concatenate([real[rs], fake[fs]])
        ytr = np.concatenate([np.zeros(rs.sum(), np.int64), np.ones(fs.sum(), np.int64)])
        xte = np.concatenate([real[~rs], fake[~fs]])
        yte = np.concatenate([np.zeros((~rs).sum(), np.int64), np.ones((~fs).sum(), np.int64)])
        det = train_detector(xtr, ytr, epochs, seed + k, stem_stride=stem_stride)
        pred = det.predict(xte)
        hit = int((pred == yte).sum())
        folds.append({"train": int(len(ytr)), "test": int(len(yte)), "accuracy": hit / len(yte),
                      "real_called_real": float((pred[yte == 0] == 0).mean()),
                      "generated_called_generated": float((pred[yte == 1] == 1).mean())})
        correct += hit
        total += len(yte)
    lo, hi = wilson_interval(correct, total)
    return {"accuracy": correct / total, "ci95": [lo, hi], "n_scored": total, "folds": folds}


def main(argv=None) -> int:
    p = common_args(argparse.ArgumentParser(description=__doc__.split("\n\n")[0]))
    p.add_argument("--n", type=int, default=128, help="real and generated images per class (%(default)s)")
    p.add_argument("--guidance", type=float, default=2.0, help="(%(default)s)")
    p.add_argument("--epochs", type=int, default=15, help="detector training epochs (%(default)s)")
    p.add_argument("--real-split", default="test", help="held-out real images (%(default)s)")
    p.add_argument("--stem-stride", type=int, default=1, help="detector stem stride (1 = full resolution)")
    p.add_argument("--floor", action="store_true", help="cascade only: also test bicubic-upscaled base samples")
    args = p.parse_args(argv)
    setup_runtime()

    t0 = time.time()
    model = load_model_any(args.model)
    info = model_info(model)
    aim = AIM.get(model.resolution, AIM[128])
    real = load_real(args.data, args.real_split, model.resolution, model.class_names, model.crop_fraction)
    idx = np.concatenate([np.flatnonzero(real.labels == c)[:args.n] for c in range(len(model.class_names))])
    counts = np.bincount(real.labels[idx], minlength=len(model.class_names))
    n_gen = int(counts.max())
    # same class mix as the real set (a class short of n real images gets as few generated ones)
    keep = lambda labels: np.concatenate([np.flatnonzero(labels == c)[:counts[c]]  # noqa: E731
                                          for c in range(len(counts))])
    fake, fake_labels = generate_balanced(model, args.model, n_gen, args.guidance, args.steps, args.precision,
                                          args.seed, not args.no_cache, superres_steps=args.superres_steps)
    fake, fake_labels = fake[keep(fake_labels)], fake_labels[keep(fake_labels)]
    sets = {"generated": (fake, fake_labels)}
    if args.floor:
        if getattr(model, "STAGE", "base") != "cascade":
            raise SystemExit("--floor needs a cascade (it upscales the base stage's samples to the cascade's size)")
        low, low_labels = generate_balanced(model.base, Path(args.model) / "base", n_gen, args.guidance, args.steps,
                                            args.precision, args.seed, not args.no_cache)
        low, low_labels = low[keep(low_labels)], low_labels[keep(low_labels)]
        sets["bicubic-upscaled base samples"] = (bicubic_upscale(low, model.resolution), low_labels)
    print(describe_model(args.model, info))
    results = {"model": str(args.model), "model_info": info, "guidance": args.guidance, "steps": args.steps,
               "superres_steps": args.superres_steps, "precision": args.precision, "n_real": int(len(idx)),
               "aim": aim, "real_split": args.real_split, "stem_stride": args.stem_stride,
               "resolution": model.resolution, "epochs": args.epochs, "tests": {}}
    for name, (x, labels) in sets.items():
        res = two_sample_test(real.images[idx], real.labels[idx], x, labels, args.epochs, args.seed,
                              stem_stride=args.stem_stride)
        res["n_generated"] = int(len(x))
        results["tests"][name] = res
        print(f"two-sample classifier test, {name}: {len(idx)} real {args.real_split} vs {len(x)} "
              f"(guidance {args.guidance:g}, {args.steps} steps, {args.precision}), {model.resolution} px, 2-fold, "
              f"{args.epochs} epochs, detector stem stride {args.stem_stride}")
        for k, f in enumerate(res["folds"]):
            print(f"  fold {k}: accuracy {f['accuracy']:.3f} on {f['test']} unseen images (real called real "
                  f"{f['real_called_real']:.3f}, generated called generated {f['generated_called_generated']:.3f})")
        verdict = "within" if res["accuracy"] <= aim else "ABOVE"
        print(f"  accuracy on unseen images: {res['accuracy']:.3f} (95% CI {res['ci95'][0]:.3f}-"
              f"{res['ci95'][1]:.3f}; 0.5 = indistinguishable) {verdict} the {aim} aim")
    print(f"({time.time() - t0:.0f}s)")
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
