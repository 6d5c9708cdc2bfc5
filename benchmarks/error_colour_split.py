"""Probe (issue 23): does another lab's stain move the diffusion classifier through the *colour* of its denoising
error, and would scoring only the error's luminance (or only some noise levels) carry across labs?

Each cell's squared residual ε − ε_θ is split in an orthonormal colour basis into its luminance part (the mean over
R, G, B, on every channel) and its chromatic part (the rest): the two add up to the classifier's whole-image error.
Exhaustive draws (the classifier's timesteps, noise and dihedral views, ``--trials`` of them) for every candidate
class are stored per image, so any mix ``luminance + β · chroma`` and any timestep range can be scored offline from
one pass: choose on PBC val, read the other labs. Cells are framed by the model's intake (``--stain``, default the
classifier's ``auto``).

    python benchmarks/error_colour_split.py --datasets pbc_val bccd tecom --out docs/results/error-colour-split
    python benchmarks/error_colour_split.py --score --out docs/results/error-colour-split
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

BETAS = [0.0, 0.25, 0.5, 1.0, 2.0, 4.0]          # chroma weight; 1.0 is the classifier's whole-image error
T_RANGES = [(100, 900), (100, 500), (300, 700), (500, 900), (100, 300), (700, 900)]


@torch.no_grad()
def split_errors(model, arr: np.ndarray, cand: list[int], trials: int, seed: int, batch: int = 32):
    """(N, K, C, 2) luminance / chroma mean squared residuals and (N, K) timesteps, exhaustive over ``cand``."""
    from cytomodel.classify import ClassifierConfig
    from cytomodel.classify.draw_plan import dihedral, draw_plan
    from cytomodel.runtime import autocast

    cfg = ClassifierConfig(strategy="exhaustive", trials=trials, seed=seed).validate()
    alphas = model.scheduler.alphas_cumprod.float()
    n_t = model.scheduler.config.num_train_timesteps
    res = model.resolution
    out = np.zeros((len(arr), trials, len(cand), 2), dtype=np.float64)
    ts_all = np.zeros((len(arr), trials), dtype=np.int64)
    labels = torch.tensor(cand)
    model.unet.eval()
    for b0 in range(0, len(arr), batch):
        idx = list(range(b0, min(len(arr), b0 + batch)))
        x0 = model.encode(arr[idx]).float()
        xs, tt, eps_l = [], [], []
        for j, i in enumerate(idx):
            g, ts, views = draw_plan(arr[i], cfg, n_t)
            ts_all[i] = ts
            for k in range(trials):
                eps = torch.randn((3, res, res), generator=g)
                a = alphas[int(ts[k])]
                xs.append(a.sqrt() * dihedral(x0[j], int(views[k])) + (1 - a).sqrt() * eps)
                tt.append(int(ts[k]))
                eps_l.append(eps)
        xs, tt, eps_t = torch.stack(xs), torch.tensor(tt), torch.stack(eps_l)
        for ci, c in enumerate(cand):
            errs = []
            for s in range(0, len(xs), 256):
                sl = slice(s, s + 256)
                with autocast(model.device, "bf16"), model.lab_condition("none"):
                    pred = model.unet(xs[sl], tt[sl], class_labels=labels[ci].repeat(len(xs[sl]))).sample
                r = eps_t[sl] - pred.float()
                lum = r.mean(dim=1, keepdim=True)      # the residual's projection on grey, per pixel (on each channel)
                e_l = lum.pow(2).mean(dim=(1, 2, 3))   # e_l + e_c: the mean squared residual over (c, h, w)
                e_c = (r - lum).pow(2).mean(dim=(1, 2, 3))
                errs.append(torch.stack([e_l, e_c], dim=1))
            e = torch.cat(errs).view(len(idx), trials, 2).numpy()
            out[idx, :, ci, :] = e
    return out, ts_all


def compute(a) -> None:
    from cross_lab import datasets
    from cytomodel.data import framed_arrays
    from cytomodel.models import load_base
    from cytomodel.runtime import configure_runtime

    configure_runtime()
    model = load_base(a.model)
    data = datasets(Path(a.shared))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in a.datasets:
        path = out / f"{name}.npz"
        if path.is_file():
            print(f"{name}: cached ({path})")
            continue
        items, classes = data[name]
        classes = classes or model.class_names
        cells = model.intake(stain=a.stain).frame([p for p, _ in items])
        arr, keep = framed_arrays(cells, model.resolution)
        labels = np.array([classes.index(items[i][1]) for i in keep])
        t0 = time.perf_counter()
        e, ts = split_errors(model, arr, [model.class_index(c) for c in classes], a.trials, a.seed)
        np.savez_compressed(path, errors=e, timesteps=ts, labels=labels, classes=np.array(classes),
                            images=np.array([str(items[i][0]) for i in keep]))
        print(f"{name}: {len(arr)} cells, {time.perf_counter() - t0:.0f} s", flush=True)


def score(a) -> dict:
    from cytomodel.evaluate import classification_summary

    out = Path(a.out)
    rows = {}
    for path in sorted(out.glob("*.npz")):
        z = np.load(path)
        e, ts, y, n = z["errors"], z["timesteps"], z["labels"], len(z["classes"])
        res = {}
        for lo, hi in T_RANGES:
            m = ((ts >= lo) & (ts <= hi)).astype(float)[:, :, None]      # (N, K, 1)
            for beta in BETAS:
                tot = e[..., 0] + beta * e[..., 1]                          # (N, K, C)
                mean = (tot * m).sum(1) / np.maximum(m.sum(1), 1)
                summary = classification_summary(y, mean.argmin(1), n)
                res[f"t{lo}-{hi} beta{beta}"] = round(summary["balanced_accuracy"], 4)
                res[f"t{lo}-{hi} beta{beta} accuracy"] = round(summary["accuracy"], 4)
        rows[path.stem] = res
    keys = [k for k in next(iter(rows.values())) if not k.endswith("accuracy")]
    names = list(rows)
    print("balanced accuracy (accuracy)")
    print(f"{'setting':24s} " + " ".join(f"{n:>15s}" for n in names))
    for k in keys:
        print(f"{k:24s} " + " ".join(f"{rows[n][k]:7.3f} ({rows[n][k + ' accuracy']:.3f})" for n in names))
    (out / "scores.json").write_text(json.dumps(rows, indent=1))
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--model", default=str(REPO / "data" / "models" / "cpu-32-lab"))
    p.add_argument("--shared", default=str(REPO.parent / "shared" / "data"))
    p.add_argument("--datasets", nargs="+", default=["pbc_val", "bccd", "tecom"])
    p.add_argument("--stain", default="auto")
    p.add_argument("--trials", type=int, default=24)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--score", action="store_true", help="score the stored errors (no UNet)")
    a = p.parse_args(argv)
    if a.score:
        score(a)
    else:
        compute(a)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
