"""A texture anomaly score from the cascade's 128-px stage (issue 25): does the cell's fine detail — chromatin,
granules, nucleoli — fit the class the base stage called, better than it fits no class?

The 32-px base stage cannot see texture.  The super-resolution stage can: it is class-conditional, trained on 64 × 64
crops, and predicts the *residual* (the 128-px cell minus the bicubic upsampling of its 32-px version) — exactly the
detail the base stage lacks.  For each cell (a 128-px image framed like the training cells), the centre 64 × 64 crop
(the cell; the stage is fully convolutional, so the crop is what it was trained on) of its residual is noised at
fixed timesteps, and the stage predicts the noise under the base stage's predicted class and under the null class
(:mod:`cytomodel.classify.texture`).  Texture gain =
log(error under the base stage's predicted class / error under no class), averaged over draws: a normal cell's detail
is explained better with its class than without (gain < 0); an unseen cell's is not.

Stage 1 (``--compute``, resumable per split): ``<split>.npz`` with errors (N, T, D, 2) (timesteps, draws; the
predicted class, then the null class), labels, subtypes and the base stage's predictions (from its results table).
Stage 2 (``--score``): candidates — texture gain at each timestep set, z-scored per predicted class on trained-class
val cells, and combinations with the base stage's score (the table's ``anomaly_score`` / ``zeta`` / 1 − confidence)
and, with ``--baseline`` (a baseline with a feature density: ``cytomodel baseline fit-density``), the baseline
CNN's 1 − max softmax and feature distance ("+" = the mean of the scores' quantiles among trained-class val cells;
"classify's …" = what ``cytomodel classify --anomaly …`` computes, by the library's own functions: the mean of the
parts' robust z per predicted class). AUROC and sensitivity at specificity 0.962 of the held-out class against the
trained classes: chosen on val, reported once on test, per subtype of the held-out class.

    python benchmarks/texture_scores.py --superres RUNS/sr-ig/model --holdout ig --out RUNS/texture-ig --compute \\
        --table val=RUNS/CG_ig_val.csv --table test=RUNS/CG_ig_test.csv
    python benchmarks/texture_scores.py ... --score [--baseline RUNS/baseline-ig] \
        [--tables-out DIR --tables-score "texture gain, t = 500 + base class-gain"]   # then cytomodel triage
    python benchmarks/texture_scores.py --speed 32 --cascade data/models/cascade-128 --holdout none --out DIR \
        --table test=… [--baseline data/models/baseline-32]   # seconds per cell: −ζ, class-gain,
        # class-gain+texture (and +baseline), side by side on the same cells
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from anomaly_scores import _auroc, _sens_at_spec  # noqa: E402   the other anomaly benchmark's measures

TIMESTEPS = (50, 100, 200, 350, 500)   # the levels computed by default (more with --timesteps, in their own file)


def compute(args) -> None:
    from cytomodel.classify.texture import texture_errors
    from cytomodel.data import framed_arrays
    from cytomodel.models import load_model
    from cytomodel.runtime import configure_runtime

    configure_runtime()
    sr = load_model(args.superres)
    if getattr(sr, "STAGE", "") != "superres":
        raise SystemExit(f"{args.superres} is not a super-resolution stage")
    man = pd.read_csv(Path(args.shared) / "pbc" / "manifest.csv")
    sub = dict(zip(man.path, man.subtype))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ts = tuple(int(t) for t in args.timesteps.split(","))
    root = (Path(args.shared) / "pbc").resolve()
    intake = sr.intake()
    for spec in args.table:
        split, table = spec.split("=", 1)
        path = out / (f"{split}.npz" if ts == TIMESTEPS else f"{split}-t{'-'.join(map(str, ts))}.npz")
        tab = pd.read_csv(table)
        tab = tab[tab["pred_class"].notna()].reset_index(drop=True)
        done = dict(np.load(path, allow_pickle=True)) if path.is_file() else None
        start = 0 if done is None else len(done["errors"])
        if start >= len(tab):
            print(f"{split}: {start} cells already done", flush=True)
            continue
        errs = [done["errors"]] if done is not None else []
        t0 = time.perf_counter()
        for b in range(start, len(tab), args.chunk):
            rows = tab.iloc[b:b + args.chunk]
            cells = intake.frame(list(rows["image"]))
            arrays, keep = framed_arrays(cells, sr.resolution)
            if len(keep) != len(rows):
                print(f"{split}: {len(rows) - len(keep)} cells could not be framed at rows {b}…: NaN", flush=True)
            pred = np.array([sr.class_index(c) for c in rows[args.class_column].iloc[keep]])
            seed = args.seed + b + (0 if ts == TIMESTEPS else sum(ts))   # another set of levels: other draws
            chunk = np.full((len(rows), len(ts), args.draws, 2), np.nan, np.float32)
            chunk[keep] = texture_errors(sr, arrays, pred, args.draws, seed=seed, timesteps=ts)
            errs.append(chunk)
            e = np.concatenate(errs)
            rel = [str(Path(p).resolve().relative_to(root)) if Path(p).resolve().is_relative_to(root) else str(p)
                   for p in tab["image"][:len(e)]]
            np.savez(path, errors=e, classes=np.array(sr.class_names), image=tab["image"][:len(e)].to_numpy(),
                     label=tab["label"][:len(e)].to_numpy(), pred=tab[args.class_column][:len(e)].to_numpy(),
                     subtype=np.array([sub.get(r, "") for r in rel]), timesteps=np.array(ts))
            rate = (len(e) - start) / (time.perf_counter() - t0)
            print(f"{split}: {len(e)}/{len(tab)} cells, {1 / rate:.3f} s/cell", flush=True)


def load_errors(out: Path, split: str) -> dict:
    """``<split>.npz`` and any ``<split>-t….npz`` (more timesteps for the same cells), joined along the timesteps."""
    parts = [dict(np.load(f, allow_pickle=True)) for f in sorted(out.glob(f"{split}*.npz"))]
    n = min(len(p["errors"]) for p in parts)
    z = {k: v[:n] if k in ("image", "label", "pred", "subtype") else v for k, v in parts[0].items()}
    for p in parts[1:]:
        if not np.array_equal(p["image"][:n], z["image"]):
            raise SystemExit(f"{out}: the {split} files list different cells")
    z["errors"] = np.concatenate([p["errors"][:n] for p in parts], axis=1)
    z["timesteps"] = np.concatenate([p["timesteps"] for p in parts])
    order = np.argsort(z["timesteps"])
    z["errors"], z["timesteps"] = z["errors"][:, order], z["timesteps"][order]
    return z


def with_more_draws(z: dict, extra: list[Path], split: str) -> dict:
    """``z`` with the draws of ``extra`` folders (the same cells, other seeds) appended along the draws axis, at the
    noise levels they all have."""
    for folder in extra:
        e = load_errors(folder, split)
        n = min(len(e["errors"]), len(z["errors"]))
        if n < len(z["errors"]) or not np.array_equal(e["image"][:n], z["image"][:n]):
            raise SystemExit(f"{folder}: the {split} draws do not cover the same cells (finish --compute there)")
        common = [t for t in z["timesteps"] if t in set(e["timesteps"])]
        pick = lambda d: d["errors"][:n][:, [list(d["timesteps"]).index(t) for t in common]]   # noqa: E731
        z = {**z, "errors": np.concatenate([pick(z), pick(e)], axis=2), "timesteps": np.array(common)}
    return z


def auroc_sens(pos: np.ndarray, neg: np.ndarray) -> tuple[float, float]:
    return _auroc(pos, neg), _sens_at_spec(pos, neg)


def quantile_among(ref: np.ndarray, x: np.ndarray) -> np.ndarray:
    ref = np.sort(ref)
    return np.searchsorted(ref, x, side="right") / len(ref)


def gain_at(z: dict, ts: list[int]) -> np.ndarray:
    """The library's texture gain over the noise levels ``ts``."""
    from cytomodel.classify.texture import texture_gain

    return texture_gain(z["errors"], [list(z["timesteps"]).index(t) for t in ts])


def results_tables(z: dict, tabs: dict, ts: list[int], base: dict | None = None) -> dict[str, pd.DataFrame]:
    """Per split, the columns a `classify` results table of a texture score has (gains, log null errors), at the
    noise levels ``ts`` (and the baseline's columns — ``baseline_raw``, ``baseline_distance`` — when ``base`` gives
    them: split -> column -> values)."""
    from cytomodel.classify.texture import null_levels, texture_levels

    out = {}
    for s in ("val", "test"):
        at = [list(z[s]["timesteps"]).index(t) for t in ts]
        lv, nulls = texture_levels(z[s]["errors"], at), null_levels(z[s]["errors"], at)
        df = pd.DataFrame({"pred_class": [str(p) for p in z[s]["pred"]],
                           "novelty_raw": tabs[s]["novelty_raw"].to_numpy(np.float64), "texture_raw": lv.mean(1)})
        for j, t in enumerate(ts):
            df[f"texture_t{t}"] = lv[:, j]
        for j, t in enumerate(ts):
            df[f"texture_null_t{t}"] = nulls[:, j]
        for col, values in (base or {}).get(s, {}).items():
            df[col] = values
        out[s] = df
    return out


def library_candidates(z, tabs, tsets, classes, trained_val, base=None) -> dict[str, dict[str, np.ndarray]]:
    """``classify``'s texture and class-gain+texture scores (and with ``base``, the baseline's columns,
    class-gain+texture+baseline and its -softmax form; references fitted on trained-class val cells, as ``cytomodel
    calibrate`` does), and class-gain+texture-gain (the form before the texture profile, gain only)."""
    from cytomodel.classify.novelty import anomaly_of, fit_score_reference, score_parts

    cands = {}
    for name, ts in tsets.items():
        if len(ts) < 2:   # a profile needs two levels or more
            continue
        tables = results_tables(z, tabs, ts, base)
        for anomaly in ("texture", "class-gain+texture", "class-gain+texture-gain") + (
                ("class-gain+texture+baseline", "class-gain+texture+baseline-softmax") if base else ()):
            ref = fit_score_reference(tables["val"][trained_val], classes, anomaly)
            label = (f"classify's class-gain+texture before the profile (gain only), {name}"
                     if anomaly == "class-gain+texture-gain" else f"classify's {anomaly} (gain + profile), {name}")
            cands[label] = {s: anomaly_of(score_parts(tables[s], ref), list(tables[s]["pred_class"]), ref)
                            for s in ("val", "test")}
    return cands


def level_z_candidates(z, tabs, classes, trained_val) -> dict[str, dict[str, np.ndarray]]:
    """Other ways of reading the per-level gains, tried on val before the profile was chosen: each level robust-z'd
    per predicted class (the library's reference), then their mean, max, top-2 mean, root mean square of the positive
    parts or log-mean-exp, alone and averaged with the class-gain's robust z."""
    from cytomodel.classify.novelty import fit_reference, standardise

    all_t = [int(t) for t in z["val"]["timesteps"] if t >= 200]
    preds = {s: [str(p) for p in z[s]["pred"]] for s in ("val", "test")}
    tables = results_tables(z, tabs, all_t)

    def robust_z(col: str) -> dict[str, np.ndarray]:
        v = {s: tables[s][col].to_numpy() for s in ("val", "test")}
        ref = fit_reference(v["val"][trained_val], np.asarray(preds["val"])[trained_val], classes)
        return {s: standardise(v[s], preds[s], ref) for s in ("val", "test")}

    per = [robust_z(f"texture_t{t}") for t in all_t]
    cg = robust_z("novelty_raw")
    rules = {"mean": lambda m: m.mean(1), "max": lambda m: m.max(1), "top-2 mean": lambda m: np.sort(m, 1)[:, -2:].mean(1),
             "positive RMS": lambda m: np.sqrt((np.clip(m, 0, None) ** 2).mean(1)),
             "log-mean-exp": lambda m: np.log(np.exp(m).mean(1))}
    cands = {}
    for rule, f in rules.items():
        v = {s: f(np.stack([p[s] for p in per], axis=1)) for s in ("val", "test")}
        cands[f"per-level z/class, {rule}, t ≥ 200"] = v
        cands[f"class-gain z + per-level z/class {rule}, t ≥ 200"] = {s: (cg[s] + v[s]) / 2 for s in ("val", "test")}
    return cands


def rank(folders: list[str]) -> None:
    """Candidates scored in several folders (one held-out class each), ranked by their mean val AUROC."""
    tabs = {Path(f).name: pd.read_csv(Path(f) / "scores.csv").set_index("score") for f in folders}
    common = sorted(set.intersection(*(set(t.index) for t in tabs.values())))
    rows = []
    for name in common:
        r = {"score": name}
        for k, t in tabs.items():
            r.update({f"{k}_{c}": t.loc[name, c] for c in ("val_auroc", "val_sens", "test_auroc", "test_sens")})
        r["mean_val_auroc"] = np.mean([t.loc[name, "val_auroc"] for t in tabs.values()])
        r["mean_val_sens"] = np.mean([t.loc[name, "val_sens"] for t in tabs.values()])
        rows.append(r)
    res = pd.DataFrame(rows).sort_values(["mean_val_auroc", "mean_val_sens"], ascending=False)
    with pd.option_context("display.width", 300, "display.max_colwidth", 80, "display.max_rows", 60):
        print(res.head(40).round(3).to_string(index=False))
    print(f"\nchosen by mean val AUROC over {', '.join(tabs)}: {res.iloc[0]['score']}")


def score(args) -> None:
    out = Path(args.out)
    z = {s: with_more_draws(load_errors(out, s), [Path(d) for d in args.more_draws], s) for s in ("val", "test")}
    scores_out = Path(args.scores_out or out)
    scores_out.mkdir(parents=True, exist_ok=True)
    all_t = [int(t) for t in z["val"]["timesteps"]]
    classes = [str(c) for c in z["val"]["classes"]]
    tabs = {}
    for spec in args.table:
        split, table = spec.split("=", 1)
        t = pd.read_csv(table)
        tabs[split] = t[t["pred_class"].notna()].reset_index(drop=True).iloc[:len(z[split]["errors"])]
    base = {}   # split -> the baseline's columns of a results table, as `classify` writes them
    if args.baseline:
        from cytomodel.classify.baseline_part import BaselinePart
        from cytomodel.evaluate import load_baseline

        part = BaselinePart.of_classifier(load_baseline(args.baseline), args.baseline, classes)
        if part.classifier.density is None:
            raise SystemExit(f"{args.baseline} has no feature density: `cytomodel baseline fit-density --model "
                             f"{args.baseline} --data TRAINING_DATA --split train`")
        base = {s: part.columns(list(tabs[s]["image"])) for s in ("val", "test")}
    held = args.holdout
    cands: dict[str, dict[str, np.ndarray]] = {}
    tsets = {"all t": all_t, "t ≤ 200": [t for t in all_t if t <= 200], "t ≥ 200": [t for t in all_t if t >= 200],
             "t ≥ 350": [t for t in all_t if t >= 350]}
    tsets.update({f"t = {t}": [t] for t in all_t})
    for name, ts in tsets.items():
        cands[f"texture gain, {name}"] = {s: gain_at(z[s], ts) for s in ("val", "test")}
    # per predicted class z-score against trained-class val cells
    trained_val = z["val"]["label"] != held
    for name in list(cands):
        v = cands[name]["val"]
        mu = {c: v[trained_val & (z["val"]["pred"] == c)].mean() for c in classes}
        sd = {c: v[trained_val & (z["val"]["pred"] == c)].std() + 1e-9 for c in classes}
        cands[name.replace("texture gain", "texture gain z/class")] = {
            s: (cands[name][s] - np.array([mu.get(p, 0) for p in z[s]["pred"]]))
            / np.array([sd.get(p, 1) for p in z[s]["pred"]]) for s in ("val", "test")}
    for col, label in (("anomaly_score", "base class-gain"), ("zeta", "base −ζ"), ("confidence", "base 1 − conf")):
        if col in tabs["val"]:
            # every score "higher = more unusual": the table's anomaly_score already is; −ζ and 1 − confidence
            flip = {"anomaly_score": lambda v: v, "zeta": lambda v: -v, "confidence": lambda v: 1 - v}[col]
            cands[label] = {s: flip(tabs[s][col].to_numpy()) for s in ("val", "test")}
    if base:
        cands["baseline 1 − max softmax"] = {s: base[s]["baseline_raw"] for s in base}
        cands["baseline feature distance"] = {s: base[s]["baseline_distance"] for s in base}
    singles = list(cands)
    textures = [c for c in singles if c.startswith("texture")]
    others = [c for c in singles if not c.startswith("texture")]

    def combine(names):
        ref = {n: cands[n]["val"][trained_val] for n in names}
        return {s: np.mean([quantile_among(ref[n], cands[n][s]) for n in names], axis=0) for s in ("val", "test")}

    for t in textures:
        for o in others:
            cands[f"{t} + {o}"] = combine([t, o])
        if "base class-gain" in cands and base:
            cands[f"{t} + base class-gain + baseline"] = combine([t, "base class-gain", "baseline 1 − max softmax"])
    if "base class-gain" in cands and base:
        cands["base class-gain + baseline"] = combine(["base class-gain", "baseline 1 − max softmax"])
    if "novelty_raw" in tabs["val"]:   # what `classify --anomaly …` computes, by the library's own functions
        cands.update(library_candidates(z, tabs, tsets, classes, trained_val, base))
        cands.update(level_z_candidates(z, tabs, classes, trained_val))
    rows = []
    for name, sc in cands.items():
        r = {"score": name}
        for s in ("val", "test"):
            lab = z[s]["label"]
            pos, neg = sc[s][lab == held], sc[s][lab != held]
            ok = ~np.isnan(pos)
            r[f"{s}_auroc"], r[f"{s}_sens"] = auroc_sens(pos[ok], neg[~np.isnan(neg)])
        sub = z["test"]["subtype"]
        lab = z["test"]["label"]
        neg = sc["test"][lab != held]
        for st in sorted(set(sub[lab == held]) - {""}):
            pos = sc["test"][(lab == held) & (sub == st)]
            if len(pos) >= 20:
                r[f"test_auroc_{st}"] = auroc_sens(pos, neg)[0]
        rows.append(r)
    res = pd.DataFrame(rows).sort_values("val_auroc", ascending=False)
    res.to_csv(scores_out / "scores.csv", index=False)
    best = res.iloc[0]
    json.dump({"held_out": held, "n_val": {k: int(v) for k, v in pd.Series(z["val"]["label"]).value_counts().items()},
               "n_test": {k: int(v) for k, v in pd.Series(z["test"]["label"]).value_counts().items()},
               "timesteps": all_t, "draws": int(z["val"]["errors"].shape[2]),
               "crop": "the stage's training crop (config.crop_size)",
               "chosen_on_val": best["score"], "args": vars(args)}, open(scores_out / "scores.json", "w"), indent=2,
              default=str)
    with pd.option_context("display.width", 250, "display.max_colwidth", 70, "display.max_rows", 400):
        print(res.round(3).to_string(index=False))
    print(f"\nchosen on val: {best['score']} — test AUROC {best['test_auroc']:.3f}, "
          f"sensitivity {best['test_sens']:.2f}")
    if args.tables_out:   # the base tables with anomaly_score = a candidate, for `cytomodel triage`
        name = args.tables_score or best["score"]
        if name not in cands:
            raise SystemExit(f"no candidate {name!r}; see {scores_out / 'scores.csv'}")
        folder = Path(args.tables_out)
        folder.mkdir(parents=True, exist_ok=True)
        for s in ("val", "test"):
            t = tabs[s].copy()
            t["anomaly_score_base"], t["anomaly_score"] = t["anomaly_score"], cands[name][s]
            t.to_csv(folder / f"{s}.csv", index=False)
        (folder / "score.txt").write_text(name + "\n")
        print(f"tables with anomaly_score = {name!r} in {folder}")


def speed(args) -> None:
    """Seconds per cell of `classify`'s work at the defaults with −ζ, class-gain, class-gain+texture and (with
    ``--baseline``) class-gain+texture+baseline, on the same ``--speed`` cells (file paths, framed by the intake),
    alternating them so that machine load falls alike."""
    import warnings

    from cytomodel.classify import ClassifierConfig, classify_arrays
    from cytomodel.classify.baseline_part import BaselinePart
    from cytomodel.classify.batch import load_images_for
    from cytomodel.classify.texture import TextureScorer
    from cytomodel.evaluate import load_baseline
    from cytomodel.models import load_generator

    cascade = load_generator(args.cascade)
    paths = list(pd.read_csv(dict(s.split("=", 1) for s in args.table)["test"])["image"][:args.speed])
    anomalies = ("zeta", "class-gain", "class-gain+texture") + (("class-gain+texture+baseline",) if args.baseline
                                                                  else ())
    times: dict[str, list[float]] = {a: [] for a in anomalies}
    scorer = TextureScorer.of_cascade(cascade)
    part = (BaselinePart.of_classifier(load_baseline(args.baseline), args.baseline, cascade.base.class_names)
            if args.baseline else None)   # loaded once, like the cascade: the timing is the work per cell
    for _ in range(args.repeats):
        for anomaly in times:
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                arrays, _, _ = load_images_for(cascade.base, paths)
                df = classify_arrays(cascade.base, arrays, ClassifierConfig(anomaly=anomaly))
                if "texture" in anomaly:
                    scorer.levels(paths, list(df["pred_class"]))
                if anomaly.endswith("baseline"):
                    part.columns(paths)
            times[anomaly].append((time.perf_counter() - t0) / len(paths))
    res = {a: float(np.median(v)) for a, v in times.items()}
    res.update({f"ratio_{a}_to_zeta": res[a] / res["zeta"] for a in anomalies[1:]},
               cells=len(paths), repeats=args.repeats, cascade=args.cascade, baseline=args.baseline)
    print(json.dumps(res, indent=1))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "speed.json").write_text(json.dumps(res, indent=1) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--superres", help="the 128-px stage (trained without the held-out class)")
    p.add_argument("--holdout")
    p.add_argument("--out")
    p.add_argument("--table", action="append", metavar="SPLIT=CSV",
                   help="the base stage's results table of a split (val, test): cells and predictions")
    p.add_argument("--shared", default=str(REPO.parent / "shared" / "data"))
    p.add_argument("--draws", type=int, default=2)
    p.add_argument("--timesteps", default=",".join(map(str, TIMESTEPS)),
                   help="noise levels to compute (another set goes to its own file, joined when scoring)")
    p.add_argument("--chunk", type=int, default=96)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--class-column", default="pred_class",
                   help="--compute: the table's column naming the class to condition on (runner_up: the base's second)")
    p.add_argument("--more-draws", action="append", default=[], metavar="DIR",
                   help="--score: also the draws computed into DIR (the same cells, another --seed)")
    p.add_argument("--scores-out", default=None, help="--score: where scores.csv/json go (default --out)")
    p.add_argument("--rank", nargs="+", metavar="DIR", help="rank the candidates of these scores folders by mean "
                   "val AUROC (one held-out class each); nothing else is run")
    p.add_argument("--compute", action="store_true")
    p.add_argument("--score", action="store_true")
    p.add_argument("--baseline", default=None)
    p.add_argument("--tables-out", default=None, help="write val/test tables with anomaly_score = a candidate")
    p.add_argument("--tables-score", default=None, help="which candidate (default: the one chosen on val)")
    p.add_argument("--speed", type=int, default=0, metavar="N", help="time N cells of --table test=… (see above)")
    p.add_argument("--cascade", help="the cascade whose stages --speed times")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    if args.rank:
        rank(args.rank)
        return 0
    missing = [f"--{k}" for k in ("holdout", "out", "table") if not getattr(args, k)]
    if missing:
        p.error(f"{', '.join(missing)} required (all but --rank)")
    if args.speed:
        speed(args)
    if args.compute:
        compute(args)
    if args.score:
        score(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
