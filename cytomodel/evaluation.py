"""Evidence for the diffusion classifier, side by side with the discriminative baseline (``cytomodel evaluate``).

Sections (each runs when its inputs are given; every classification is cached in ``--out`` and resumable):

1. in-domain: accuracy, balanced accuracy, per-class recall, confusion matrix on a test split;
2. calibration: ECE (15 equal-width bins), Brier, NLL, reliability diagram, before (T = 1 or the model's T) and
   after fitting T on the validation split; error rate among the 10 % most confident and the share of all errors
   that sit there;
3. anomaly: a model trained with one class held out (``cytomodel train-variant --holdout-class``) scores held-out
   cells against in-distribution test cells: AUROC, and sensitivity/specificity at the threshold that maximises
   Youden's J on the *validation* split; the baseline (trained without that class too) with max-softmax and logit
   margin scores on the same images;
4. low data: models trained with 10/20/50 labelled images per class (``train-variant --labelled-per-class``):
   accuracy and balanced accuracy of both;
5. domain shift: a model trained on PBC tested on another dataset over the shared classes (candidates restricted
   to those classes for both classifiers): balanced accuracy.

Training variants (``train_variant``/``cytomodel train-variant``) filter the ImageArrays before ``train()``:

* ``holdout_class``: drop a class and its label.
* ``low_data``: keep ``n`` labelled images per class; with ``unlabelled=True`` (default) every other training image
  stays in with the *null* label (the classifier-free-guidance class), so the model still learns what blood cells
  look like from all images while class information comes only from the n per class. Labelled images are
  repeated so that they make up ``labelled_share`` (default ½) of the samples the trainer draws.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .data import DataError, ImageArrays, LabelledImage
from cytocore.provenance import hash_records, provenance_record, write_json


# ============================================================================================== metrics
def classification_summary(labels: np.ndarray, pred: np.ndarray, n_classes: int) -> dict[str, Any]:
    labels, pred = np.asarray(labels), np.asarray(pred)
    present = np.unique(labels)
    recall = {int(c): float(np.mean(pred[labels == c] == c)) for c in present}
    conf = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(conf, (labels, pred), 1)
    return {"n": int(len(labels)), "accuracy": float(np.mean(labels == pred)),
            "balanced_accuracy": float(np.mean(list(recall.values()))), "recall": recall, "confusion": conf}


def ece_score(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error of the top-class confidence, equal-width bins."""
    conf = probs.max(1)
    correct = probs.argmax(1) == labels
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(total)


def brier_score(probs: np.ndarray, labels: np.ndarray) -> float:
    onehot = np.eye(probs.shape[1])[labels]
    return float(((probs - onehot) ** 2).sum(1).mean())


def nll_score(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1)).mean())


def confident_errors(probs: np.ndarray, labels: np.ndarray, top: float = 0.10) -> tuple[float, float]:
    """(error rate among the ``top`` most confident predictions, share of all errors that fall among them)."""
    conf = probs.max(1)
    wrong = probs.argmax(1) != labels
    k = max(1, int(round(top * len(conf))))
    sel = np.argsort(-conf, kind="stable")[:k]
    return float(wrong[sel].mean()), float(wrong[sel].sum() / max(1, wrong.sum()))


def calibration_summary(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    rate, share = confident_errors(probs, labels)
    return {"ece": ece_score(probs, labels), "brier": brier_score(probs, labels), "nll": nll_score(probs, labels),
            "top10_error_rate": rate, "top10_error_share": share}


def youden_threshold(scores: np.ndarray, is_anomaly: np.ndarray) -> float:
    """The score threshold (flag if score >= threshold) maximising sensitivity + specificity − 1."""
    from sklearn.metrics import roc_curve

    fpr, tpr, thr = roc_curve(is_anomaly.astype(int), scores)
    j = int(np.argmax(tpr - fpr))
    return float(thr[j]) if np.isfinite(thr[j]) else float(np.max(scores))


def anomaly_summary(val_scores, val_anom, test_scores, test_anom) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score

    thr = youden_threshold(np.asarray(val_scores), np.asarray(val_anom, bool))
    s, a = np.asarray(test_scores), np.asarray(test_anom, bool)
    return {"auroc": float(roc_auc_score(a.astype(int), s)), "threshold": thr,
            "sensitivity": float(np.mean(s[a] >= thr)), "specificity": float(np.mean(s[~a] < thr)),
            "n_anomalous": int(a.sum()), "n_normal": int((~a).sum())}


# ============================================================================================== training variants
def _variant(data: ImageArrays, images, labels, class_names, records, spec: dict) -> ImageArrays:
    return ImageArrays(np.ascontiguousarray(images), np.asarray(labels, dtype=np.int64), list(class_names),
                       list(records), hash_records([[data.data_hash, json.dumps(spec, sort_keys=True)]]),
                       list(data.skipped))


def holdout_class(data: ImageArrays, cls: str) -> ImageArrays:
    """``data`` without class ``cls`` (its images dropped, the remaining labels re-indexed)."""
    if cls not in data.class_names:
        raise ValueError(f"--holdout-class {cls!r} is not a class of the data ({', '.join(data.class_names)})")
    k = data.class_names.index(cls)
    keep = data.labels != k
    names = [c for c in data.class_names if c != cls]
    lut = np.array([names.index(c) if c != cls else -1 for c in data.class_names])
    return _variant(data, data.images[keep], lut[data.labels[keep]], names,
                    [r for r, m in zip(data.records, keep) if m], {"holdout_class": cls})


def low_data(data: ImageArrays, per_class: int, seed: int = 0, unlabelled: bool = True,
             labelled_share: float = 0.5) -> ImageArrays:
    """``per_class`` labelled images per class; the rest null-labelled (or dropped with ``unlabelled=False``).

    The null label is ``len(class_names)``, the index the model uses for classifier-free guidance, so the trainer
    needs no change. Labelled images are repeated to make up about ``labelled_share`` of the training samples.
    """
    rng = np.random.default_rng(seed)
    n_cls = len(data.class_names)
    chosen = []
    for c in range(n_cls):
        idx = np.flatnonzero(data.labels == c)
        if len(idx) < per_class:
            raise ValueError(f"class {data.class_names[c]} has only {len(idx)} images, fewer than {per_class}")
        chosen.append(np.sort(rng.choice(idx, per_class, replace=False)))
    lab = np.concatenate(chosen)
    spec = {"labelled_per_class": per_class, "seed": seed, "unlabelled": unlabelled, "labelled_share": labelled_share,
            "labelled_index": lab.tolist()}
    if not unlabelled:
        return _variant(data, data.images[lab], data.labels[lab], data.class_names,
                        [data.records[i] for i in lab], spec)
    rest = np.setdiff1d(np.arange(len(data.labels)), lab)
    reps = max(1, int(round(labelled_share / (1 - labelled_share) * len(rest) / max(1, len(lab)))))
    idx = np.concatenate([np.tile(lab, reps), rest])
    labels = np.concatenate([np.tile(data.labels[lab], reps), np.full(len(rest), n_cls)])
    records = [data.records[i] for i in idx]
    return _variant(data, data.images[idx], labels, data.class_names, records, spec)


def train_variant(cfg, data: ImageArrays, out: str | Path, holdout: str | None = None,
                  labelled_per_class: int | None = None, unlabelled: bool = True, seed: int = 0, **train_kwargs):
    """Train a diffusion model (``training.train``, unchanged) on a held-out-class or low-data variant of ``data``."""
    from .training import train

    variant = data
    if holdout:
        variant = holdout_class(variant, holdout)
    if labelled_per_class:
        variant = low_data(variant, labelled_per_class, seed=seed, unlabelled=unlabelled)
    model = train(cfg, variant, out, **train_kwargs)
    meta_path = Path(out) / "model" / "cytomodel.json"
    meta = json.loads(meta_path.read_text())
    meta["variant"] = {"holdout_class": holdout, "labelled_per_class": labelled_per_class,
                       "unlabelled_as_null": bool(unlabelled and labelled_per_class), "seed": seed,
                       "source_data_hash": data.data_hash}
    write_json(meta_path, meta)
    model.metadata = meta
    return model


def train_variant_baseline(data: ImageArrays, val: ImageArrays | None, out: str | Path, holdout: str | None = None,
                           labelled_per_class: int | None = None, seed: int = 0, epochs: int = 20, **kw):
    """The baseline on the same variant (labelled images only: a discriminative model cannot use the rest)."""
    from .baseline import train_baseline

    variant = data
    if holdout:
        variant = holdout_class(variant, holdout)
        if val is not None:
            val = holdout_class(val, holdout)
    if labelled_per_class:
        variant = low_data(variant, labelled_per_class, seed=seed, unlabelled=False)
    clf = train_baseline(variant, val, epochs=epochs, seed=seed, **kw)
    clf.save_pretrained(out)
    return clf


# ============================================================================================== sampling, running
def balanced_items(source, split, per_class: int | None, classes: Sequence[str] | None = None,
                   seed: int = 0) -> list[tuple[Path, str]]:
    """(path, label) of at most ``per_class`` images per class of a split, chosen deterministically (all if None)."""
    from .data import scan_dataset

    records = scan_dataset(source, split=split)
    by: dict[str, list[LabelledImage]] = {}
    for r in records:
        by.setdefault(r.label, []).append(r)
    names = sorted(by) if classes is None else [c for c in classes if c in by]
    rng = np.random.default_rng(seed)
    out = []
    for c in names:
        rs = by[c]
        idx = np.sort(rng.permutation(len(rs))[:per_class]) if per_class else np.arange(len(rs))
        out += [(rs[i].path, c) for i in idx]
    return out


def _arrays(items, resolution) -> tuple[np.ndarray, list[str]]:
    from .data import load_image, preprocess

    return (np.stack([preprocess(load_image(p), resolution, name=str(p)) for p, _ in items]),
            [str(p) for p, _ in items])


def _probs_from(df: pd.DataFrame, names: Sequence[str], temperature: float) -> np.ndarray:
    from .classifier import softmax_neg

    return softmax_neg(df[[f"err_{c}" for c in names]].to_numpy(), temperature)


# ============================================================================================== figures
def _fig_confusion(conf: np.ndarray, names: Sequence[str], title: str, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5))
    norm = conf / np.maximum(conf.sum(1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(names)):
        for j in range(len(names)):
            if conf[i, j]:
                ax.text(j, i, str(conf[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _fig_reliability(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, bins: int = 15) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    edges = np.linspace(0, 1, bins + 1)
    for name, (probs, labels) in curves.items():
        conf = probs.max(1)
        correct = probs.argmax(1) == labels
        idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
        xs, ys = [], []
        for b in range(bins):
            m = idx == b
            if m.sum() >= 3:
                xs.append(conf[m].mean())
                ys.append(correct[m].mean())
        ax.plot(xs, ys, "o-", label=f"{name} (ECE {ece_score(probs, labels):.3f})")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=8)
    ax.set_title("reliability (bins with >= 3 images)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _fig_roc(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_auc_score, roc_curve

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    for name, (scores, anom) in curves.items():
        fpr, tpr, _ = roc_curve(anom.astype(int), scores)
        ax.plot(fpr, tpr, label=f"{name} (AUROC {roc_auc_score(anom.astype(int), scores):.3f})")
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ============================================================================================== evaluate
@dataclasses.dataclass
class EvalInputs:
    model: str
    data: str
    out: str
    test_split: str = "test"
    val_split: str = "val"
    per_class: int | None = None
    baseline: str | None = None
    shift_data: str | None = None
    shift_split: str | None = None
    anomaly_model: str | None = None
    anomaly_baseline: str | None = None
    low_data: list[tuple[int, str, str | None]] = dataclasses.field(default_factory=list)
    seed: int = 0


class Report:
    def __init__(self, out: Path):
        self.out = out
        self.rows: list[dict[str, Any]] = []
        self.md: list[str] = []

    def add(self, section: str, metric: str, classifier: str, value: float, n: int | None = None, note: str = ""):
        self.rows.append({"section": section, "metric": metric, "classifier": classifier, "value": value, "n": n,
                          "note": note})

    def table(self, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        def fmt(v):
            return f"{v:.4f}" if isinstance(v, float) else ("" if v is None else str(v))
        self.md.append("| " + " | ".join(header) + " |")
        self.md.append("|" + "---|" * len(header))
        for r in rows:
            self.md.append("| " + " | ".join(fmt(v) for v in r) + " |")
        self.md.append("")


def evaluate(inp: EvalInputs, config=None, progress: bool = True) -> Report:
    from .classifier import ClassifierConfig, classify_folder, fit_temperature, softmax_neg
    from .model import load_model
    from .runtime import configure_runtime

    configure_runtime()
    cfg = (config or ClassifierConfig()).validate()
    cfg1 = dataclasses.replace(cfg, temperature=1.0)  # errors do not depend on T; probabilities are recomputed
    out = Path(inp.out)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    rep = Report(out)
    model = load_model(inp.model)
    names = model.class_names
    idx = {c: i for i, c in enumerate(names)}
    baseline = None
    if inp.baseline:
        from .baseline import load_baseline
        baseline = load_baseline(inp.baseline)
        if baseline.class_names != names:
            raise ValueError(f"baseline classes {baseline.class_names} differ from the model's {names}")
    prov = {"inputs": dataclasses.asdict(inp), "classifier_config": cfg.to_dict(),
            "model_train_steps": model.metadata.get("train_steps"), "model_data_hash": model.metadata.get("data_hash"),
            "baseline": None if baseline is None else {k: baseline.metadata.get(k) for k in ("data_hash", "seed",
                                                                                             "code_version")},
            **provenance_record()}
    steps = model.metadata.get("train_steps")
    rep.md += [f"# Diffusion classifier evaluation", "",
               f"Model `{inp.model}` (step {steps}, T in model: {model.temperature}); baseline `{inp.baseline}`; "
               f"data `{inp.data}`; images per class: {inp.per_class or 'all'}; classifier: {cfg.strategy}, "
               f"{cfg.trials} max trials, t in [{cfg.t_min}, {cfg.t_max}], {cfg.weighting} weighting, TTA "
               f"{cfg.tta}, {cfg.precision}, seed {cfg.seed}.", ""]

    def run(name, items, mdl=model, classes=None):
        return classify_folder(mdl, None, out / f"{name}.csv", cfg1, items=items, classes=classes,
                               progress=progress)

    shift_items = shared = None
    if inp.shift_data:  # check the inputs before the long runs
        from .data import scan_dataset

        recs = scan_dataset(inp.shift_data, split=inp.shift_split)
        shared = [c for c in names if c in {r.label for r in recs}]
        if len(shared) < 2:
            raise DataError(f"--shift-data {inp.shift_data} shares fewer than 2 classes with the model ({names})")
        shift_items = [(r.path, r.label) for r in recs if r.label in shared]

    # ---------------------------------------------------------------------------------- 1 + 2: in-domain, calibration
    val_items = balanced_items(inp.data, inp.val_split, inp.per_class, names, inp.seed)
    test_items = balanced_items(inp.data, inp.test_split, inp.per_class, names, inp.seed)
    val = run("val_diffusion", val_items)
    test = run("test_diffusion", test_items)
    yv = val["label"].map(idx).to_numpy()
    yt = test["label"].map(idx).to_numpy()
    t_fit, nll1, nllt = fit_temperature(val[[f"err_{c}" for c in names]].to_numpy(), yv)
    p_before = _probs_from(test, names, model.temperature or 1.0)
    p_after = _probs_from(test, names, t_fit)
    pred = p_after.argmax(1)
    s_diff = classification_summary(yt, pred, len(names))
    results = {"diffusion": (s_diff, p_after)}
    curves = {f"diffusion, T={model.temperature or 1.0:.3g}": (p_before, yt), f"diffusion, T={t_fit:.3g} (val)": (
        p_after, yt)}
    if baseline is not None:
        xt, _ = _arrays(test_items, baseline.resolution)
        pb = baseline.predict_proba(xt)
        results["baseline"] = (classification_summary(yt, pb.argmax(1), len(names)), pb)
        curves["baseline"] = (pb, yt)
    rep.md += ["## 1. In-domain classification", "",
               f"{inp.test_split} split, {len(yt)} images; mean UNet calls/image "
               f"{test['unet_calls'].mean():.1f}.", ""]
    header = ["classifier", "accuracy", "balanced accuracy"] + [f"recall {c}" for c in names]
    rows = []
    for who, (s, _) in results.items():
        rows.append([who, s["accuracy"], s["balanced_accuracy"]] + [s["recall"].get(i) for i in range(len(names))])
        rep.add("in-domain", "accuracy", who, s["accuracy"], s["n"])
        rep.add("in-domain", "balanced_accuracy", who, s["balanced_accuracy"], s["n"])
        for i, c in enumerate(names):
            if i in s["recall"]:
                rep.add("in-domain", f"recall_{c}", who, s["recall"][i], int((yt == i).sum()))
        _fig_confusion(s["confusion"], names, f"{who}: confusion ({inp.test_split})",
                       out / "figures" / f"confusion_{who}.png")
    rep.table(header, rows)
    rep.md += ["![confusion](figures/confusion_diffusion.png)" + (
        " ![confusion](figures/confusion_baseline.png)" if baseline is not None else ""), ""]
    rep.add("in-domain", "unet_calls_per_image", "diffusion", float(test["unet_calls"].mean()), len(test))

    rep.md += ["## 2. Calibration", "",
               f"Temperature fitted on {len(yv)} {inp.val_split} images by NLL: T = {t_fit:.4g} "
               f"(val NLL {nll1:.4f} at T=1 -> {nllt:.4f}).", ""]
    cal_rows = []
    for who, (probs, lab) in curves.items():
        c = calibration_summary(probs, lab)
        cal_rows.append([who, c["ece"], c["brier"], c["nll"], c["top10_error_rate"], c["top10_error_share"]])
        for k, v in c.items():
            rep.add("calibration", k, who, v, len(lab))
    rep.add("calibration", "temperature", "diffusion", t_fit, len(yv), f"fitted on {inp.val_split}")
    rep.table(["classifier", "ECE", "Brier", "NLL", "error rate in top-10% confident",
               "share of all errors in top-10%"], cal_rows)
    _fig_reliability(curves, out / "figures" / "reliability.png")
    rep.md += ["![reliability](figures/reliability.png)", ""]

    # ---------------------------------------------------------------------------------- 3: anomaly
    if inp.anomaly_model:
        amodel = load_model(inp.anomaly_model)
        held = [c for c in names if c not in amodel.class_names]
        if len(held) != 1:
            raise ValueError(f"--anomaly-model should know all classes but one of {names}; it knows "
                             f"{amodel.class_names}")
        held = held[0]
        av = run("anomaly_val_diffusion", val_items, mdl=amodel)
        at = run("anomaly_test_diffusion", test_items, mdl=amodel)
        va, ta = (av["label"] == held).to_numpy(), (at["label"] == held).to_numpy()
        # ζ (CytoDiffusion's score) first; then the diffusion analogues of the baseline's two scores and the
        # best class's own error — every score on the same cached errors, all reported, none picked on test data
        acols = [f"err_{c}" for c in amodel.class_names]
        ev, et = av[acols].to_numpy(), at[acols].to_numpy()
        y_in = av.loc[~va, "label"].map({c: i for i, c in enumerate(amodel.class_names)}).to_numpy()
        t_anom, _, _ = fit_temperature(ev[~va], y_in)

        def val_and_test(score):
            return score(ev), score(et)

        d_scores = {
            "diffusion (-zeta)": (av["anomaly_score"].to_numpy(), at["anomaly_score"].to_numpy()),
            f"diffusion max-softmax (T {t_anom:.3g} fitted on in-distribution {inp.val_split})":
                val_and_test(lambda e: -softmax_neg(e, t_anom).max(1)),
            "diffusion error margin": val_and_test(lambda e: -np.diff(np.sort(e, 1)[:, :2], 1)[:, 0]),
            "diffusion best-class error": val_and_test(lambda e: e.min(1)),
        }
        summ, roc = {}, {}
        for label, (sv, st) in d_scores.items():
            summ[label] = anomaly_summary(sv, va, st, ta)
            roc[label] = (st, ta)
        if inp.anomaly_baseline:
            from .baseline import load_baseline
            ab = load_baseline(inp.anomaly_baseline)
            xv, _ = _arrays(val_items, ab.resolution)
            xt, _ = _arrays(test_items, ab.resolution)
            for label, fn in (("baseline max-softmax", lambda x: -ab.predict_proba(x).max(1)),
                              ("baseline logit margin", lambda x: -np.diff(np.sort(ab.logits(x), 1)[:, -2:], 1)[:, 0])):
                sv, st = fn(xv), fn(xt)
                summ[label] = anomaly_summary(sv, va, st, ta)
                roc[label] = (st, ta)
        rep.md += ["## 3. Anomaly detection", "",
                   f"Held-out class: **{held}**; in-distribution: the other test images. Threshold: Youden's J on the "
                   f"{inp.val_split} split. -zeta (CytoDiffusion's score) is the pre-specified diffusion score; the "
                   "others are computed from the same errors and reported beside it, none chosen on test data.", ""]
        rows = []
        for who, s in summ.items():
            rows.append([who, s["auroc"], s["sensitivity"], s["specificity"], s["n_anomalous"], s["n_normal"]])
            for k in ("auroc", "sensitivity", "specificity"):
                rep.add("anomaly", k, who, s[k], s["n_anomalous"] + s["n_normal"], f"held out {held}")
        rep.table(["score", "AUROC", "sensitivity", "specificity", "held-out images", "normal images"], rows)
        _fig_roc(roc, out / "figures" / "anomaly_roc.png")
        rep.md += ["![roc](figures/anomaly_roc.png)", ""]
        prov["anomaly_model_train_steps"] = amodel.metadata.get("train_steps")

    # ---------------------------------------------------------------------------------- 4: low data
    if inp.low_data:
        rep.md += ["## 4. Low data", "", "Diffusion models: n labelled images per class plus the other training "
                   "images with the null label; baselines: the n labelled images only.", ""]
        rows = []
        for n_lab, mdir, bdir in inp.low_data:
            lm = load_model(mdir)
            df = run(f"lowdata_{n_lab}_diffusion", test_items, mdl=lm)
            y = df["label"].map(idx).to_numpy()
            s = classification_summary(y, df[[f"err_{c}" for c in names]].to_numpy().argmin(1), len(names))
            row = [n_lab, s["accuracy"], s["balanced_accuracy"], None, None]
            rep.add("low-data", f"accuracy_{n_lab}", "diffusion", s["accuracy"], s["n"])
            rep.add("low-data", f"balanced_accuracy_{n_lab}", "diffusion", s["balanced_accuracy"], s["n"])
            if bdir:
                from .baseline import load_baseline
                lb = load_baseline(bdir)
                xt, _ = _arrays(test_items, lb.resolution)
                sb = classification_summary(yt, lb.predict_proba(xt).argmax(1), len(names))
                row[3:] = [sb["accuracy"], sb["balanced_accuracy"]]
                rep.add("low-data", f"accuracy_{n_lab}", "baseline", sb["accuracy"], sb["n"])
                rep.add("low-data", f"balanced_accuracy_{n_lab}", "baseline", sb["balanced_accuracy"], sb["n"])
            rows.append(row)
        rep.table(["labelled/class", "diffusion acc", "diffusion bal. acc", "baseline acc", "baseline bal. acc"],
                  rows)

    # ---------------------------------------------------------------------------------- 5: domain shift
    if shift_items:
        items = shift_items
        df = run("shift_diffusion", items, classes=shared)
        sidx = {c: i for i, c in enumerate(shared)}
        y = df["label"].map(sidx).to_numpy()
        s = classification_summary(y, df[[f"err_{c}" for c in shared]].to_numpy().argmin(1), len(shared))
        res = {"diffusion": s}
        if baseline is not None:
            xs, _ = _arrays(items, baseline.resolution)
            pb = baseline.predict_proba(xs)[:, [idx[c] for c in shared]]
            yb = np.array([sidx[lab] for _, lab in items])
            res["baseline"] = classification_summary(yb, pb.argmax(1), len(shared))
        counts = {c: int((y == i).sum()) for c, i in sidx.items()}
        rep.md += ["## 5. Domain shift", "", f"Trained on `{inp.data}`, tested on `{inp.shift_data}` over the "
                   f"{len(shared)} shared classes {counts} (candidates restricted to them for both).", ""]
        rows = []
        for who, s in res.items():
            rows.append([who, s["accuracy"], s["balanced_accuracy"]] + [s["recall"].get(i) for i in range(len(shared))])
            rep.add("domain-shift", "balanced_accuracy", who, s["balanced_accuracy"], s["n"])
            rep.add("domain-shift", "accuracy", who, s["accuracy"], s["n"])
            _fig_confusion(s["confusion"], shared, f"{who}: confusion (domain shift)",
                           out / "figures" / f"shift_confusion_{who}.png")
        rep.table(["classifier", "accuracy", "balanced accuracy"] + [f"recall {c}" for c in shared], rows)

    pd.DataFrame(rep.rows).to_csv(out / "results.csv", index=False)
    (out / "results.md").write_text("\n".join(rep.md) + "\n")
    write_json(out / "provenance.json", prov)
    return rep


# ============================================================================================== CLI
def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .cli_classifier import config_from_args

    low = []
    for spec in args.low_data or []:
        parts = spec.split(":")
        if len(parts) not in (2, 3):
            raise ValueError(f"--low-data {spec!r}: use N:MODEL_DIR[:BASELINE_DIR]")
        low.append((int(parts[0]), parts[1], parts[2] if len(parts) == 3 else None))
    baseline = args.baseline
    if baseline is None:
        from .baseline import bundled_baseline_path
        baseline = str(bundled_baseline_path()) if (bundled_baseline_path() / "baseline.json").is_file() else None
    inp = EvalInputs(model=args.model, data=args.data, out=args.out, test_split=args.split, val_split=args.val_split,
                     per_class=args.per_class, baseline=None if baseline == "none" else baseline,
                     shift_data=args.shift_data, anomaly_model=args.anomaly_model,
                     anomaly_baseline=args.anomaly_baseline, low_data=low, seed=args.seed)
    rep = evaluate(inp, config_from_args(args))
    print("\n".join(rep.md))
    print(f"wrote {Path(args.out) / 'results.md'}, results.csv, figures/")
    return 0


def _cmd_train_variant(args: argparse.Namespace) -> int:
    from .config import load_config
    from .data import load_dataset

    if not args.holdout_class and not args.labelled_per_class:
        raise ValueError("give --holdout-class and/or --labelled-per-class")
    cfg = load_config(args.preset, args.config, args.set)
    data = load_dataset(args.data, cfg.resolution, cfg.crop_fraction, split=args.split, progress=True)
    if args.baseline_out:
        val = load_dataset(args.data, cfg.resolution, cfg.crop_fraction, split=args.val_split) if args.val_split \
            else None
        train_variant_baseline(data, val, args.baseline_out, holdout=args.holdout_class,
                               labelled_per_class=args.labelled_per_class, seed=args.seed,
                               epochs=args.baseline_epochs)
        print(f"baseline saved to {args.baseline_out}")
    if args.baseline_only:
        return 0
    model = train_variant(cfg, data, args.out, holdout=args.holdout_class, labelled_per_class=args.labelled_per_class,
                          unlabelled=not args.no_unlabelled, seed=args.seed, resume=args.resume,
                          max_minutes=args.max_minutes, data_source=str(args.data))
    print(f"model saved to {Path(args.out) / 'model'} (step {model.metadata.get('train_steps')})")
    return 0


def register_cli(sub) -> None:
    from .cli_classifier import add_classifier_args
    from .config import PRESETS

    p = sub.add_parser("evaluate", help="evidence: accuracy, calibration, anomaly, low data, domain shift",
                       description="Evaluate the diffusion classifier against the baseline; writes results.md, "
                       "results.csv, provenance.json and figures/ to --out (classifications cached, resumable).")
    p.add_argument("--model", default=None, help="diffusion model folder (default: bundled data/models/cpu-32)")
    p.add_argument("--data", required=True, help="dataset with a manifest (train/val/test splits), e.g. ../shared/data/pbc")
    p.add_argument("--split", default="test")
    p.add_argument("--val-split", default="val", help="split used to fit the temperature and anomaly threshold")
    p.add_argument("--per-class", type=int, help="at most N images per class of each split (default: all)")
    p.add_argument("--baseline", help="baseline folder (default: data/models/baseline-32 if present; 'none' to skip)")
    p.add_argument("--shift-data", help="a second dataset for the domain-shift test, e.g. ../shared/data/bccd_wbc")
    p.add_argument("--anomaly-model", help="a diffusion model trained with one class held out")
    p.add_argument("--anomaly-baseline", help="a baseline trained with the same class held out")
    p.add_argument("--low-data", action="append", metavar="N:MODEL[:BASELINE]",
                   help="a model (and baseline) trained with N labelled images per class; repeatable")
    p.add_argument("--out", required=True, help="output folder")
    add_classifier_args(p)
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("train-variant", help="train on a held-out-class or low-data variant of a dataset",
                       description="Like `cytomodel train`, on a variant of the data: --holdout-class drops a class "
                       "(anomaly experiments); --labelled-per-class N keeps N labels per class and the rest of the "
                       "images with the null label (low-data experiments). Optionally trains the baseline on the "
                       "same variant.")
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="train")
    p.add_argument("--val-split", default="val", help="baseline validation split")
    p.add_argument("--holdout-class")
    p.add_argument("--labelled-per-class", type=int)
    p.add_argument("--no-unlabelled", action="store_true", help="drop the unlabelled rest instead of null-labelling it")
    p.add_argument("--seed", type=int, default=0, help="which labelled images are kept")
    p.add_argument("--preset", default="cpu-32", choices=sorted(PRESETS))
    p.add_argument("--config")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", required=True)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--max-minutes", type=float)
    p.add_argument("--baseline-out", help="also train the baseline on the same variant, saved here")
    p.add_argument("--baseline-epochs", type=int, default=20)
    p.add_argument("--baseline-only", action="store_true")
    p.set_defaults(func=_cmd_train_variant)
