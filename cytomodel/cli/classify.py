"""``cytomodel classify | calibrate | explain``: the diffusion classifier's commands (argument parsing only)."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from .. import bundled_model_path, classify, evaluate, models, runtime
from ..classify.config import ANOMALY_SCORES, ERROR_REGIONS, LAB_CONDITIONS, STRATEGIES, WEIGHTINGS, ClassifierConfig
from . import baseline
from .common import add_classes_arg, add_data_args, add_device_arg, add_intake_args, check_out_suffix


def add_classifier_args(p: argparse.ArgumentParser) -> None:
    d = ClassifierConfig()
    g = p.add_argument_group("classifier")
    g.add_argument("--strategy", default=d.strategy, choices=STRATEGIES, help="adaptive or exhaustive (%(default)s)")
    g.add_argument("--trials", type=int, default=d.trials, help="maximum trials per image (%(default)s)")
    g.add_argument("--t-range", default=f"{d.t_min}:{d.t_max}", help="timestep range MIN:MAX (%(default)s)")
    g.add_argument("--weighting", default=d.weighting, choices=WEIGHTINGS)
    g.add_argument("--no-tta", action="store_true", help="no random flips/rotations per trial")
    g.add_argument("--p-value", type=float, default=d.p_value)
    g.add_argument("--min-trials", type=int, default=d.min_trials)
    g.add_argument("--precision", default=d.precision, choices=["bf16", "fp32"])
    g.add_argument("--batch-size", type=int, default=d.batch_size, help="image-class pairs per UNet call")
    g.add_argument("--seed", type=int, default=d.seed)
    g.add_argument("--temperature", type=float, help="override the model's fitted temperature")
    g.add_argument("--error-region", default=d.error_region, choices=ERROR_REGIONS,
                   help="where the denoising error is measured: the whole image or a centred disc (the cell; "
                   "%(default)s)")
    g.add_argument("--disc-radius", type=float, default=d.disc_radius,
                   help="radius of that disc, a fraction of the width (%(default)s)")
    g.add_argument("--lab-condition", default=d.lab_condition, choices=LAB_CONDITIONS,
                   help="'unknown' for images from another lab, with a model trained with lab variation "
                   "(%(default)s)")
    g.add_argument("--anomaly", default=d.anomaly, choices=ANOMALY_SCORES,
                   help="what anomaly_score measures: 'zeta' (−ζ: no class stands out), 'best-error' (how poorly the "
                   "predicted class explains the cell), 'class-gain' (how little it explains beyond no class; one "
                   "more UNet call per draw), 'texture' (how little it explains the cell's fine detail, read by a "
                   "cascade's 128-px stage; needs a cascade --model), 'class-gain+texture' (both, averaged), "
                   "'class-gain+texture-gain' (the same without the texture profile: ranks promyelocytes best) or "
                   "'class-gain+texture+baseline' (and how far a --baseline CNN's features lie from its nearest "
                   "training cells'; "
                   "'class-gain+texture+baseline-softmax': its 1 − max softmax instead); all but zeta against "
                   "validation cells of that class, fitted by `cytomodel calibrate` with the same option "
                   "(%(default)s)")


def add_baseline_part_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--baseline", default=None, help="--anomaly class-gain+texture+baseline[-softmax]: a baseline CNN "
                   "folder trained on the same classes, with its feature density (`cytomodel baseline fit-density`), "
                   "whose nearest-neighbour feature distance (or 1 − max softmax) joins the anomaly score")


def config_from_args(args: argparse.Namespace) -> ClassifierConfig:
    lo, _, hi = str(args.t_range).partition(":")
    return ClassifierConfig(strategy=args.strategy, trials=args.trials, t_min=int(lo), t_max=int(hi or lo),
                            weighting=args.weighting, tta=not args.no_tta, p_value=args.p_value,
                            min_trials=args.min_trials, precision=args.precision, batch_size=args.batch_size,
                            seed=args.seed, temperature=args.temperature, error_region=args.error_region,
                            disc_radius=args.disc_radius, lab_condition=args.lab_condition,
                            anomaly=args.anomaly).validate()


def _load(args, device=None):
    """The base stage of ``--model`` (a cascade classifies with its base stage, on the downsampled cell)."""
    runtime.configure_runtime()
    return models.load_base(args.model, device=runtime.resolve_device(args.device) if device is None else device)


def _load_with_parts(args, cfg: ClassifierConfig, device=None):
    """(the base stage of ``--model``, the cascade's 128-px stage as a TextureScorer or None, the ``--baseline`` as a
    BaselinePart or None): for a texture anomaly score the cascade is loaded once and its base stage classifies;
    otherwise as :func:`_load`."""
    if args.baseline and not cfg.needs_baseline:
        raise ValueError(f"--baseline is read only by --anomaly class-gain+texture+baseline[-softmax] (not "
                         f"{cfg.anomaly})")
    if cfg.needs_baseline and not args.baseline:
        raise ValueError(f"--anomaly {cfg.anomaly} adds a baseline CNN's uncertainty: pass --baseline DIR, a baseline "
                         "trained on the same classes (e.g. data/models/baseline-32 for the bundled cascade)")
    if not cfg.needs_texture:
        return _load(args, device), None, None
    from ..classify.baseline_part import BaselinePart   # torch and the stages: only these scores need them
    from ..classify.texture import TextureScorer
    runtime.configure_runtime()
    device = runtime.resolve_device(args.device) if device is None else device
    gen = models.load_generator(args.model, device=device)
    if not isinstance(gen, models.Cascade):
        raise ValueError(f"--anomaly {cfg.anomaly} reads fine detail with a cascade's 128-px stage; {args.model} is a "
                         "single stage. Pass a cascade folder (e.g. data/models/cascade-128) or another --anomaly")
    texture = TextureScorer.of_cascade(gen, gen.intake(args.um_per_px, args.stain_normalisation))
    part = None
    if cfg.needs_baseline:
        part = BaselinePart.of_classifier(evaluate.load_baseline(args.baseline, device=device), args.baseline,
                                          gen.base.class_names, args.um_per_px, args.stain_normalisation)
    return gen.base, texture, part


def cmd_classify(args: argparse.Namespace) -> int:
    check_out_suffix(args.out, (".csv", ".parquet"))
    if (Path(args.model) / "baseline.json").is_file():
        # a single-pass classifier (a distilled student or the baseline CNN): the same table, in one forward pass
        return baseline.cmd_predict(argparse.Namespace(**{**vars(args), "images": None}))
    state = classify.partial_state()
    # under `accelerate launch` every process uses its own device; otherwise --device decides
    device = state.device if state.num_processes > 1 and args.device is None else None
    cfg = config_from_args(args)
    model, texture, base_part = _load_with_parts(args, cfg, device)
    intake = model.intake(args.um_per_px, args.stain_normalisation)
    candidates = list(args.classes or model.class_names)
    df = classify.classify_folder(model, args.data, args.out, cfg, split=args.split, limit=args.limit, state=state,
                                  classes=args.classes, intake=intake, strict=args.strict,
                                  texture=texture, baseline=base_part)
    if state.is_main_process:
        done = classify.classified(df)
        msg = (f"{len(done)} of {len(df)} images classified -> {args.out}; mean UNet calls/image "
               f"{done['unet_calls'].mean():.1f}")
        if "label" in df:
            known = done[done["label"].isin(candidates)]
            msg += f"; accuracy {(known['label'] == known['pred_class']).mean():.4f}"
            if known["label"].nunique() > 1:
                idx = {c: i for i, c in enumerate(candidates)}
                s = evaluate.classification_summary(known["label"].map(idx).to_numpy(),
                                                    known["pred_class"].map(idx).to_numpy(), len(candidates))
                msg += f", balanced accuracy {s['balanced_accuracy']:.4f}"
            if args.classes:
                msg += f" (cells of the {len(candidates)} candidate classes)"
        print(msg)
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    if args.reference_only:
        _reference_only_target(args, cfg)
    elif args.out_model:
        raise ValueError("--out-model goes with --reference-only (a copy of the model for a lab's own reference)")
    model, texture, base_part = _load_with_parts(args, cfg)
    if args.from_results:
        df = classify.read_table(Path(args.from_results))
    else:
        name = "reference" if args.reference_only else "calibration"
        out = Path(args.results or Path(args.model) / f"{name}-{args.split or 'data'}.csv")
        check_out_suffix(out, (".csv", ".parquet"), flag="--results")
        # the temperature does not enter the reference's raw columns; a calibration classifies at T = 1 to fit it
        df = classify.classify_folder(model, args.data, out,
                                      cfg if args.reference_only else dataclasses.replace(cfg, temperature=1.0),
                                      split=args.split, limit=args.limit,
                                      intake=model.intake(args.um_per_px, args.stain_normalisation),
                                      texture=texture, baseline=base_part)
    df = classify.classified(df)
    if args.rescored_out:
        check_out_suffix(Path(args.rescored_out), (".csv", ".parquet"), flag="--rescored-out")
    folder = models.base_folder(args.model)
    if args.reference_only:
        temperature = classify.model_temperature(model, cfg, warn=False)
    else:
        if "label" not in df:
            raise ValueError("calibration needs labelled images (class folders or a manifest with labels); to fit "
                             "only the anomaly reference on a lab's cells known to be normal, use --reference-only")
        known = df[df["label"].isin(model.class_names)]
        errors = known[[f"err_{c}" for c in model.class_names]].to_numpy()
        labels = known["label"].map({c: i for i, c in enumerate(model.class_names)}).to_numpy()
        fit = classify.calibrate_model(folder, errors, labels, cfg,
                                       source={"data": str(args.data), "split": args.split})
        temperature = fit["temperature"]
        print(f"temperature T={fit['temperature']:.6g} fitted on {fit['n_images']} images: "
              f"NLL {fit['nll_at_T1']:.4f} (T=1) -> {fit['nll_at_T']:.4f}; written to {folder}/cytomodel.json")
    reference = None
    if cfg.anomaly != "zeta":
        source = {"data": str(args.data), "split": args.split,
                  **({"reference_only": True} if args.reference_only else {}),
                  **({"texture_stage": texture.identity()} if texture is not None else {}),
                  **({"baseline": {"path": str(args.baseline), **base_part.identity()}} if base_part else {})}
        ref_fit = classify.record_reference(folder, df, model.class_names, cfg, source=source)
        reference = ref_fit["reference"]
        pooled = classify.pooled_classes(reference)
        print(f"anomaly reference ({cfg.anomaly}) fitted on {ref_fit['n_images']} images; written to "
              f"{folder}/cytomodel.json" + (f"; the temperature kept (T={temperature:.6g})" if args.reference_only
                                            else "")
              + (f"; classes predicted for fewer than {classify.MIN_CLASS_CELLS} of these cells use the "
                 f"pooled values: {', '.join(pooled)}" if pooled else ""))
    if args.rescored_out:
        classify.write_table(classify.rescored(df, temperature, cfg.anomaly_k, reference), Path(args.rescored_out))
        print(f"the {len(df)} results rescored at T={temperature:.6g} -> {args.rescored_out}")
    return 0


def _reference_only_target(args: argparse.Namespace, cfg: ClassifierConfig) -> None:
    """Check a --reference-only run and point ``args.model`` at the folder its reference is written to: a fresh copy
    of the model (``--out-model``), so that the reference fitted on the training lab's validation cells is kept."""
    if cfg.anomaly == "zeta":
        raise ValueError("--reference-only fits the reference of an --anomaly score measured against a class's own "
                         "cells (class-gain, class-gain+texture, ...); −ζ (zeta) has none")
    if args.out_model:
        fresh = not Path(args.out_model).is_dir() or not any(Path(args.out_model).iterdir())
        args.model = str(models.copy_model_folder(args.model, args.out_model, reuse=True))
        print(f"{args.model}: {'a copy of the model' if fresh else 'the copy an earlier run made (same weights)'}; "
              "the reference is written there")
    elif Path(args.model).resolve().is_relative_to(bundled_model_path().parent.resolve()):
        raise ValueError(f"--reference-only would replace the bundled model's reference ({args.model}): pass "
                         "--out-model DIR, a new folder for a copy of the model with the lab's reference")


def cmd_explain(args: argparse.Namespace) -> int:
    model = _load(args)
    cfg = dataclasses.replace(ClassifierConfig(), trials=args.trials, seed=args.seed, precision=args.precision)
    res = classify.explain_image(model, args.image, args.target, predicted=args.predicted, config=cfg,
                                 intake=model.intake(args.um_per_px, args.stain_normalisation))
    classify.save_overlay(res, args.out, upscale=args.upscale)
    print(f"predicted {res.predicted}, target {res.target}: error gap {res.error_gap:+.4g}; overlay -> {args.out}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("classify", help="classify cell images by denoising error (resumable, data-parallel)",
                       description="Classify a folder, class tree or manifest with the diffusion classifier. "
                       "Resumable: images already in --out are skipped. Data-parallel with "
                       "`accelerate launch -m cytomodel classify ...`.")
    p.add_argument("--model", default=None, help="model folder (default: the bundled classifier, cpu-32-lab)")
    p.add_argument("--data", required=True, help="a folder of images, class sub-folders, a manifest CSV, or one image")
    p.add_argument("--split", default=None, help="manifest split (e.g. test)")
    p.add_argument("--out", required=True, help="results .csv or .parquet")
    p.add_argument("--limit", type=int, help="only the first N images")
    p.add_argument("--strict", action="store_true", help="exit with an error when any image cannot be framed (its row "
                   "is kept, without a prediction)")
    add_device_arg(p)
    add_classifier_args(p)
    add_baseline_part_arg(p)
    add_classes_arg(p)
    add_intake_args(p)
    p.set_defaults(func=cmd_classify, bundled="classifier")

    p = sub.add_parser("calibrate", help="fit the softmax temperature (and the anomaly reference) on validation data",
                       description="Classify labelled validation images and fit T by NLL; T is written into the "
                       "model's cytomodel.json (everything else kept). With an --anomaly other than zeta, the "
                       "per-class reference of that anomaly score is fitted and written too. With --reference-only, "
                       "only the reference, on a lab's own normal cells (a copy of the model: --out-model).")
    p.add_argument("--model", default=None, help="model folder (default: the bundled classifier)")
    add_data_args(p)
    p.add_argument("--results", help="where to keep the per-image validation results (resumable)")
    p.add_argument("--from-results", help="fit from an existing classify output (with a label column, but for "
                   "--reference-only)")
    p.add_argument("--reference-only", action="store_true",
                   help="fit only the anomaly reference (--anomaly), on cells known to be normal — a lab's own, "
                   "before flagging its cells — and keep the temperature; labels are optional (labelled cells of "
                   "classes the model does not know are left out)")
    p.add_argument("--out-model", help="--reference-only: a new folder for a copy of the model that holds the "
                   "reference (required for a bundled model, whose own reference is kept)")
    p.add_argument("--rescored-out", help="also write those results with their scores at the fitted T (.csv or "
                   ".parquet; no new UNet calls)")
    p.add_argument("--limit", type=int)
    add_device_arg(p)
    add_classifier_args(p)
    add_baseline_part_arg(p)
    add_intake_args(p)
    p.set_defaults(func=cmd_calibrate, bundled="classifier")

    p = sub.add_parser("explain", help="counterfactual heat map: where the image would change to be TARGET",
                       description="Average the per-pixel residuals under the predicted and the target class and "
                       "show where they differ most, as an overlay PNG.")
    p.add_argument("--model", default=None, help="model folder (default: the bundled classifier)")
    p.add_argument("--image", required=True)
    p.add_argument("--target", required=True, help="the counterfactual class")
    p.add_argument("--predicted", help="compare against this class instead of the predicted one")
    p.add_argument("--trials", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    p.add_argument("--upscale", type=int, default=8)
    p.add_argument("--out", required=True, help="overlay .png")
    add_device_arg(p)
    add_intake_args(p)
    p.set_defaults(func=cmd_explain, bundled="classifier")
