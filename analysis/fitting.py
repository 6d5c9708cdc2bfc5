"""Sampling, diagnostics and the priors table shared by every model fit.

The sampler is named explicitly (``SamplerConfig.sampler``, default nutpie's NUTS over a numba-compiled PyTensor
log-density, :mod:`analysis.nutpie_backend`; ``"pymc"`` is PyMC's own NUTS) and the stack is pinned
(``pymc<6``: PyMC 6 changes the default backend and, with nutpie installed, the default sampler).  Only the free
variables are sampled; deterministics (``pm.compute_deterministics``) and the posterior predictive are computed
afterwards from graphs compiled cheaply (``mode="FAST_COMPILE"``), so a fit compiles one graph with a real
compiler, not four.  Compile and sampling seconds are recorded separately (``Fit.info``).

The gate is strict (R-hat ≤ 1.01, bulk and tail ESS ≥ 400, no divergences) and a fit that misses it is tried
again within a stated bound before it is reported as failed: divergences → once more at a higher target
acceptance (smaller steps); too few effective draws → more draws per chain, doubling up to ``max_draws``. Every
attempt is recorded (``Fit.attempts``) and the report says which fits needed one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import arviz as az
import numpy as np
import pymc as pm

from cytocore.provenance import code_version

__all__ = ["Diagnostics", "Fit", "SamplerConfig", "available_cpus", "check_diagnostics", "draws", "fit_model",
           "hdi_bounds", "log", "prior_rows", "sampling_cores", "thinned"]

_QUIET = False


def log(msg: str) -> None:
    """Progress output (stderr, flushed) unless quieted."""
    if not _QUIET:
        print(msg, file=sys.stderr, flush=True)


def set_quiet(q: bool) -> None:
    global _QUIET
    _QUIET = q


@dataclass
class SamplerConfig:
    """How every model is sampled.  ``sampler``: ``"nutpie"`` (nutpie's NUTS, the log-density compiled by PyTensor's
    ``backend``: ``"numba"`` or ``"c"``) or ``"pymc"`` (PyMC's NUTS, C backend)."""

    draws: int = 1000
    tune: int = 500
    chains: int = 4
    cores: int | None = None   # None: one process per chain, up to the CPUs this process may use
    target_accept: float = 0.9
    # tree depth during the first 200 tuning steps: the initial unit mass matrix forces tiny steps there and
    # uncapped trees spent as many leapfrog steps as all the kept draws (measured, docs/analysis.md)
    early_max_treedepth: int = 4   # PyMC's sampler only
    max_treedepth: int = 10
    seed: int = 0
    sampler: str = "nutpie"
    # the compiler of the log-density: "numba" (fast loops; each process compiles the whole graph again, cost ∝
    # graph size), "c" (PyTensor's C: per-op modules cached on disk, slower calls) or "auto": the model's own
    # hint (``model.backend_hint``: the meta-d′ model, a large graph on small data, says "c"), else numba
    backend: str = "auto"
    progressbar: bool = False
    posterior_predictive: bool = True
    ppc_draws: int = 500     # posterior draws (thinned evenly) that each replicate the data; 0: all of them
    rhat_max: float = 1.01
    ess_min: float = 400.0   # bulk and tail ESS, per parameter (Vehtari et al. 2021: > 100 per chain)
    max_divergences: int = 0
    max_draws: int = 4000    # bound on draws per chain when a fit is re-run because its ESS fell short
    max_reruns: int = 2      # bound on re-runs of one fit (each stated in the report)
    retry_target_accept: float = 0.97  # a fit with divergences is run once more at this target (≤ target: never)

    def validate(self) -> "SamplerConfig":
        for name in ("draws", "tune", "chains", "max_draws"):
            if getattr(self, name) < (1 if name != "tune" else 0):
                raise ValueError(f"sampler.{name} must be ≥ 1 (got {getattr(self, name)})")
        if not 0 < self.target_accept < 1 or not 0 <= self.retry_target_accept < 1:
            raise ValueError("sampler.target_accept and sampler.retry_target_accept must lie in (0, 1)")
        if self.sampler not in ("pymc", "nutpie"):
            raise ValueError(f"sampler.sampler: unknown sampler {self.sampler!r}; use 'nutpie' or 'pymc'")
        if self.backend not in ("auto", "numba", "c"):
            raise ValueError(f"sampler.backend: unknown backend {self.backend!r}; use 'auto', 'numba' or 'c'")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Diagnostics:
    ok: bool
    rhat_max: float
    ess_bulk_min: float
    ess_tail_min: float
    divergences: int
    n_draws: int
    problems: list[str] = field(default_factory=list)
    worst: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        status = "OK" if self.ok else "FAILED"
        return (f"{status}: R-hat max {self.rhat_max:.3f}, ESS bulk min {self.ess_bulk_min:.0f}, "
                f"ESS tail min {self.ess_tail_min:.0f}, divergences {self.divergences}/{self.n_draws}")


@dataclass
class Fit:
    """One fitted model: its name, the PyMC model (None once the fit has crossed a process boundary), the results,
    the checks, the priors table (generated from the model) and every sampling attempt."""

    name: str
    model: pm.Model | None
    idata: az.InferenceData
    diagnostics: Diagnostics
    seconds: float
    priors: list[dict[str, str]]
    info: dict[str, Any] = field(default_factory=dict)
    attempts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def retried(self) -> str:
        """A sentence on the re-runs this fit needed ('' when the first run passed)."""
        if len(self.attempts) < 2:
            return ""
        steps = "; then ".join(f"{a['draws']} draws/chain at target_accept {a['target_accept']:g}"
                               + (f" ({a['why']})" if a.get("why") else "") for a in self.attempts)
        return f"{len(self.attempts)} runs: {steps}"


def prior_rows(model: pm.Model, meanings: Mapping[str, str] | None = None) -> list[dict[str, str]]:
    """The priors table of ``model``, read from the model itself (PyMC's own rendering of each free variable's
    distribution), with the meaning of each parameter; ``meanings`` entries that are not free variables (fixed
    quantities, conventions) are added as notes."""
    meanings = dict(meanings or {})
    rows = []
    for rv in model.free_RVs:
        text = rv.str_repr(formatting="plain")
        dist = text.split(" ~ ", 1)[1] if " ~ " in text else text
        meaning = meanings.pop(rv.name, "standardised offsets (non-centred)" if rv.name.startswith("z_") else "")
        rows.append({"parameter": rv.name, "prior": dist, "meaning": meaning})
    for k, v in meanings.items():
        rows.append({"parameter": k, "prior": "(not sampled)", "meaning": v})
    return rows


def check_diagnostics(idata: az.InferenceData, var_names: Sequence[str], cfg: SamplerConfig) -> Diagnostics:
    """R-hat (rank-normalised, split), bulk/tail ESS and divergences over ``var_names``."""
    post = idata.posterior
    var_names = [v for v in var_names if v in post]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rhat = az.rhat(post, var_names=var_names)
        ess_b = az.ess(post, var_names=var_names, method="bulk")
        ess_t = az.ess(post, var_names=var_names, method="tail")

    def extreme(ds, fn):
        vals = {v: float(fn(np.asarray(ds[v]))) for v in var_names}
        return {k: x for k, x in vals.items() if np.isfinite(x)}

    rh = extreme(rhat, np.nanmax)
    eb = extreme(ess_b, np.nanmin)
    et = extreme(ess_t, np.nanmin)
    div = int(np.asarray(idata.sample_stats["diverging"]).sum()) if "diverging" in idata.sample_stats else 0
    n = int(post.sizes["chain"] * post.sizes["draw"])
    rhat_max = max(rh.values()) if rh else float("nan")
    ess_b_min = min(eb.values()) if eb else float("nan")
    ess_t_min = min(et.values()) if et else float("nan")
    problems = []
    if post.sizes["chain"] < 2:
        problems.append("only one chain: R-hat cannot detect non-convergence")
    bad_r = {k: v for k, v in rh.items() if v > cfg.rhat_max}
    if bad_r:
        problems.append("R-hat > %.2f for %s" % (cfg.rhat_max, ", ".join(f"{k} ({v:.3f})" for k, v in bad_r.items())))
    bad_e = {k: min(eb.get(k, np.inf), et.get(k, np.inf)) for k in var_names
             if min(eb.get(k, np.inf), et.get(k, np.inf)) < cfg.ess_min}
    if bad_e:
        problems.append("ESS < %.0f for %s" % (cfg.ess_min, ", ".join(f"{k} ({v:.0f})" for k, v in bad_e.items())))
    if div > cfg.max_divergences:
        problems.append(f"{div} divergent transitions (allowed {cfg.max_divergences})")
    worst = {"rhat": max(rh, key=rh.get) if rh else None, "ess_bulk": min(eb, key=eb.get) if eb else None}
    return Diagnostics(ok=not problems, rhat_max=rhat_max, ess_bulk_min=ess_b_min, ess_tail_min=ess_t_min,
                       divergences=div, n_draws=n, problems=problems, worst=worst)


def _sample(model: pm.Model, compiled, cfg: SamplerConfig, draws_: int, target_accept: float,
            seed: int) -> az.InferenceData:
    """The free variables' draws (and sample stats) of one run of the configured sampler."""
    cores = sampling_cores(cfg)
    if cfg.sampler == "nutpie":
        from .nutpie_backend import sample_nutpie
        return sample_nutpie(compiled, draws=draws_, tune=cfg.tune, chains=cfg.chains, cores=cores, seed=seed,
                             target_accept=target_accept, max_treedepth=cfg.max_treedepth,
                             progressbar=cfg.progressbar)
    kwargs: dict[str, Any] = dict(draws=draws_, tune=cfg.tune, chains=cfg.chains, cores=cores, random_seed=seed,
                                  progressbar=cfg.progressbar, target_accept=target_accept, model=model,
                                  compute_convergence_checks=False, var_names=[v.name for v in model.free_RVs],
                                  idata_kwargs={"log_likelihood": False},
                                  nuts={"early_max_treedepth": cfg.early_max_treedepth,
                                        "max_treedepth": cfg.max_treedepth})
    if cores > 1 and sys.platform.startswith("linux"):
        # fork, not PyMC's default forkserver: a forkserver child re-imports PyMC (seconds of CPU per fit)
        kwargs["mp_ctx"] = "fork"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*divergen.*")
        warnings.filterwarnings("ignore", message=".*The number of samples is too small.*")
        warnings.filterwarnings("ignore", message=".*Initializing NUTS.*")
        idata = pm.sample(**kwargs)
    return az.InferenceData(posterior=idata.posterior, sample_stats=idata.sample_stats)


def _compile(model: pm.Model, cfg: SamplerConfig):
    if cfg.sampler == "nutpie":
        from .nutpie_backend import compile_logp
        backend = cfg.backend if cfg.backend != "auto" else getattr(model, "backend_hint", "numba")
        return compile_logp(model, backend)
    return None


def data_groups(model: pm.Model) -> az.InferenceData:
    """``observed_data`` and ``constant_data`` (the ``pm.Data``: index arrays, covariates) with the model's coords."""
    coords = {k: list(v) for k, v in model.coords.items() if v is not None}
    dims = {k: list(v) for k, v in model.named_vars_to_dims.items()}

    def value(v):
        return np.asarray(v.get_value() if hasattr(v, "get_value") else v.data if hasattr(v, "data") else v.eval())

    observed = {rv.name: value(model.rvs_to_values[rv]) for rv in model.observed_RVs}
    const = {v.name: value(v) for v in model.data_vars if v.name not in observed}
    return az.from_dict(observed_data=observed, constant_data=const, coords=coords, dims=dims)


def complete_idata(idata: az.InferenceData, model: pm.Model, cfg: SamplerConfig, seed: int) -> az.InferenceData:
    """Add to the free variables' draws: the deterministics (``pm.compute_deterministics``), the observed and
    constant data, and the posterior predictive from ``cfg.ppc_draws`` thinned draws — all compiled with
    ``mode="FAST_COMPILE"``."""
    from .nutpie_backend import CHEAP
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*Runtime broadcasting.*")
        if model.deterministics:
            post = pm.compute_deterministics(idata.posterior, model=model, merge_dataset=True, progressbar=False,
                                             compile_kwargs=dict(CHEAP))
            idata.posterior = post
        idata.extend(data_groups(model))
        if cfg.posterior_predictive and model.observed_RVs:
            pp = pm.sample_posterior_predictive(thinned(idata, cfg.ppc_draws), model=model, random_seed=seed + 1,
                                                progressbar=False, compile_kwargs=dict(CHEAP))
            idata.add_groups(posterior_predictive=pp.posterior_predictive)
    return idata


def _next_attempt(diag: Diagnostics, cfg: SamplerConfig, draws_: int, ta: float, tried_ta: bool, runs: int):
    """(draws, target_accept, why) of the next run, or None when a bound is reached or more of the same would not
    help: divergences → once at a higher target acceptance; ESS short → twice the draws if that could reach the
    gate (ESS grows about in proportion); R-hat a little high (≤ 1.05) → twice the draws; far from converged → no."""
    if runs > cfg.max_reruns:
        return None
    if diag.divergences > cfg.max_divergences:
        if not tried_ta and cfg.retry_target_accept > ta:
            return draws_, cfg.retry_target_accept, f"{diag.divergences} divergences"
        return None
    nxt = min(2 * draws_, cfg.max_draws)
    ess = min(diag.ess_bulk_min, diag.ess_tail_min)
    if nxt <= draws_ or not np.isfinite(ess):
        return None
    if ess < cfg.ess_min and ess * nxt / draws_ >= 0.75 * cfg.ess_min:
        return nxt, ta, f"ESS {ess:.0f} < {cfg.ess_min:.0f}"
    if ess >= cfg.ess_min and cfg.rhat_max < diag.rhat_max <= 1.05:
        return nxt, ta, f"R-hat {diag.rhat_max:.3f}"
    return None


def fit_model(name: str, model: pm.Model, cfg: SamplerConfig, *, priors: Mapping[str, str] | None = None,
              seed_offset: int = 0, info: dict[str, Any] | None = None) -> Fit:
    """Sample ``model`` with ``cfg`` (re-running within the bounds of :class:`SamplerConfig` while the gate fails),
    add deterministics and the posterior predictive, check diagnostics, log progress.  ``priors``: the meaning of
    each parameter.  ``Fit.info`` records the seconds spent compiling, sampling and completing the draws."""
    seed = int(cfg.seed) * 1000 + seed_offset
    t0 = time.perf_counter()
    free = [rv.name for rv in model.free_RVs]
    compiled = _compile(model, cfg)          # once per fit: a re-run samples the same compiled function
    t_compile = time.perf_counter() - t0
    draws_, ta, attempts, why = cfg.draws, cfg.target_accept, [], ""
    while True:
        log(f"  sampling {name} ({cfg.sampler}{'/' + compiled.backend if compiled is not None else ''}, {cfg.chains} chains × {draws_} draws after {cfg.tune} tune, "
            f"target_accept {ta:g}, {sampling_cores(cfg)} core{'s' if sampling_cores(cfg) > 1 else ''}) …")
        t_a = time.perf_counter()
        idata = _sample(model, compiled, cfg, draws_, ta, seed)
        diag = check_diagnostics(idata, free, cfg)
        attempts.append({"draws": draws_, "target_accept": ta, "why": why, "ok": diag.ok,
                         "seconds": round(time.perf_counter() - t_a, 1), "problems": list(diag.problems)})
        nxt = None if diag.ok else _next_attempt(diag, cfg, draws_, ta, ta != cfg.target_accept, len(attempts))
        if nxt is None:
            break
        log(f"    {name}: {diag.line()} — running again with {nxt[0]} draws/chain, target_accept {nxt[1]:g} "
            f"({nxt[2]})")
        draws_, ta, why = nxt
    t_sample = time.perf_counter() - t0 - t_compile
    idata = complete_idata(idata, model, cfg, seed)
    secs = time.perf_counter() - t0
    timing = {"backend": compiled.backend if compiled is not None else "pymc",
              "compile_s": round(t_compile, 2), "sample_s": round(t_sample, 2),
              "complete_s": round(secs - t_compile - t_sample, 2)}
    idata.posterior.attrs["analysis_model"] = name
    idata.posterior.attrs["sampler_config"] = json.dumps(cfg.to_dict())
    idata.posterior.attrs["sampling_attempts"] = json.dumps(attempts)
    idata.posterior.attrs["code_version"] = code_version()
    idata.posterior.attrs["seconds"] = json.dumps(timing)
    flag = "" if diag.ok else "   <<< DIAGNOSTIC FAILURE"
    log(f"  {name}: {secs:.1f} s (compile {t_compile:.1f} s, sampling {t_sample:.1f} s) — {diag.line()}{flag}")
    for p in diag.problems:
        log(f"    ! {p}")
    return Fit(name=name, model=model, idata=idata, diagnostics=diag, seconds=secs,
               priors=prior_rows(model, priors), info={**(info or {}), **timing}, attempts=attempts)


def thinned(idata: az.InferenceData, n: int) -> az.InferenceData:
    """``idata`` with every k-th draw of each chain, k chosen so that at most ``n`` draws remain over all chains
    (all of them if n ≤ 0).

    Why: posterior predictive p-values need a few hundred replicated data sets, not thousands; forward sampling
    costs time per draw."""
    total = idata.posterior.sizes["chain"] * idata.posterior.sizes["draw"]
    if n <= 0 or total <= n:
        return idata
    k = -(-total // n)
    return idata.isel(draw=slice(None, None, k), groups="posterior")


def sampling_cores(cfg: SamplerConfig) -> int:
    """Processes for the chains: ``cfg.cores`` if set, else one per chain up to the CPUs this process may use."""
    if cfg.cores is not None:
        if cfg.cores < 1:
            raise ValueError(f"cores must be ≥ 1 (got {cfg.cores}); leave it unset to use one per chain")
        return int(cfg.cores)
    return max(1, min(cfg.chains, available_cpus()))


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def hdi_bounds(x: np.ndarray, prob: float = 0.94) -> np.ndarray:
    """ArviZ's highest-density interval of draws ``x`` (n_draws, ...) along the first axis: (..., 2)."""
    x = np.asarray(x, float)
    if x.ndim == 1:  # ArviZ reads a 1-D array as draws, an N-D one as (chain, draw, ...)
        return np.asarray(az.hdi(x, hdi_prob=prob))
    return np.asarray(az.hdi(x.reshape((1,) + x.shape), hdi_prob=prob))


def draws(idata: az.InferenceData, var: str) -> np.ndarray:
    """Posterior draws of ``var`` stacked over chains: shape (n_draws, *param_shape)."""
    a = np.asarray(idata.posterior[var])
    return a.reshape((-1,) + a.shape[2:])
