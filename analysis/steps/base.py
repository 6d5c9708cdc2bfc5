"""What every analysis step shares: the context it reads, the typed result it returns, and the step record.

A step is one analysis: ``needs(ctx)`` says why the data cannot support it (or None), ``run(ctx)`` returns its
typed result, ``figures(result, out, meta)`` draws it, ``section(result, figs, cfg)`` writes its part of the report.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import arviz as az
import numpy as np
import pandas as pd

from cytocore.schema import ValidationReport

from .. import prepare
from ..fitting import Fit, fit_model, log

if TYPE_CHECKING:
    from ..config import AnalysisConfig
    from ..outputs import OutputFolder

__all__ = ["Context", "Failed", "Skipped", "Step", "StepResult", "summary_table", "ppc_table", "dispersion_ppc",
           "contraction"]

# every fit, in report order; its position fixes its seed offset, so a fit draws the same samples whichever
# analyses run and in whichever process
FIT_ORDER = ("sdt_authenticity", "psychometric_morph", "psychometric_class_experts", "psychometric_class_model",
             "metad_authenticity", "metad_classification", "difference_authenticity", "difference_classification")


@dataclass
class StepResult:
    """What every step returns; each step subclasses it with the typed fields its figure and section read."""

    step: str
    fits: list[Fit] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)   # sentences the report states (skipped parts, design limits)
    seconds: float = 0.0
    figures: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass
class Skipped(StepResult):
    """The data cannot support this analysis; ``reason`` says why (the report prints it)."""

    reason: str = ""


@dataclass
class Failed(StepResult):
    """The analysis raised; ``message`` is the error, ``trace`` its traceback (fits that finished are kept)."""

    message: str = ""
    trace: str = ""


@dataclass
class Context:
    """The validated data, the config and what earlier steps found (read-only for the steps)."""

    rep: ValidationReport
    cfg: "AnalysisConfig"
    out: "OutputFolder | None" = None
    results: dict[str, StepResult] = field(default_factory=dict)

    def __post_init__(self):
        rep = self.rep
        self.K = rep.confidence_levels
        self.all_classes = list(rep.classes)
        self.C = len(rep.classes)
        self.classes = [c for c in rep.classes if c not in rep.excluded_ids("class", "classification")]
        self.auth = rep.for_task("authenticity")
        self.cls = rep.for_task("classification")
        dm = rep.model_rows()   # with an export's stimulus table: every main stimulus, answered or not
        self.model = (prepare.model_answers(dm, rep.classes, self.K, anomaly_threshold=self.cfg.anomaly_threshold)
                      if len(dm) else None)

    @property
    def has_experts(self) -> bool:
        return len(self.auth) > 0

    def result(self, cls: type) -> Any:
        """The earlier result of type ``cls`` (None when it did not run or did not succeed)."""
        for r in self.results.values():
            if type(r) is cls:
                return r
        return None

    def fit(self, name: str, model, meanings: dict[str, str], info: dict | None = None) -> Fit:
        """Sample ``model`` and write its netCDF and summary as soon as it finishes (nothing finished is lost)."""
        f = fit_model(name, model, self.cfg.sampler, priors=meanings, seed_offset=FIT_ORDER.index(name) + 1,
                      info=info)
        if self.out is not None:
            self.out.write_fit(f)
        return f


@dataclass(frozen=True)
class Step:
    name: str
    title: str
    analysis: str | None              # the config's `analyses` entry that switches it on (None: always runs)
    needs: Callable[[Context], str | None]
    run: Callable[[Context], StepResult]
    figures: Callable[[Any, Any, dict], dict] | None
    section: Callable[[Any, dict, Any], list[str]]
    group: str = "parent"             # steps of one group run in one process, in order ("parent": no sampling)
    after: str | None = None          # a step whose result this one needs


def timed_run(step: Step, ctx: Context) -> StepResult:
    """Run ``step`` (or say why not); an exception becomes a :class:`Failed` result — the rest still runs."""
    import traceback
    t0 = time.perf_counter()
    if step.analysis is not None and step.analysis not in ctx.cfg.analyses:
        return Skipped(step.name, reason=f"not requested (config field 'analyses' does not include "
                                         f"'{step.analysis}')")
    if step.after is not None:
        dep = ctx.results.get(step.after)
        if dep is None or isinstance(dep, (Skipped, Failed)):
            return Skipped(step.name, reason=f"needs the result of '{step.after}', which did not run")
    why = step.needs(ctx)
    if why:
        log(f"  {step.name}: skipped — {why}")
        return Skipped(step.name, reason=why)
    log(f"{step.title} …")
    try:
        res = step.run(ctx)
    except Exception as e:  # noqa: BLE001 — reported, never swallowed silently
        log(f"  {step.name}: FAILED — {type(e).__name__}: {e}")
        return Failed(step.name, message=f"{type(e).__name__}: {e}", trace=traceback.format_exc(),
                      seconds=time.perf_counter() - t0)
    res.seconds = time.perf_counter() - t0
    if isinstance(res, Skipped):   # the data turned out not to support it (found only by running it)
        log(f"  {step.name}: skipped — {res.reason}")
        return res
    if ctx.out is not None:
        ctx.out.write_tables(res.tables)
        if step.figures is not None:
            try:
                res.figures = ctx.out.draw(step.figures, res)
            except Exception as e:  # noqa: BLE001
                res.notes.append(f"its figure failed: {type(e).__name__}: {e}")
                log(f"  {step.name}: figure FAILED — {type(e).__name__}: {e}")
    return res


# --------------------------------------------------------------------------------------------- shared tables
def summary_table(fit: Fit, var_names, hdi_prob: float) -> pd.DataFrame:
    """ArviZ summary (mean, sd, HDI, ESS, R-hat) of ``var_names`` with the model's name in front."""
    names = [v for v in var_names if v in fit.idata.posterior]
    s = az.summary(fit.idata, var_names=names, hdi_prob=hdi_prob, round_to="none")
    s.insert(0, "model", fit.name)
    s.index.name = "parameter"
    return s.reset_index()


def ppc_table(fit: Fit, groups: dict[str, dict[str, np.ndarray]] | None = None) -> pd.DataFrame:
    """Posterior predictive checks: observed vs replicated mean of each observed variable (overall and per group).

    p = P(T_rep ≥ T_obs) (ties count ½); values near 0 or 1 flag misfit.
    """
    rows = []
    idata = fit.idata
    if "posterior_predictive" not in idata.groups():
        return pd.DataFrame()
    for var in idata.observed_data.data_vars:
        obs = np.asarray(idata.observed_data[var], float)
        rep = np.asarray(idata.posterior_predictive[var], float)
        rep = rep.reshape((-1,) + rep.shape[2:])
        if obs.ndim == 2:  # counts (rater, bin): statistic = share of each bin, pooled over raters
            if obs.sum() == 0:   # no observations of this kind (folded meta-d′: no S1 stimuli)
                continue
            o = obs.sum(0) / obs.sum()
            r = rep.sum(1) / rep.sum(axis=(1, 2))[:, None]
            for j in range(obs.shape[1]):
                rows.append(_ppc_row(fit.name, var, f"bin {j}", o[j], r[:, j]))
            continue
        rows.append(_ppc_row(fit.name, var, "all", obs.mean(), rep.mean(1)))
        for gname, g in (groups or {}).get(var, {}).items():
            for key in np.unique(g):
                m = g == key
                rows.append(_ppc_row(fit.name, var, f"{gname}={key}", obs[m].mean(), rep[:, m].mean(1)))
    return pd.DataFrame(rows)


def dispersion_ppc(fit: Fit, var: str, group_idx: np.ndarray | None = None) -> pd.DataFrame:
    """Posterior predictive check of dispersion, not only of means: a χ² discrepancy of ``var`` summed within
    groups — per stimulus when ``group_idx`` gives each observation's stimulus (images differing in difficulty
    make their totals vary more than the model's binomial noise), else per observed cell.

    T(y) = Σ_g (y_g − E_g)²/V_g with E_g, V_g the mean and variance of the replicated group totals, computed for the
    observed data and for every replicate; p = P(T_rep ≥ T_obs). p near 0: the data are more dispersed than the
    model predicts (missing stimulus effects or overdispersion); near 1: less."""
    idata = fit.idata
    if "posterior_predictive" not in idata.groups() or var not in idata.posterior_predictive:
        return pd.DataFrame()
    obs = np.asarray(idata.observed_data[var], float).ravel()
    rep = np.asarray(idata.posterior_predictive[var], float)
    rep = rep.reshape(rep.shape[0] * rep.shape[1], -1)
    what = "per stimulus" if group_idx is not None else "per cell"
    if group_idx is not None:
        g = np.asarray(group_idx, int)
        G = int(g.max()) + 1
        obs = np.bincount(g, weights=obs, minlength=G)
        rep = np.stack([np.bincount(g, weights=r, minlength=G) for r in rep])
    E, V = rep.mean(0), rep.var(0)
    keep = V > 0
    t_obs = float(np.sum((obs[keep] - E[keep]) ** 2 / V[keep]))
    t_rep = np.sum((rep[:, keep] - E[keep]) ** 2 / V[keep], axis=1)
    row = _ppc_row(fit.name, var, what, t_obs, t_rep)
    row["statistic"] = f"χ² dispersion ({what}, {int(keep.sum())} groups)"
    return pd.DataFrame([row])


def _ppc_row(model, var, group, t_obs, t_rep) -> dict:
    p = float(np.mean(t_rep > t_obs) + 0.5 * np.mean(t_rep == t_obs))
    lo, hi = np.quantile(t_rep, [0.03, 0.97])
    return {"model": model, "variable": var, "statistic": f"mean ({group})", "observed": float(t_obs),
            "replicated_mean": float(np.mean(t_rep)), "rep_lo94": float(lo), "rep_hi94": float(hi),
            "ppp": p, "flag": bool(p < 0.01 or p > 0.99)}


def contraction(fit: Fit, var_names, n_prior: int = 1000) -> pd.DataFrame:
    """Posterior contraction 1 − var(posterior)/var(prior) of each element of ``var_names`` (Betancourt): near 1
    the data pin the parameter down; below 0.5 the data narrowed the prior by less than half — the design does
    not identify it.  Prior draws by forward sampling from the fitted model."""
    import pymc as pm
    names = [v for v in var_names if v in fit.idata.posterior]
    if fit.model is None or not names:
        return pd.DataFrame(columns=["model", "parameter", "contraction"])
    from ..nutpie_backend import CHEAP
    prior = pm.sample_prior_predictive(draws=n_prior, model=fit.model, var_names=names, random_seed=0,
                                       compile_kwargs=dict(CHEAP)).prior
    rows = []
    for v in names:
        post = np.asarray(fit.idata.posterior[v]).reshape((-1,) + fit.idata.posterior[v].shape[2:])
        pri = np.asarray(prior[v]).reshape((-1,) + prior[v].shape[2:])
        vp, vq = np.var(post, axis=0), np.var(pri, axis=0)
        dims = fit.idata.posterior[v].dims[2:]
        labels = ([str(x) for x in fit.idata.posterior[v][dims[0]].values] if dims else [None])
        for lab, a, b in zip(labels, np.atleast_1d(vp), np.atleast_1d(vq)):
            rows.append({"model": fit.name, "parameter": v if lab is None else f"{v}[{lab}]",
                         "contraction": float(1 - a / b) if b > 0 else float("nan")})
    return pd.DataFrame(rows)
