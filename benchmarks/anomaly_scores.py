"""Which anomaly score flags a cell of a class the model never saw (issue 25): every candidate from one set of UNet
calls, chosen on validation cells, reported once on test.

Stage 1 (``--compute``, the UNet work, resumable in chunks): for each cell of a split, framed like the training cells,
the classifier's own draw plan (seed, timesteps, dihedral views of ``ClassifierConfig()``), and at each draw the
noise-prediction error under every class **and the null (unconditional) class**, over the whole image and inside the
centred disc. Saved as ``<split>.npz`` (errors (N, K, C+1, 2), timesteps (N, K), labels, subtypes, names).

Stage 2 (``--score``, no UNet): every candidate score from those arrays (see ``CANDIDATES``), each reference
statistic fitted on validation cells of the trained classes only; AUROC and sensitivity at specificity 0.962 of
the held-out class against the trained classes, on val (where the default is chosen) and test (reported once), per
subtype of the held-out class on test; with ``--baseline`` the baseline CNN's 1 − max softmax and combinations.

    python benchmarks/anomaly_scores.py --model RUNS/holdout-ig/model --holdout ig --out RUNS/anomaly-ig --compute
    python benchmarks/anomaly_scores.py --model ... --holdout ig --out RUNS/anomaly-ig --score \\
        --baseline RUNS/holdout-ig-baseline
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

REGIONS = ("image", "disc")
SPEC = 0.962          # CytoDiffusion's operating point


def split_items(shared: Path, split: str, per_class: int | None) -> pd.DataFrame:
    from cytomodel.evaluate import balanced_items

    man = pd.read_csv(shared / "pbc" / "manifest.csv")
    sub = dict(zip(man.path, man.subtype))
    items = balanced_items(shared / "pbc", split, per_class, None, seed=0)
    rel = [str(Path(p).relative_to(shared / "pbc")) for p, _ in items]
    return pd.DataFrame({"path": [str(p) for p, _ in items], "label": [lab for _, lab in items],
                         "subtype": [sub.get(r, "") for r in rel]})


def draw_errors(model, arrays: np.ndarray, cfg) -> tuple[np.ndarray, np.ndarray]:
    """(N, K, C+1, 2) errors (classes, then null; image, disc) and (N, K) timesteps, on the classifier's draw plan."""
    import torch

    from cytomodel.classify.draw_plan import dihedral, draw_plan
    from cytomodel.classify.errors import error_weights
    from cytomodel.runtime import autocast

    res, n_lab = model.resolution, len(model.class_names) + 1
    alphas = model.scheduler.alphas_cumprod.float()
    n_t = model.scheduler.config.num_train_timesteps
    disc = error_weights(dataclasses.replace(cfg, error_region="disc"), res)[0, 0] * 3   # sums to 1 over the disc
    x0 = model.encode(arrays).float()
    out = np.zeros((len(arrays), cfg.trials, n_lab, 2))
    tss = np.zeros((len(arrays), cfg.trials), dtype=np.int64)
    with torch.no_grad():
        for i in range(len(arrays)):
            g, ts, views = draw_plan(arrays[i], cfg, n_t)
            tss[i] = ts
            xt, eps = [], []
            for k in range(cfg.trials):
                e = torch.randn((3, res, res), generator=g)
                a = alphas[int(ts[k])]
                xt.append(a.sqrt() * dihedral(x0[i], int(views[k])) + (1 - a).sqrt() * e)
                eps.append(e)
            xt = torch.stack(xt).repeat_interleave(n_lab, 0)
            eps = torch.stack(eps).repeat_interleave(n_lab, 0)
            t_in = torch.tensor(ts).repeat_interleave(n_lab)
            y_in = torch.arange(n_lab).repeat(cfg.trials)
            with autocast(model.device, cfg.precision), model.lab_condition(cfg.lab_condition):
                pred = model.unet(xt, t_in, class_labels=y_in).sample.float()
            sq = (eps - pred).pow(2).mean(dim=1)                      # (K*L, H, W)
            img = sq.mean(dim=(1, 2)).view(cfg.trials, n_lab)
            dsc = (sq * disc).sum(dim=(1, 2)).view(cfg.trials, n_lab)
            out[i] = torch.stack([img, dsc], dim=-1).numpy()
    return out, tss


def compute(model, items: pd.DataFrame, path: Path, cfg, chunk: int = 64) -> None:
    from tqdm.auto import tqdm

    from cytomodel.classify.batch import load_images_for

    parts = path.with_suffix(".parts")
    parts.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=len(items), desc=path.stem, unit="img")
    for start in range(0, len(items), chunk):
        part = parts / f"{start:06d}.npz"
        sl = items.iloc[start:start + chunk]
        if not part.is_file():
            arrays, names, _ = load_images_for(model, list(sl.path), on_error="raise")
            errs, ts = draw_errors(model, arrays, cfg)
            np.savez(part, errors=errs, timesteps=ts)
        bar.update(len(sl))
    bar.close()
    got = [np.load(p) for p in sorted(parts.glob("*.npz"))]
    np.savez(path, errors=np.concatenate([g["errors"] for g in got]),
             timesteps=np.concatenate([g["timesteps"] for g in got]),
             labels=items.label.to_numpy(str), subtypes=items.subtype.to_numpy(str), names=items.path.to_numpy(str))


# ------------------------------------------------------------------------------------------------ scores
def _auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(np.r_[np.ones(len(pos)), np.zeros(len(neg))], np.r_[pos, neg]))


def _sens_at_spec(pos: np.ndarray, neg: np.ndarray, spec: float = SPEC) -> float:
    thr = np.quantile(neg, spec)
    return float(np.mean(pos > thr))


class Reference:
    """Per-class (and per-timestep-bin) location and scale of a per-draw statistic, fitted on validation cells of
    the trained classes grouped by their **predicted** class (what is known at test time)."""

    def __init__(self, stat: np.ndarray, ts: np.ndarray, pred: np.ndarray, n_classes: int, bins: int, t_range):
        edges = np.linspace(t_range[0], t_range[1] + 1, bins + 1)
        self.edges = edges
        b = np.clip(np.digitize(ts, edges) - 1, 0, bins - 1)
        self.loc = np.zeros((n_classes, bins))
        self.scale = np.ones((n_classes, bins))
        for c in range(n_classes):
            for j in range(bins):
                v = stat[(pred == c)[:, None] & (b == j)]
                if len(v) < 8:
                    v = stat[b == j]
                self.loc[c, j] = np.median(v)
                self.scale[c, j] = max(1.4826 * np.median(np.abs(v - np.median(v))), 1e-12)

    def z(self, stat: np.ndarray, ts: np.ndarray, cls: np.ndarray) -> np.ndarray:
        b = np.clip(np.digitize(ts, self.edges) - 1, 0, self.loc.shape[1] - 1)
        return (stat - self.loc[cls[:, None], b]) / self.scale[cls[:, None], b]


def _per_class_z(stat_val: np.ndarray, stat_test: np.ndarray, pred_val: np.ndarray, pred_test: np.ndarray,
                 trained_val: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Image-level statistics standardised per predicted class by the library's reference, fitted on trained-class
    val cells."""
    from cytomodel.classify.novelty import fit_reference, standardise

    names = [str(c) for c in range(n_classes)]
    ref = fit_reference(stat_val[trained_val], pred_val[trained_val].astype(str), names)
    return standardise(stat_val, pred_val.astype(str), ref), standardise(stat_test, pred_test.astype(str), ref)


def candidate_scores(val: dict, test: dict, trained: np.ndarray, n_classes: int, t_range, bins: int = 8
                     ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (val score, test score); higher = more anomalous."""
    from cytomodel.classify import ClassifierConfig
    from cytomodel.classify.errors import ErrorEstimate, replay_strategy
    from cytomodel.classify.scores import anomaly_scores, fit_temperature, softmax_neg

    out = {}
    for r, region in enumerate(REGIONS):
        def stats(d):
            e = d["errors"][..., r]                          # (N, K, C+1)
            cls_e, null_e = e[:, :, :n_classes], e[:, :, n_classes]
            mean = cls_e.mean(axis=1)
            pred = mean.argmin(axis=1)
            best = cls_e[np.arange(len(e)), :, pred]         # (N, K)
            return cls_e, null_e, mean, pred, best

        v, t = stats(val), stats(test)
        vt = trained(val)
        # CytoDiffusion's −ζ, over all classes at every draw, and as the default top-k strategy computes it
        out[f"zeta_exhaustive_{region}"] = (anomaly_scores(v[2]), anomaly_scores(t[2]))
        topk = ClassifierConfig()
        rep = []
        for d, s in ((val, v), (test, t)):
            full = ErrorEstimate(s[2], s[0], d["timesteps"], np.full(len(s[2]), s[0].shape[1]),
                                 np.zeros(len(s[2])))
            rep.append(anomaly_scores(replay_strategy(full, topk).errors))
        out[f"zeta_topk_{region}"] = tuple(rep)
        # the classifier's own uncertainty: max softmax (T fitted on trained-class val cells) and the error margin
        labels_v = v[3][vt] if "label_index" not in val else val["label_index"][vt]
        temp, _, _ = fit_temperature(v[2][vt], labels_v)
        out[f"max_softmax_{region}"] = tuple(-softmax_neg(s[2], temp).max(axis=1) for s in (v, t))
        out[f"error_margin_{region}"] = tuple(-np.diff(np.sort(s[2], axis=1)[:, :2], axis=1)[:, 0] for s in (v, t))
        # how poorly the best class explains the cell: log error, z-scored per class and timestep bin
        ref = Reference(np.log(v[4][vt]), val["timesteps"][vt], v[3][vt], n_classes, bins, t_range)
        out[f"best_logerr_z_{region}"] = tuple(ref.z(np.log(s[4]), d["timesteps"], s[3]).mean(axis=1)
                                               for d, s in ((val, v), (test, t)))
        # how much the best class helps over no class: log(e_best / e_null), z-scored per class and timestep bin
        gap_v, gap_t = np.log(v[4] / v[1]), np.log(t[4] / t[1])
        ref = Reference(gap_v[vt], val["timesteps"][vt], v[3][vt], n_classes, bins, t_range)
        out[f"class_gain_z_{region}"] = (ref.z(gap_v, val["timesteps"], v[3]).mean(axis=1),
                                          ref.z(gap_t, test["timesteps"], t[3]).mean(axis=1))
        out[f"class_gain_raw_{region}"] = (gap_v.mean(axis=1), gap_t.mean(axis=1))
        # the same two statistics averaged over the image's draws first, then z-scored per predicted class only
        # (no timestep bins: the draw plan spreads every image's draws over the same range)
        # (the library's own reference: cytomodel.classify.novelty, what `--anomaly` computes)
        for stat_name, sv_, st_ in (("best_logerr", np.log(v[4]), np.log(t[4])), ("class_gain", gap_v, gap_t)):
            out[f"{stat_name}_cls_{region}"] = _per_class_z(sv_.mean(axis=1), st_.mean(axis=1), v[3], t[3], vt,
                                                            n_classes)
        # class gain from low-noise draws only (fine detail) and from high-noise draws only (overall shape)
        for part, keep in (("lowt", lambda ts: ts < 500), ("hight", lambda ts: ts >= 500)):
            mv = np.where(keep(val["timesteps"]), gap_v, np.nan)
            mt = np.where(keep(test["timesteps"]), gap_t, np.nan)
            out[f"class_gain_cls_{part}_{region}"] = _per_class_z(np.nanmean(mv, axis=1), np.nanmean(mt, axis=1),
                                                                  v[3], t[3], vt, n_classes)
        # the null's own error (how unlike the training distribution as a whole), z-scored per timestep bin
        zero = np.zeros(len(v[3]), dtype=int)
        ref = Reference(np.log(v[1][vt]), val["timesteps"][vt], zero[vt], 1, bins, t_range)
        out[f"null_logerr_z_{region}"] = (ref.z(np.log(v[1]), val["timesteps"], zero).mean(axis=1),
                                          ref.z(np.log(t[1]), test["timesteps"], np.zeros(len(t[3]), int)).mean(1))
    return out


def quantile_of(ref: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Where x falls among reference (trained-class validation) scores: a scale-free score to combine."""
    ref = np.sort(ref)
    return np.searchsorted(ref, x, side="right") / (len(ref) + 1)


def speed(model, items: pd.DataFrame, n: int, repeats: int = 2) -> dict:
    """Seconds per cell of the default classifier (−ζ) and of each novelty score, side by side on the same cells,
    alternating runs so that machine load falls on all alike."""
    from cytomodel.classify import ClassifierConfig, classify_arrays
    from cytomodel.classify.batch import load_images_for

    arrays, _, _ = load_images_for(model, list(items.path[:n]), on_error="raise")
    times: dict[str, list[float]] = {a: [] for a in ("zeta", "best-error", "class-gain")}
    for _ in range(repeats):
        for anomaly in times:
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                classify_arrays(model, arrays, ClassifierConfig(anomaly=anomaly))
            times[anomaly].append((time.perf_counter() - t0) / len(arrays))
    out = {a: float(np.median(v)) for a, v in times.items()}
    out["ratio_class_gain_to_zeta"] = out["class-gain"] / out["zeta"]
    out["ratio_best_error_to_zeta"] = out["best-error"] / out["zeta"]
    out["cells"] = len(arrays)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--holdout", required=True, help="the class the model never saw")
    p.add_argument("--out", required=True)
    p.add_argument("--shared", default=str(REPO.parent / "shared" / "data"))
    p.add_argument("--val-per-class", type=int, default=80)
    p.add_argument("--test-per-class", type=int, default=None, help="default: every test cell")
    p.add_argument("--compute", action="store_true")
    p.add_argument("--score", action="store_true")
    p.add_argument("--baseline", help="the baseline CNN trained without the same class")
    p.add_argument("--speed", type=int, default=0, metavar="N",
                   help="also time the classifier per cell with each anomaly score on N test cells")
    args = p.parse_args(argv)
    out, shared = Path(args.out), Path(args.shared)
    out.mkdir(parents=True, exist_ok=True)

    from cytomodel.classify import ClassifierConfig
    from cytomodel.models.loading import load_model

    model = load_model(args.model)
    cfg = ClassifierConfig(strategy="exhaustive")
    splits = {"val": split_items(shared, "val", args.val_per_class), "test": split_items(shared, "test", args.test_per_class)}
    if args.compute:
        for name, items in splits.items():
            t0 = time.perf_counter()
            compute(model, items, out / f"{name}.npz", cfg)
            print(f"{name}: {len(items)} cells, {time.perf_counter() - t0:.0f} s")
    if args.speed:
        res = speed(model, splits["test"], args.speed)
        print(json.dumps(res, indent=1))
        (out / "speed.json").write_text(json.dumps(res, indent=1))
    if not args.score:
        return 0
    data = {k: dict(np.load(out / f"{k}.npz")) for k in splits}
    n_classes = len(model.class_names)

    def trained(d):
        return np.array([lab != args.holdout for lab in d["labels"]])

    data["val"]["label_index"] = np.array([model.class_names.index(x) if x in model.class_names else -1
                                           for x in data["val"]["labels"]])
    scores = candidate_scores(data["val"], data["test"], trained, n_classes, (cfg.t_min, cfg.t_max))
    vt = trained(data["val"])
    for a_, b_ in (("class_gain_cls_disc", "error_margin_disc"), ("class_gain_cls_image", "error_margin_image"),
                   ("class_gain_cls_disc", "zeta_topk_disc"), ("best_logerr_cls_disc", "error_margin_disc")):
        (av_, at_), (bv_, bt_) = scores[a_], scores[b_]
        scores[f"{a_}+{b_}"] = ((quantile_of(av_[vt], av_) + quantile_of(bv_[vt], bv_)) / 2,
                                (quantile_of(av_[vt], at_) + quantile_of(bv_[vt], bt_)) / 2)
    if args.baseline:
        from cytomodel.data import framed_arrays
        from cytomodel.evaluate import load_baseline

        clf = load_baseline(args.baseline)
        msp = []
        for k in ("val", "test"):
            cells = clf.intake().frame(list(data[k]["names"]))
            arrays, keep = framed_arrays(cells, clf.resolution)
            assert len(keep) == len(cells)
            msp.append(1 - clf.predict_proba(arrays).max(axis=1))
        scores["baseline_msp"] = tuple(msp)
        vt = trained(data["val"])
        for name in [k for k in list(scores) if k != "baseline_msp"]:
            sv, st = scores[name]
            bv, bt = scores["baseline_msp"]
            scores[f"{name}+baseline"] = (
                (quantile_of(sv[vt], sv) + quantile_of(bv[vt], bv)) / 2,
                (quantile_of(sv[vt], st) + quantile_of(bv[vt], bt)) / 2)
    rows = []
    for name, (sv, st) in scores.items():
        row = {"score": name}
        for split, s in (("val", sv), ("test", st)):
            d = data[split]
            held = ~trained(d)
            row[f"{split}_auroc"] = _auroc(s[held], s[~held])
            row[f"{split}_sens@{SPEC}"] = _sens_at_spec(s[held], s[~held])
        d = data["test"]
        for sub in sorted(set(d["subtypes"][~trained(d)])):
            m = d["subtypes"] == sub
            row[f"test_auroc_{sub}"] = _auroc(st[m], st[trained(d)])
        rows.append(row)
    table = pd.DataFrame(rows).sort_values("val_auroc", ascending=False)
    pd.set_option("display.width", 250)
    print(table.round(3).to_string(index=False))
    for split in ("val", "test"):
        pred = data[split]["errors"][..., :n_classes, 0].mean(axis=1).argmin(axis=1)
        lab = np.array([model.class_names.index(x) if x in model.class_names else -1 for x in data[split]["labels"]])
        print(f"{split}: trained-class accuracy (exhaustive, image) {np.mean(pred[lab >= 0] == lab[lab >= 0]):.3f}")
    table.to_csv(out / "scores.csv", index=False)
    (out / "scores.json").write_text(json.dumps({"model": args.model, "holdout": args.holdout,
                                                 "val_per_class": args.val_per_class,
                                                 "rows": table.to_dict(orient="records")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
