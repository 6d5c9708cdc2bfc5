"""High-frequency realism: the radially averaged power spectrum of generated vs real cells, per frequency band.

    python benchmarks/quality_spectrum.py --model data/models/cascade-128 --n 64

An over-smooth second stage shows as a ratio below 1 in the high bands, an over-sharp (noisy) one above 1. Bands in
cycles per pixel of the cascade's output; everything above the base stage's Nyquist frequency (0.125 c/px for
32 -> 128 px) must come from the super-resolution stage. References printed beside the generated cells: the base
stage's own samples (same seeds) upscaled bicubically — what the cells would be without a second stage — and a
second, disjoint set of real test cells (the ratio a perfect generator would get, up to sampling noise).

Per image and channel: subtract the mean, apply a 2-D Hann window, |FFT|^2, average over rings of equal radius.
A band's power is the mean over its rings; the ratio is generated / real, with a 95 % bootstrap interval over images.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from quality_common import (bicubic_upscale, common_args, describe_model, generate_balanced, load_model_any,
                            load_real, model_info, setup_runtime, write_json)


def radial_power(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W, 3) uint8 -> per-image radially averaged power (N, R) and the ring frequencies (R,) in cycles/px."""
    x = images.astype(np.float64) / 255.0
    n, h, w, _ = x.shape
    x = x - x.mean(axis=(1, 2), keepdims=True)
    window = np.outer(np.hanning(h), np.hanning(w))[None, :, :, None]
    power = np.abs(np.fft.fftshift(np.fft.fft2(x * window, axes=(1, 2)), axes=(1, 2))) ** 2
    power = power.mean(axis=3)                                       # over colour channels
    fy = np.fft.fftshift(np.fft.fftfreq(h))[:, None]
    fx = np.fft.fftshift(np.fft.fftfreq(w))[None, :]
    radius = np.sqrt(fx ** 2 + fy ** 2)
    ring = np.minimum((radius * h).round().astype(int), h // 2)     # ring k holds frequency k / h
    counts = np.bincount(ring.ravel(), minlength=h // 2 + 1)
    prof = np.stack([np.bincount(ring.ravel(), weights=p.ravel(), minlength=h // 2 + 1) for p in power]) / counts
    return prof[:, 1:], np.arange(1, h // 2 + 1) / h                  # drop the DC ring


def band_edges(resolution: int, low_resolution: int | None) -> list[tuple[float, float]]:
    nyq_low = 0.5 * (low_resolution / resolution) if low_resolution else 0.125
    return [(0.0, nyq_low / 2), (nyq_low / 2, nyq_low), (nyq_low, 2 * nyq_low), (2 * nyq_low, 0.5 + 1e-9)]


def band_ratios(gen: np.ndarray, real: np.ndarray, freqs: np.ndarray, bands, seed: int = 0,
                reps: int = 2000) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for lo, hi in bands:
        sel = (freqs > lo) & (freqs <= hi)
        g, r = gen[:, sel].mean(1), real[:, sel].mean(1)
        ratio = g.mean() / r.mean()
        boot = [g[rng.integers(0, len(g), len(g))].mean() / r[rng.integers(0, len(r), len(r))].mean()
                for _ in range(reps)]
        out.append({"band": [round(lo, 4), round(min(hi, 0.5), 4)], "ratio": float(ratio),
                    "ci95": [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))]})
    return out


def main(argv=None) -> int:
    p = common_args(argparse.ArgumentParser(description=__doc__.split("\n\n")[0]))
    p.add_argument("--n", type=int, default=64, help="generated and real images per class (%(default)s)")
    p.add_argument("--guidance", type=float, default=2.0, help="(%(default)s)")
    p.add_argument("--plot", help="write the spectra as a figure (PNG or SVG) here")
    args = p.parse_args(argv)
    setup_runtime()
    t0 = time.time()
    model = load_model_any(args.model)
    info = model_info(model)
    cascade = getattr(model, "STAGE", "base") == "cascade"
    real = load_real(args.data, "test", model.resolution, model.class_names, model.crop_fraction)
    rng = np.random.default_rng(args.seed)
    idx_a, idx_b = [], []
    for c in range(len(model.class_names)):
        idx = rng.permutation(np.flatnonzero(real.labels == c))
        idx_a.append(idx[:args.n])
        idx_b.append(idx[args.n:2 * args.n])
    real_a, real_b = real.images[np.concatenate(idx_a)], real.images[np.concatenate(idx_b)]
    gen, _ = generate_balanced(model, args.model, args.n, args.guidance, args.steps, args.precision, args.seed,
                               not args.no_cache, superres_steps=args.superres_steps)
    sets = {"generated": gen, "real (second set)": real_b}
    if cascade:
        low, _ = generate_balanced(model.base, Path(args.model) / "base", args.n, args.guidance, args.steps,
                                   args.precision, args.seed, not args.no_cache)
        sets["bicubic-upscaled base samples"] = bicubic_upscale(low, model.resolution)
    bands = band_edges(model.resolution, model.low_resolution if cascade else None)
    real_prof, freqs = radial_power(real_a)
    results = {"model": str(args.model), "model_info": info, "n_per_class": args.n, "guidance": args.guidance,
               "steps": args.steps, "superres_steps": args.superres_steps, "bands_cycles_per_px": bands,
               "ratios": {}, "profiles": {"frequency": freqs.tolist(), "real": real_prof.mean(0).tolist()}}
    print(describe_model(args.model, info))
    print(f"power ratio (set / {len(real_a)} real test cells) per band, cycles/px of {model.resolution}-px images")
    print(f"{'set':<32}" + "".join(f"{f'{lo:.3f}-{min(hi, 0.5):.3f}':>22}" for lo, hi in bands))
    for name, imgs in sets.items():
        prof, _ = radial_power(imgs)
        results["profiles"][name] = prof.mean(0).tolist()
        r = band_ratios(prof, real_prof, freqs, bands, seed=args.seed)
        results["ratios"][name] = r
        print(f"{name:<32}" + "".join(f"{b['ratio']:>9.3f} ({b['ci95'][0]:.2f}-{b['ci95'][1]:.2f})" for b in r))
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.loglog(freqs, results["profiles"]["real"], label="real test cells", color="k")
        for name in sets:
            ax.loglog(freqs, results["profiles"][name], label=name)
        for lo, _ in bands[1:]:
            ax.axvline(lo, color="0.8", lw=0.8)
        ax.set_xlabel("frequency (cycles / pixel)")
        ax.set_ylabel("radially averaged power")
        ax.legend(frameon=False, fontsize=8)
        fig.tight_layout()
        fig.savefig(args.plot)
        print(f"wrote {args.plot}")
    print(f"({time.time() - t0:.0f}s)")
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
