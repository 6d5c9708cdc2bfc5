"""Sampling, diagnostics and provenance shared by every model fit."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import arviz as az
import numpy as np
import pymc as pm

from cytocore.provenance import code_version

__all__ = ["Diagnostics", "Fit", "SamplerConfig", "available_cpus", "check_diagnostics", "fit_model",
           "log", "sampling_cores", "thinned"]

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
    """How every model is sampled.  ``sampler`` is ``"pymc"`` (PyMC's NUTS, C backend) or ``"nutpie"``."""

    draws: int = 1000
    tune: int = 1000
    chains: int = 2
    cores: int | None = None   # None: one process per chain, up to the CPUs this process may use
    target_accept: float = 0.9
    seed: int = 0
    sampler: str = "pymc"
    progressbar: bool = False
    posterior_predictive: bool = True
    ppc_draws: int = 500     # posterior draws (thinned evenly) that each replicate the data; 0: all of them
    rhat_max: float = 1.01
    ess_min: float = 400.0   # bulk and tail ESS, per parameter (Vehtari et al. 2021: > 100 per chain)
    max_divergences: int = 0

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
    """One fitted model: its name, the PyMC model (None once the fit has crossed a process boundary), the results
    and the checks."""

    name: str
    model: pm.Model | None
    idata: az.InferenceData
    diagnostics: Diagnostics
    seconds: float
    priors: dict[str, str]
    info: dict[str, Any] = field(default_factory=dict)


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
        vals = {k: x for k, x in vals.items() if np.isfinite(x)}
        return vals

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


def fit_model(name: str, model: pm.Model, cfg: SamplerConfig, *, priors: dict[str, str] | None = None,
              seed_offset: int = 0, info: dict[str, Any] | None = None) -> Fit:
    """Sample ``model`` with ``cfg``, add the posterior predictive, check diagnostics, log progress."""
    seed = int(cfg.seed) * 1000 + seed_offset
    t0 = time.perf_counter()
    cores = sampling_cores(cfg)
    log(f"  sampling {name} ({cfg.sampler}, {cfg.chains} chains × {cfg.draws} draws after {cfg.tune} tune, "
        f"{cores} process{'es' if cores > 1 else ''}) …")
    kwargs: dict[str, Any] = dict(draws=cfg.draws, tune=cfg.tune, chains=cfg.chains, cores=cores,
                                  random_seed=seed, progressbar=cfg.progressbar, target_accept=cfg.target_accept,
                                  model=model, compute_convergence_checks=False)
    if cores > 1 and cfg.sampler == "pymc" and sys.platform.startswith("linux"):
        # fork, not PyMC's default forkserver: a forkserver child re-imports PyMC (seconds of CPU per fit)
        kwargs["mp_ctx"] = "fork"
    if cfg.sampler == "nutpie":
        kwargs["nuts_sampler"] = "nutpie"
    elif cfg.sampler != "pymc":
        raise ValueError(f"unknown sampler {cfg.sampler!r}; use 'pymc' or 'nutpie'")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*divergen.*")
        warnings.filterwarnings("ignore", message=".*The number of samples is too small.*")
        idata = pm.sample(**kwargs)
        t_sample = time.perf_counter() - t0
        if cfg.posterior_predictive and model.observed_RVs:
            pp = pm.sample_posterior_predictive(thinned(idata, cfg.ppc_draws), model=model, random_seed=seed + 1,
                                                progressbar=False)
            idata.extend(pp)
    free = [rv.name for rv in model.free_RVs]
    diag = check_diagnostics(idata, free, cfg)
    secs = time.perf_counter() - t0
    idata.posterior.attrs["analysis_model"] = name
    idata.posterior.attrs["sampler_config"] = json.dumps(cfg.to_dict())
    idata.posterior.attrs["code_version"] = code_version()
    flag = "" if diag.ok else "   <<< DIAGNOSTIC FAILURE"
    log(f"  {name}: {secs:.1f} s (sampling {t_sample:.1f} s) — {diag.line()}{flag}")
    for p in diag.problems:
        log(f"    ! {p}")
    return Fit(name=name, model=model, idata=idata, diagnostics=diag, seconds=secs, priors=priors or {},
               info=info or {})


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


def hdi(x: np.ndarray, prob: float = 0.94) -> tuple[float, float]:
    """Highest-density interval of a 1-D sample."""
    x = np.sort(np.asarray(x, float).ravel())
    n = len(x)
    m = max(1, int(np.floor(prob * n)))
    widths = x[m:] - x[: n - m]
    i = int(np.argmin(widths))
    return float(x[i]), float(x[i + m])


def draws(idata: az.InferenceData, var: str) -> np.ndarray:
    """Posterior draws of ``var`` stacked over chains: shape (n_draws, *param_shape)."""
    a = np.asarray(idata.posterior[var])
    return a.reshape((-1,) + a.shape[2:])

