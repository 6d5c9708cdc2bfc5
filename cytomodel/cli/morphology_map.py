"""``cytomodel map``: a map of what the model has learned, checked against subtypes (argument parsing only)."""
from __future__ import annotations

import argparse
from pathlib import Path

from .. import bundled_baseline_path, morphology_map
from ..morphology_map.config import MapConfig
from .common import add_device_arg, add_intake_args


def _ints(text: str, flag: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in str(text).split(",") if v.strip())
    except ValueError:
        raise ValueError(f"{flag} {text!r}: give whole numbers separated by commas, e.g. 100,300") from None


def cmd_map(args: argparse.Namespace) -> int:
    baseline = args.baseline
    if baseline is None:
        baseline = str(bundled_baseline_path()) if (bundled_baseline_path() / "baseline.json").is_file() else "none"
    if baseline != "none" and not (Path(baseline) / "baseline.json").is_file():
        raise FileNotFoundError(f"--baseline {baseline}: not a baseline folder (no baseline.json); train one with "
                                "`cytomodel baseline train` or pass --baseline none")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder")
    cfg = MapConfig(split=args.split, per_class=args.per_class or None,
                    classes=tuple(c.strip() for c in args.classes.split(",") if c.strip()) if args.classes else None,
                    seed=args.seed, noise_levels=_ints(args.noise_level, "--noise-level"), draws=args.draws,
                    precision=args.precision, errors=args.errors, error_trials=args.error_trials,
                    pixels=not args.no_pixels, lab_condition=args.lab_condition, runs=args.runs,
                    subsample=args.subsample, min_cluster_size=args.min_cluster_size, knn_k=args.knn_k,
                    folds=args.folds, permutations=args.permutations, min_per_subtype=args.min_per_subtype,
                    stable_jaccard=args.stable_jaccard, subtype_column=args.subtype_column,
                    um_per_px=args.um_per_px, stain=args.stain_normalisation).validate()
    res = morphology_map.build_map(args.model, args.data, out, cfg, None if baseline == "none" else baseline,
                                   add=args.add, device=args.device, progress=not args.quiet)
    print("\n".join(morphology_map.summary_rows(res.check)))
    n_cand = int(res.candidates["candidate"].sum()) if len(res.candidates) else 0
    print(f"{len(res.cells)} cells mapped in {res.seconds['total']:.0f} s; {n_cand} stable candidate cluster(s); "
          f"map: {out / 'map.html'}; figures: {out / 'figures'}; tables: {out / 'tables'}; "
          f"provenance: {out / 'provenance.json'}")
    return 0


def register(sub) -> None:
    d = MapConfig()
    p = sub.add_parser("map", help="a map of what the model has learned, checked against subtypes no model trained on",
                       description="Embed cells with the diffusion model's own representation (UNet mid-block "
                       "activations at a noise level, null class) beside the baseline CNN's features and raw pixels, "
                       "project them with UMAP, cluster inside each class with HDBSCAN, and measure how well the "
                       "clusters recover the data's subtypes (AMI; k-NN probe). Writes map.html (interactive, "
                       "self-contained), figures/ (PDF, PNG), tables/, candidates/ (contact sheets of stable "
                       "clusters) and provenance.json to --out.")
    p.add_argument("--model", default=None, help="model folder (default: the bundled classifier, cpu-32-lab)")
    p.add_argument("--data", required=True, help="class-per-folder tree, a folder with manifest.csv, or a manifest CSV "
                   "(its subtype column, if any, is what the map is checked against)")
    p.add_argument("--split", default=None, help="manifest split (e.g. val)")
    p.add_argument("--per-class", type=int, default=d.per_class, help="cells per class, seeded sample; 0: all "
                   "(%(default)s)")
    p.add_argument("--classes", help="only these classes, comma-separated (default: every label of the data)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--baseline", default=None, help="baseline CNN folder for the reference features (default: the "
                   "bundled baseline-32; 'none' to leave it out)")
    p.add_argument("--add", help="a folder of your own cell images to place on the map (transformed with the fitted "
                   "UMAP; each gets its nearest trained class)")
    p.add_argument("--seed", type=int, default=d.seed, help="seeds the sample, the noise, UMAP and the reruns")
    g = p.add_argument_group("the diffusion representation")
    g.add_argument("--noise-level", default=",".join(map(str, d.noise_levels)),
                   help="timestep(s) of the mid-block representation, comma-separated for several (%(default)s)")
    g.add_argument("--draws", type=int, default=d.draws, help="noise draws averaged per cell (%(default)s)")
    g.add_argument("--precision", default=d.precision, choices=["fp32", "bf16"])
    g.add_argument("--errors", action="store_true", help="also the per-class denoising-error profile (the classifier's "
                   "evidence; exhaustive over --error-trials draws, slower)")
    g.add_argument("--error-trials", type=int, default=d.error_trials)
    g.add_argument("--lab-condition", default=d.lab_condition, choices=["none", "unknown"],
                   help="lab conditioning of a model trained with lab variation (%(default)s)")
    g.add_argument("--no-pixels", action="store_true", help="leave out the raw-pixel reference")
    g = p.add_argument_group("clusters and the check")
    g.add_argument("--runs", type=int, default=d.runs, help="reruns (other seed, subsample) for stability "
                   "(%(default)s)")
    g.add_argument("--subsample", type=float, default=d.subsample, help="share of a class's cells in each rerun "
                   "(%(default)s)")
    g.add_argument("--min-cluster-size", type=int, default=None, help="HDBSCAN's (default: max(5, 8%% of the "
                   "class's cells))")
    g.add_argument("--stable-jaccard", type=float, default=d.stable_jaccard,
                   help="a cluster is stable when its mean Jaccard over the reruns reaches this (%(default)s)")
    g.add_argument("--knn-k", type=int, default=d.knn_k)
    g.add_argument("--folds", type=int, default=d.folds)
    g.add_argument("--permutations", type=int, default=d.permutations, help="label permutations for the probe's "
                   "p-value (%(default)s)")
    g.add_argument("--min-per-subtype", type=int, default=d.min_per_subtype,
                   help="subtypes with fewer sampled cells are left out of the check (%(default)s)")
    g.add_argument("--subtype-column", default=d.subtype_column, help="the manifest column of the finer labels")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_device_arg(p)
    add_intake_args(p)
    p.set_defaults(func=cmd_map, bundled="classifier")
