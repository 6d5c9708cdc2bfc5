"""Publication figures: one style, journal single-column width (89 mm), saved as PDF, SVG and 300-dpi PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .fitting import draws, hdi  # noqa: E402
from .models import psychometric_curve  # noqa: E402

__all__ = ["STYLE", "make_figures", "save_figure"]

COLUMN_IN = 89 / 25.4  # single journal column
EXPERT = "#0072B2"     # Okabe–Ito colour-blind-safe palette
MODEL = "#D55E00"
GREY = "#999999"
STYLE = {
    "font.size": 7, "axes.titlesize": 7, "axes.labelsize": 7, "xtick.labelsize": 6, "ytick.labelsize": 6,
    "legend.fontsize": 6, "axes.linewidth": 0.6, "lines.linewidth": 1.0, "xtick.major.width": 0.6,
    "ytick.major.width": 0.6, "axes.spines.top": False, "axes.spines.right": False, "savefig.bbox": "tight",
    "savefig.pad_inches": 0.02, "pdf.fonttype": 42, "svg.fonttype": "none", "font.family": "DejaVu Sans",
    "legend.frameon": False,
}


def save_figure(fig, out_dir: Path, name: str, metadata: dict[str, str] | None = None) -> dict[str, str]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for ext in ("pdf", "svg", "png"):
        p = out_dir / f"{name}.{ext}"
        md = None
        if metadata:
            md = {"Title": name, "Subject": metadata.get("Subject", "")} if ext == "pdf" else (
                {"Title": name, "Description": metadata.get("Subject", "")} if ext in ("png", "svg") else None)
        fig.savefig(p, dpi=300 if ext == "png" else None, metadata=md)
        paths[ext] = str(p)
    plt.close(fig)
    return paths


def _fig(h_in: float, ncols: int = 1, nrows: int = 1, **kw):
    return plt.subplots(nrows, ncols, figsize=(COLUMN_IN, h_in), constrained_layout=True, **kw)


def _forest(ax, names, d: np.ndarray, color, prob=0.94, y0=0.0, marker="o", label=None):
    for i, n in enumerate(names):
        lo, hi = hdi(d[:, i], prob)
        ax.plot([lo, hi], [y0 + i] * 2, color=color, lw=1)
        ax.plot(np.mean(d[:, i]), y0 + i, marker, color=color, ms=3, label=label if i == 0 else None)


def fig_auth_accuracy(res, out: Path, meta) -> dict:
    fit = res.fits["sdt_authenticity"]
    acc = draws(fit.idata, "accuracy")
    raters = list(fit.idata.posterior["rater"].values)
    pop = draws(fit.idata, "acc_population")
    h = res.config.rope_halfwidth
    fig, ax = _fig(0.25 * len(raters) + 1.0)
    ax.axvspan(0.5 - h, 0.5 + h, color=GREY, alpha=0.25, lw=0, label=f"ROPE 0.5 ± {h:g}")
    ax.axvline(0.5, color=GREY, lw=0.6, ls="--")
    _forest(ax, raters, acc, EXPERT, label="rater posterior (94 % HDI)")
    obs = res.plots.get("rater_obs_acc")
    if obs is not None:
        ax.plot([obs.get(r, np.nan) for r in raters], range(len(raters)), "x", color="k", ms=3, label="observed")
    lo, hi = hdi(pop, res.config.interval_prob)
    ax.plot([lo, hi], [len(raters) + 0.6] * 2, color="k", lw=1.6)
    ax.plot(pop.mean(), len(raters) + 0.6, "D", color="k", ms=4,
            label=f"population ({int(res.config.interval_prob * 100)} % HDI)")
    ax.set_yticks(list(range(len(raters))) + [len(raters) + 0.6], raters + ["population"])
    ax.set_xlabel("authenticity accuracy (real vs synthetic)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncols=2, fontsize=5)
    return save_figure(fig, out, "fig_auth_accuracy", meta)


def fig_sdt(res, out: Path, meta) -> dict:
    fit = res.fits["sdt_authenticity"]
    raters = list(fit.idata.posterior["rater"].values)
    fig, axes = _fig(0.22 * len(raters) + 1.0, ncols=2, sharey=True)
    for ax, var, mu, lab in ((axes[0], "d", "mu_d", "d′"), (axes[1], "c", "mu_c", "criterion c (> 0: 'real')")):
        ax.axvline(0, color=GREY, lw=0.6, ls="--")
        _forest(ax, raters, draws(fit.idata, var), EXPERT)
        g = draws(fit.idata, mu)
        lo, hi = hdi(g)
        ax.plot([lo, hi], [len(raters) + 0.6] * 2, color="k", lw=1.6)
        ax.plot(g.mean(), len(raters) + 0.6, "D", color="k", ms=4)
        ax.set_xlabel(lab)
    axes[0].set_yticks(list(range(len(raters))) + [len(raters) + 0.6], raters + ["group"])
    return save_figure(fig, out, "fig_sdt_rater", meta)


def _binned(x, k, n, bins):
    x, k, n = map(np.asarray, (x, k, n))
    b = np.digitize(x, bins[1:-1])
    rows = []
    for j in np.unique(b):
        m = b == j
        rows.append((np.average(x[m], weights=n[m]), k[m].sum() / n[m].sum(), n[m].sum()))
    return np.array(rows)


def fig_psychometric(res, out: Path, meta) -> dict:
    fig, axes = _fig(1.9, ncols=2)
    # (a) morph
    if "psychometric_morph" in res.fits:
        f = res.fits["psychometric_morph"]
        spec = res.plots["morph"]["spec"]
        m = res.plots["morph"]["data"]
        xs = np.linspace(0, 1, 101)
        post = f.idata.posterior
        nd = post.sizes["chain"] * post.sizes["draw"]
        sel = np.random.default_rng(0).choice(nd, min(400, nd), replace=False)
        g = draws(f.idata, "gamma")[sel] if "gamma" in post else np.full(len(sel), float(spec.gamma))
        l = draws(f.idata, "lapse")[sel] if "lapse" in post else np.full(len(sel), float(spec.lapse))
        curves = psychometric_curve(xs, draws(f.idata, "group_threshold")[sel], draws(f.idata, "group_width")[sel],
                                    g, l, spec.family)
        th, wd = draws(f.idata, "threshold").mean(0), draws(f.idata, "width").mean(0)
        for r in range(len(th)):
            axes[0].plot(xs, psychometric_curve(xs, th[r:r + 1], wd[r:r + 1], g.mean(), l.mean(), spec.family)[0],
                         color=EXPERT, lw=0.4, alpha=0.4)
        lo, hi = np.quantile(curves, [0.03, 0.97], axis=0)
        axes[0].fill_between(xs, lo, hi, color=EXPERT, alpha=0.3, lw=0)
        axes[0].plot(xs, np.median(curves, 0), color=EXPERT, label="experts (group, 94 %)")
        k = pd.DataFrame({"x": m["x"], "k": m["k"], "n": m["n"]}).groupby("x")[["k", "n"]].sum()
        axes[0].plot(k.index, k["k"] / k["n"], "o", color="k", ms=2.5, label="observed")
        axes[0].set_xlabel("SDEdit morph strength")
        axes[0].set_ylabel("P(judged synthetic)")
        axes[0].set_ylim(0, 1)
        axes[0].legend(loc="upper left", fontsize=5)
        axes[0].set_title("a", loc="left", fontweight="bold")
    # (b) class evidence
    if "psychometric_class_experts" in res.fits:
        cp = res.plots["class_psych"]
        spec = cp["spec"]
        xs = np.linspace(cp["x_range"][0], cp["x_range"][1], 101)
        for fname, color, lab, hier in (("psychometric_class_experts", EXPERT, "experts (group)", True),
                                        ("psychometric_class_model", MODEL, "model", False)):
            f = res.fits[fname]
            post = f.idata.posterior
            nd = post.sizes["chain"] * post.sizes["draw"]
            sel = np.random.default_rng(1).choice(nd, min(400, nd), replace=False)
            t = draws(f.idata, "group_threshold" if hier else "threshold")[sel]
            w = draws(f.idata, "group_width" if hier else "width")[sel]
            g = draws(f.idata, "gamma")[sel] if "gamma" in post else np.full(len(sel), float(spec.gamma))
            l = draws(f.idata, "lapse")[sel] if "lapse" in post else np.full(len(sel), float(spec.lapse))
            curves = psychometric_curve(xs, t, w, g, l, spec.family)
            lo, hi = np.quantile(curves, [0.03, 0.97], axis=0)
            axes[1].fill_between(xs, lo, hi, color=color, alpha=0.3, lw=0)
            axes[1].plot(xs, np.median(curves, 0), color=color, label=lab)
        bins = np.quantile(np.r_[cp["data"]["x"], cp["model_x"]], np.linspace(0, 1, 9))
        bins = np.unique(bins)
        be = _binned(cp["data"]["x"], cp["data"]["k"], cp["data"]["n"], bins)
        bm = _binned(cp["model_x"], cp["model_y"], np.ones_like(cp["model_y"]), bins)
        axes[1].plot(be[:, 0], be[:, 1], "o", color=EXPERT, ms=2.5, mfc="white")
        axes[1].plot(bm[:, 0], bm[:, 1], "s", color=MODEL, ms=2.5, mfc="white")
        axes[1].set_xlabel(f"model evidence ({res.config.class_evidence.replace('model_', '')})")
        axes[1].set_ylabel("P(correct class)")
        axes[1].set_ylim(0, 1)
        axes[1].legend(loc="lower right", fontsize=5)
        axes[1].set_title("b", loc="left", fontweight="bold")
    return save_figure(fig, out, "fig_psychometric", meta)


def fig_type2_roc(res, out: Path, meta) -> dict:
    roc = res.plots["type2_roc"]
    fig, axes = _fig(1.8, ncols=2)
    for ax, task, letter in ((axes[0], "authenticity", "a"), (axes[1], "classification", "b")):
        ax.plot([0, 1], [0, 1], color=GREY, lw=0.6, ls="--")
        for pid, (f, h) in roc[("experts", task)].items():
            if pid == "pooled":
                continue
            ax.plot(np.r_[f, 1], np.r_[h, 1], color=EXPERT, lw=0.4, alpha=0.4)
        f, h = roc[("experts", task)]["pooled"]
        ax.plot(np.r_[f, 1], np.r_[h, 1], "o-", color=EXPERT, ms=2, label="experts (pooled)")
        f, h = roc[("model", task)]["model"]
        ax.plot(np.r_[f, 1], np.r_[h, 1], "s-", color=MODEL, ms=2, label="model")
        ax.set_xlabel("P(conf ≥ k | error)")
        ax.set_ylabel("P(conf ≥ k | correct)")
        ax.set_title(f"{letter}  {task}", loc="left", fontweight="bold")
        ax.set_aspect("equal")
        ax.legend(loc="lower right", fontsize=5)
    return save_figure(fig, out, "fig_type2_roc", meta)


def fig_reliability(res, out: Path, meta) -> dict:
    rel = res.plots["reliability"]
    fig, axes = _fig(1.8, ncols=2)
    for ax, task, letter in ((axes[0], "authenticity", "a"), (axes[1], "classification", "b")):
        ax.plot([0, 1], [0, 1], color=GREY, lw=0.6, ls="--")
        for who, color, mk in (("experts", EXPERT, "o"), ("model", MODEL, "s")):
            c = rel.get((who, task))
            if c is None or c.empty:
                continue
            ax.errorbar(c["confidence"], c["accuracy"], yerr=[(c["accuracy"] - c["acc_lo"]).clip(lower=0),
                                                                  (c["acc_hi"] - c["accuracy"]).clip(lower=0)],
                        fmt=mk + "-", color=color, ms=2.5, lw=0.8, elinewidth=0.5, capsize=0, label=who)
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("stated confidence")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{letter}  {task}", loc="left", fontweight="bold")
        ax.set_aspect("equal")
        ax.legend(loc="upper left", fontsize=5)
    return save_figure(fig, out, "fig_reliability", meta)


def fig_confusion(res, out: Path, meta) -> dict:
    fig, axes = _fig(2.0, ncols=2)
    for ax, key, title in ((axes[0], "confusion_experts", "a  experts"), (axes[1], "confusion_model", "b  model")):
        m = res.plots[key]
        norm = m.div(m.sum(axis=1).replace(0, np.nan), axis=0).fillna(0)
        ax.imshow(norm.to_numpy(), cmap="Blues", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(m.shape[1]), [c[:6] for c in m.columns], rotation=90, fontsize=5)
        ax.set_yticks(range(m.shape[0]), [c[:6] for c in m.index], fontsize=5)
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                v = norm.iat[i, j]
                if v >= 0.005:
                    ax.text(j, i, f"{100 * v:.0f}", ha="center", va="center", fontsize=4,
                            color="white" if v > 0.6 else "black")
        ax.set_xlabel("answered")
        ax.set_ylabel("true class")
        ax.set_title(title, loc="left", fontweight="bold")
        ax.spines[:].set_visible(False)
    return save_figure(fig, out, "fig_confusion", meta)


def fig_metad(res, out: Path, meta) -> dict:
    md = res.plots["metad"]
    fig, axes = _fig(0.2 * len(md["authenticity"].idata.posterior["rater"]) + 1.3, ncols=2, sharey=False)
    for ax, task, letter in ((axes[0], "authenticity", "a"), (axes[1], "classification", "b")):
        f = md[task]
        raters = list(f.idata.posterior["rater"].values)
        ax.axvline(1, color=GREY, lw=0.6, ls="--")
        M = draws(f.idata, "M")
        _forest(ax, raters, M, EXPERT)
        g = draws(f.idata, "group_M")
        lo, hi = hdi(g)
        ax.plot([lo, hi], [len(raters) + 0.6] * 2, color="k", lw=1.6)
        ax.plot(g.mean(), len(raters) + 0.6, "D", color="k", ms=4)
        mm = draws(md[f"model_{task}"].idata, "M")[:, 0]
        lo, hi = hdi(mm)
        ax.plot([lo, hi], [len(raters) + 1.6] * 2, color=MODEL, lw=1.6)
        ax.plot(mm.mean(), len(raters) + 1.6, "s", color=MODEL, ms=4)
        ax.set_yticks(list(range(len(raters))) + [len(raters) + 0.6, len(raters) + 1.6],
                      raters + ["experts", "model"])
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("M-ratio (meta-d′/d′)")
        ax.set_title(f"{letter}  {task}", loc="left", fontweight="bold")
    return save_figure(fig, out, "fig_metad", meta)


def fig_difference(res, out: Path, meta) -> dict:
    fig, ax = _fig(1.5)
    for task, color in (("authenticity", "#009E73"), ("classification", "#CC79A7")):
        d = res.plots.get(f"difference_{task}")
        if d is None:
            continue
        ax.hist(d, bins=60, density=True, histtype="stepfilled", alpha=0.45, color=color,
                label=f"{task}: P(model > experts) = {np.mean(d > 0):.2f}")
    ax.axvline(0, color=GREY, lw=0.6, ls="--")
    ax.set_xlabel("accuracy difference, model − experts (posterior)")
    ax.set_ylabel("density")
    ax.legend(fontsize=5)
    return save_figure(fig, out, "fig_difference", meta)


def fig_ppc(res, out: Path, meta) -> dict:
    t = res.tables.get("ppc_sdt")
    if t is None or t.empty:
        return {}
    t = t[t["statistic"].str.contains("rater/source=")]
    fig, ax = _fig(0.12 * len(t) + 0.8)
    y = np.arange(len(t))
    ax.errorbar(t["replicated_mean"], y, xerr=[t["replicated_mean"] - t["rep_lo94"], t["rep_hi94"] - t["replicated_mean"]],
                fmt="o", color=EXPERT, ms=2, lw=0.8, label="posterior predictive (94 %)")
    ax.plot(t["observed"], y, "x", color="k", ms=3, label="observed")
    ax.set_yticks(y, [s.split("=")[1].rstrip(")").replace("/", " ") for s in t["statistic"]], fontsize=5)
    ax.set_xlabel("P(answer 'real') per rater and image source")
    ax.legend(fontsize=5)
    return save_figure(fig, out, "fig_ppc_sdt", meta)


def make_figures(res, out_dir: Path, meta: dict[str, str] | None = None) -> dict[str, dict]:
    """Every figure the available results support; returns name → {ext: path}."""
    out_dir = Path(out_dir)
    figs: dict[str, dict] = {}
    with plt.rc_context(STYLE):
        makers: list[tuple[str, Any, bool]] = [
            ("auth_accuracy", fig_auth_accuracy, "sdt_authenticity" in res.fits),
            ("sdt_rater", fig_sdt, "sdt_authenticity" in res.fits),
            ("ppc_sdt", fig_ppc, "sdt_authenticity" in res.fits),
            ("psychometric", fig_psychometric, "psychometric_morph" in res.fits),
            ("type2_roc", fig_type2_roc, "type2_roc" in res.plots),
            ("reliability", fig_reliability, "reliability" in res.plots),
            ("metad", fig_metad, "metad" in res.plots),
            ("confusion", fig_confusion, "confusion_model" in res.plots),
            ("difference", fig_difference, "difference_classification" in res.plots),
        ]
        for name, fn, ok in makers:
            if ok:
                figs[name] = fn(res, out_dir, meta)
    return figs
