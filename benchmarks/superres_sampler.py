"""Sharper synthetic cells from the sampler alone (issue 21, item 7): the super-resolution stage's settings compared
on the *same* base-stage cells, against real test cells.

    python benchmarks/superres_sampler.py --model data/models/cascade-128 --n 16 \\
        --settings steps=20,eta=0 steps=20,eta=1 steps=50,eta=1 steps=20,eta=0,level=0

Each setting is ``steps=S,eta=E[,level=L]`` (DDIM steps of the second stage, DDIM η — 0 deterministic, 1 ancestral —
and the conditioning augmentation level at sampling; default level: the stage's own). Every setting redraws the
detail of the same low-resolution cells (the base stage's samples, seeds seed..seed+n-1 per class), so differences
are the sampler's. Reported per setting: the power ratio to real test cells in the four frequency bands of
``quality_spectrum.py`` (95 % bootstrap intervals), and the sharpness ratio (mean variance of the Laplacian of the
grey image, generated / real) — the content-confound check's strongest cue — with the seconds it took.
Targets (issue 21): power ratio >= 0.85 in every band; sharpness not a tell.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from quality_common import common_args, generate_balanced, load_model_any, load_real, setup_runtime, write_json
from quality_spectrum import band_edges, band_ratios, radial_power


def parse_setting(text: str) -> dict:
    out = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        if key not in ("steps", "eta", "level"):
            raise SystemExit(f"--settings {text!r}: unknown key {key!r} (steps, eta, level)")
        out[key] = int(value) if key == "steps" else float(value)
    return out


def laplacian_variance(images: np.ndarray) -> np.ndarray:
    """Per image: the variance of the 4-neighbour Laplacian of the grey image (a standard focus measure)."""
    g = images.astype(np.float64).mean(axis=3) / 255.0
    lap = (g[:, 1:-1, :-2] + g[:, 1:-1, 2:] + g[:, :-2, 1:-1] + g[:, 2:, 1:-1] - 4 * g[:, 1:-1, 1:-1])
    return lap.reshape(len(g), -1).var(axis=1)


def main(argv=None) -> int:
    p = common_args(argparse.ArgumentParser(description=__doc__.split("\n\n")[0]))
    p.add_argument("--n", type=int, default=16, help="cells per class (%(default)s)")
    p.add_argument("--guidance", type=float, default=2.0)
    p.add_argument("--settings", nargs="+", default=["steps=20,eta=0", "steps=20,eta=1"])
    args = p.parse_args(argv)
    setup_runtime()
    from cytomodel.pipelines.superres import super_resolve

    cascade = load_model_any(args.model)
    if getattr(cascade, "STAGE", "") != "cascade":
        raise SystemExit(f"{args.model} is not a cascade")
    real = load_real(args.data, "test", cascade.resolution, cascade.class_names, cascade.crop_fraction)
    rng = np.random.default_rng(args.seed)
    pick = np.concatenate([rng.permutation(np.flatnonzero(real.labels == c))[:4 * args.n]
                           for c in range(len(cascade.class_names))])
    real_imgs = real.images[pick]
    real_prof, freqs = radial_power(real_imgs)
    real_sharp = laplacian_variance(real_imgs).mean()
    low, labels = generate_balanced(cascade.base, Path(args.model) / "base", args.n, args.guidance, args.steps,
                                    args.precision, args.seed, not args.no_cache)
    seeds = [args.seed + i for _ in cascade.class_names for i in range(args.n)]
    bands = band_edges(cascade.resolution, cascade.low_resolution)
    print(f"{len(low)} base cells ({args.n} per class), {len(real_imgs)} real test cells; power ratio per band "
          f"(cycles/px), sharpness = Laplacian variance ratio")
    print(f"{'setting':<26}" + "".join(f"{f'{lo:.3f}-{min(hi, 0.5):.3f}':>20}" for lo, hi in bands)
          + f"{'sharpness':>11}{'s':>7}")
    results = {"model": str(args.model), "n_per_class": args.n, "real": len(real_imgs), "bands": bands,
               "settings": []}
    for text in args.settings:
        s = parse_setting(text)
        t0 = time.perf_counter()
        imgs = super_resolve(cascade.superres, low, [int(c) for c in labels], seeds, steps=s.get("steps", 20),
                             level=s.get("level"), precision=args.precision, eta=s.get("eta", 0.0))
        secs = time.perf_counter() - t0
        prof, _ = radial_power(imgs)
        r = band_ratios(prof, real_prof, freqs, bands, seed=args.seed)
        sharp = float(laplacian_variance(imgs).mean() / real_sharp)
        results["settings"].append({"setting": s, "ratios": r, "sharpness_ratio": sharp, "seconds": round(secs, 1)})
        print(f"{text:<26}" + "".join(f"{b['ratio']:>7.3f} ({b['ci95'][0]:.2f}-{b['ci95'][1]:.2f})" for b in r)
              + f"{sharp:>11.3f}{secs:>7.0f}", flush=True)
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
