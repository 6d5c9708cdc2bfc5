"""Evidence for the diffusion classifier, side by side with the discriminative baseline (``cytomodel evaluate``).

Sections (each runs when its inputs are given; every classification is cached in ``out`` and resumable):

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

:func:`evaluate` runs them as named steps over one :class:`_Evaluation` (inputs, models, report). The metrics are
in :mod:`.metrics`, the training variants in :mod:`cytomodel.train.variants` (the baseline's in
:mod:`.baseline_training`), the figures in :mod:`.figures`, the command in :mod:`cytomodel.cli.evaluate`.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from cytocore.provenance import provenance_record, write_json

from ..classify.batch import classified, classify_folder
from ..classify.config import ClassifierConfig
from ..classify.novelty import MIN_CLASS_CELLS, fit_reference, standardise
from ..classify.scores import fit_temperature, softmax_neg
from ..data import DataError, LabelledImage, frame_or_raise, scan_dataset
from ..models.loading import load_model
from ..runtime import configure_runtime, resolve_device
from .baseline import load_baseline
from .figures import fig_confusion, fig_reliability, fig_roc
from .metrics import anomaly_summary, calibration_summary, classification_summary


# ============================================================================================== sampling, running
def balanced_items(source, split, per_class: int | None, classes: Sequence[str] | None = None,
                   seed: int = 0) -> list[tuple[Path, str]]:
    """(path, label) of at most ``per_class`` images per class of a split, chosen deterministically (all if None)."""
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


def _arrays(items, classifier) -> tuple[np.ndarray, list[str]]:
    """The items' images framed for ``classifier`` (its own record's framing), and their paths."""
    intake = classifier.intake()
    intake.plan([p for p, _ in items])
    return (np.stack([frame_or_raise(intake, p) for p, _ in items]), [str(p) for p, _ in items])


def _probs_from(df: pd.DataFrame, names: Sequence[str], temperature: float) -> np.ndarray:
    return softmax_neg(df[[f"err_{c}" for c in names]].to_numpy(), temperature)



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



@dataclasses.dataclass
class _Evaluation:
    """What every section of one evaluation shares."""
    inp: EvalInputs
    cfg: Any                     # the ClassifierConfig reported
    cfg1: Any                    # the same at T = 1 (errors do not depend on T; probabilities are recomputed)
    out: Path
    rep: Report
    model: Any
    baseline: Any
    device: Any
    progress: bool
    prov: dict[str, Any]

    @property
    def names(self) -> list[str]:
        return self.model.class_names

    @property
    def idx(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.names)}

    def classify(self, name, items, mdl=None, classes=None) -> pd.DataFrame:
        """The diffusion classifier's table for ``items``: the rows of the images it could frame (the others are
        counted in the report)."""
        df = classify_folder(self.model if mdl is None else mdl, None, self.out / f"{name}.csv", self.cfg1,
                             items=items, classes=classes, progress=self.progress)
        done = classified(df)
        if len(done) < len(df):
            self.rep.md += [f"*{name}: {len(df) - len(done)} of {len(df)} images could not be framed (no cell, two "
                            f"cells, ...) and are left out for both classifiers; see {name}.csv.*", ""]
        return done.reset_index(drop=True)

    @staticmethod
    def kept(items, table: pd.DataFrame):
        """The items whose images are in ``table`` (framed and classified), in the table's order."""
        by_path = {str(p): (p, lab) for p, lab in items}
        return [by_path[str(x)] for x in table["image"]]


def evaluate(inp: EvalInputs, config=None, progress: bool = True, device=None) -> Report:
    """Every section whose inputs are given; writes results.md, results.csv, provenance.json and figures/."""
    ev = _setup(inp, config, progress, device)
    shift_items, shared = _shift_items(ev)  # check the inputs before the long runs
    val_items = balanced_items(inp.data, inp.val_split, inp.per_class, ev.names, inp.seed)
    test_items = balanced_items(inp.data, inp.test_split, inp.per_class, ev.names, inp.seed)
    yt, curves, fit = _in_domain(ev, val_items, test_items)
    _calibration(ev, curves, fit)
    if inp.anomaly_model:
        _anomaly(ev, val_items, test_items)
    if inp.low_data:
        _low_data(ev, test_items, yt)
    if shift_items:
        _domain_shift(ev, shift_items, shared)
    _write(ev)
    return ev.rep


def _setup(inp: EvalInputs, config, progress: bool, device) -> _Evaluation:
    """Load the model (and baseline) on the device, start the report and the provenance record."""
    configure_runtime()
    cfg = (config or ClassifierConfig()).validate()
    dev = resolve_device(device)
    out = Path(inp.out)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    model = load_model(inp.model, device=dev)
    names = model.class_names
    baseline = None
    if inp.baseline:
        baseline = load_baseline(inp.baseline, device=dev)
        if baseline.class_names != names:
            raise ValueError(f"baseline classes {baseline.class_names} differ from the model's {names}")
    prov = {"inputs": dataclasses.asdict(inp), "classifier_config": cfg.to_dict(),
            "model_train_steps": model.metadata.get("train_steps"), "model_data_hash": model.metadata.get("data_hash"),
            "baseline": None if baseline is None else {k: baseline.metadata.get(k) for k in ("data_hash", "seed",
                                                                                             "code_version")},
            **provenance_record()}
    rep = Report(out)
    steps = model.metadata.get("train_steps")
    rep.md += [f"# Diffusion classifier evaluation", "",
               f"Model `{inp.model}` (step {steps}, T in model: {model.temperature}); baseline `{inp.baseline}`; "
               f"data `{inp.data}`; images per class: {inp.per_class or 'all'}; classifier: {cfg.strategy}, "
               f"{cfg.trials} max trials, t in [{cfg.t_min}, {cfg.t_max}], {cfg.weighting} weighting, TTA "
               f"{cfg.tta}, {cfg.precision}, seed {cfg.seed}.", ""]
    return _Evaluation(inp, cfg, dataclasses.replace(cfg, temperature=1.0), out, rep, model, baseline, dev,
                       progress, prov)


def _shift_items(ev: _Evaluation):
    """(path, label) of the domain-shift data over the classes it shares with the model, and those classes."""
    if not ev.inp.shift_data:
        return None, None
    recs = scan_dataset(ev.inp.shift_data, split=ev.inp.shift_split)
    shared = [c for c in ev.names if c in {r.label for r in recs}]
    if len(shared) < 2:
        raise DataError(f"the domain-shift data {ev.inp.shift_data} share fewer than 2 classes with the model "
                        f"({ev.names})")
    return [(r.path, r.label) for r in recs if r.label in shared], shared


def _in_domain(ev: _Evaluation, val_items, test_items):
    """Section 1; returns the test labels, the reliability curves and the temperature fit for section 2."""
    inp, rep, names, idx, baseline = ev.inp, ev.rep, ev.names, ev.idx, ev.baseline
    val = ev.classify("val_diffusion", val_items)
    test = ev.classify("test_diffusion", test_items)
    yv = val["label"].map(idx).to_numpy()
    yt = test["label"].map(idx).to_numpy()
    t_fit, nll1, nllt = fit_temperature(val[[f"err_{c}" for c in names]].to_numpy(), yv)
    t_model = ev.model.temperature or 1.0
    p_before = _probs_from(test, names, t_model)
    p_after = _probs_from(test, names, t_fit)
    results = {"diffusion": classification_summary(yt, p_after.argmax(1), len(names))}
    curves = {f"diffusion, T={t_model:.3g}": (p_before, yt), f"diffusion, T={t_fit:.3g} (val)": (p_after, yt)}
    if baseline is not None:
        xt, _ = _arrays(ev.kept(test_items, test), baseline)
        pb = baseline.predict_proba(xt)
        results["baseline"] = classification_summary(yt, pb.argmax(1), len(names))
        curves["baseline"] = (pb, yt)
    rep.md += ["## 1. In-domain classification", "",
               f"{inp.test_split} split, {len(yt)} images; mean UNet calls/image "
               f"{test['unet_calls'].mean():.1f}.", ""]
    header = ["classifier", "accuracy", "balanced accuracy"] + [f"recall {c}" for c in names]
    rows = []
    for who, s in results.items():
        rows.append([who, s["accuracy"], s["balanced_accuracy"]] + [s["recall"].get(i) for i in range(len(names))])
        rep.add("in-domain", "accuracy", who, s["accuracy"], s["n"])
        rep.add("in-domain", "balanced_accuracy", who, s["balanced_accuracy"], s["n"])
        for i, c in enumerate(names):
            if i in s["recall"]:
                rep.add("in-domain", f"recall_{c}", who, s["recall"][i], int((yt == i).sum()))
        fig_confusion(s["confusion"], names, f"{who}: confusion ({inp.test_split})",
                      ev.out / "figures" / f"confusion_{who}.png")
    rep.table(header, rows)
    rep.md += ["![confusion](figures/confusion_diffusion.png)" + (
        " ![confusion](figures/confusion_baseline.png)" if baseline is not None else ""), ""]
    rep.add("in-domain", "unet_calls_per_image", "diffusion", float(test["unet_calls"].mean()), len(test))
    return yt, curves, (t_fit, nll1, nllt, len(yv))


def _calibration(ev: _Evaluation, curves, fit) -> None:
    """Section 2: ECE, Brier, NLL and confident errors before and after the fitted temperature."""
    rep, inp = ev.rep, ev.inp
    t_fit, nll1, nllt, n_val = fit
    rep.md += ["## 2. Calibration", "",
               f"Temperature fitted on {n_val} {inp.val_split} images by NLL: T = {t_fit:.4g} "
               f"(val NLL {nll1:.4f} at T=1 -> {nllt:.4f}).", ""]
    cal_rows = []
    for who, (probs, lab) in curves.items():
        c = calibration_summary(probs, lab)
        cal_rows.append([who, c["ece"], c["brier"], c["nll"], c["top10_error_rate"], c["top10_error_share"]])
        for k, v in c.items():
            rep.add("calibration", k, who, v, len(lab))
    rep.add("calibration", "temperature", "diffusion", t_fit, n_val, f"fitted on {inp.val_split}")
    rep.table(["classifier", "ECE", "Brier", "NLL", "error rate in top-10% confident",
               "share of all errors in top-10%"], cal_rows)
    fig_reliability(curves, ev.out / "figures" / "reliability.png")
    rep.md += ["![reliability](figures/reliability.png)", ""]


def _anomaly(ev: _Evaluation, val_items, test_items) -> None:
    """Section 3: the held-out-class model's scores (and the held-out baseline's) on held-out vs other cells."""
    inp, rep, names = ev.inp, ev.rep, ev.names
    amodel = load_model(inp.anomaly_model, device=ev.device)
    held = [c for c in names if c not in amodel.class_names]
    if len(held) != 1:
        raise ValueError(f"the anomaly model should know all classes but one of {names}; it knows "
                         f"{amodel.class_names}")
    held = held[0]
    av = ev.classify("anomaly_val_diffusion", val_items, mdl=amodel)
    at = ev.classify("anomaly_test_diffusion", test_items, mdl=amodel)
    va, ta = (av["label"] == held).to_numpy(), (at["label"] == held).to_numpy()
    # ζ (CytoDiffusion's score) first; then the diffusion analogues of the baseline's two scores and the
    # best class's own error — every score on the same cached errors, all reported, none picked on test data
    acols = [f"err_{c}" for c in amodel.class_names]
    e_val, e_test = av[acols].to_numpy(), at[acols].to_numpy()
    y_in = av.loc[~va, "label"].map({c: i for i, c in enumerate(amodel.class_names)}).to_numpy()
    t_anom, _, _ = fit_temperature(e_val[~va], y_in)

    def val_and_test(score):
        return score(e_val), score(e_test)

    d_scores = {"diffusion (-zeta)": (-av["zeta"].to_numpy(), -at["zeta"].to_numpy())}
    if "novelty_raw" in av and (~va).sum() >= MIN_CLASS_CELLS:
        # --anomaly best-error / class-gain: its reference fitted on the in-distribution val cells
        ref = fit_reference(av.loc[~va, "novelty_raw"].to_numpy(), av.loc[~va, "pred_class"].to_numpy(),
                            amodel.class_names)
        d_scores[f"diffusion {ev.cfg1.anomaly} (reference: in-distribution {inp.val_split})"] = tuple(
            standardise(t["novelty_raw"].to_numpy(), list(t["pred_class"]), ref) for t in (av, at))
    d_scores |= {
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
        ab = load_baseline(inp.anomaly_baseline, device=ev.device)
        xv, _ = _arrays(ev.kept(val_items, av), ab)
        xt, _ = _arrays(ev.kept(test_items, at), ab)
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
    fig_roc(roc, ev.out / "figures" / "anomaly_roc.png")
    rep.md += ["![roc](figures/anomaly_roc.png)", ""]
    ev.prov["anomaly_model_train_steps"] = amodel.metadata.get("train_steps")


def _low_data(ev: _Evaluation, test_items, yt) -> None:
    """Section 4: models (and baselines) trained with n labelled images per class, on the test split."""
    rep, names, idx = ev.rep, ev.names, ev.idx
    rep.md += ["## 4. Low data", "", "Diffusion models: n labelled images per class plus the other training "
               "images with the null label; baselines: the n labelled images only.", ""]
    rows = []
    for n_lab, mdir, bdir in ev.inp.low_data:
        lm = load_model(mdir, device=ev.device)
        df = ev.classify(f"lowdata_{n_lab}_diffusion", test_items, mdl=lm)
        y = df["label"].map(idx).to_numpy()
        s = classification_summary(y, df[[f"err_{c}" for c in names]].to_numpy().argmin(1), len(names))
        row = [n_lab, s["accuracy"], s["balanced_accuracy"], None, None]
        rep.add("low-data", f"accuracy_{n_lab}", "diffusion", s["accuracy"], s["n"])
        rep.add("low-data", f"balanced_accuracy_{n_lab}", "diffusion", s["balanced_accuracy"], s["n"])
        if bdir:
            lb = load_baseline(bdir, device=ev.device)
            xt, _ = _arrays(ev.kept(test_items, df), lb)
            sb = classification_summary(y, lb.predict_proba(xt).argmax(1), len(names))
            row[3:] = [sb["accuracy"], sb["balanced_accuracy"]]
            rep.add("low-data", f"accuracy_{n_lab}", "baseline", sb["accuracy"], sb["n"])
            rep.add("low-data", f"balanced_accuracy_{n_lab}", "baseline", sb["balanced_accuracy"], sb["n"])
        rows.append(row)
    rep.table(["labelled/class", "diffusion acc", "diffusion bal. acc", "baseline acc", "baseline bal. acc"], rows)


def _domain_shift(ev: _Evaluation, items, shared) -> None:
    """Section 5: the other dataset over the shared classes, candidates restricted to them for both classifiers."""
    rep, idx, baseline = ev.rep, ev.idx, ev.baseline
    df = ev.classify("shift_diffusion", items, classes=shared)
    sidx = {c: i for i, c in enumerate(shared)}
    y = df["label"].map(sidx).to_numpy()
    res = {"diffusion": classification_summary(y, df[[f"err_{c}" for c in shared]].to_numpy().argmin(1),
                                               len(shared))}
    if baseline is not None:
        kept = ev.kept(items, df)
        xs, _ = _arrays(kept, baseline)
        pb = baseline.predict_proba(xs)[:, [idx[c] for c in shared]]
        yb = np.array([sidx[lab] for _, lab in kept])
        res["baseline"] = classification_summary(yb, pb.argmax(1), len(shared))
    counts = {c: int((y == i).sum()) for c, i in sidx.items()}
    rep.md += ["## 5. Domain shift", "", f"Trained on `{ev.inp.data}`, tested on `{ev.inp.shift_data}` over the "
               f"{len(shared)} shared classes {counts} (candidates restricted to them for both).", ""]
    rows = []
    for who, s in res.items():
        rows.append([who, s["accuracy"], s["balanced_accuracy"]] + [s["recall"].get(i) for i in range(len(shared))])
        rep.add("domain-shift", "balanced_accuracy", who, s["balanced_accuracy"], s["n"])
        rep.add("domain-shift", "accuracy", who, s["accuracy"], s["n"])
        fig_confusion(s["confusion"], shared, f"{who}: confusion (domain shift)",
                      ev.out / "figures" / f"shift_confusion_{who}.png")
    rep.table(["classifier", "accuracy", "balanced accuracy"] + [f"recall {c}" for c in shared], rows)


def _write(ev: _Evaluation) -> None:
    pd.DataFrame(ev.rep.rows).to_csv(ev.out / "results.csv", index=False)
    (ev.out / "results.md").write_text("\n".join(ev.rep.md) + "\n")
    write_json(ev.out / "provenance.json", ev.prov)
