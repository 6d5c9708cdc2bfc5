"""nutpie's NUTS over a PyMC model whose log-density and gradient are one PyTensor function.

Why not ``nutpie.compile_pymc_model``: its numba backend wraps the PyTensor function in a ``numba.cfunc`` that
numba cannot cache (it uses dynamic globals), so every process pays 5–10 s per model to compile the wrapper again,
warm cache or not (measured, docs/analysis.md). Here nutpie's Python-function interface (``nutpie.from_pyfunc``)
calls the compiled PyTensor function directly: numba's on-disk cache (PyTensor's, under ``base_compiledir``) then
makes a warm compile a cache load, and the data enter as ``pm.Data`` (shared variables), so a new data set of any
size hits the same cache. The trace holds the free variables only; deterministics, the posterior predictive and
prior draws are computed afterwards from graphs compiled cheaply (``mode="FAST_COMPILE"``: no C or numba
compilation; they run a few thousand times, not a few hundred thousand).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import arviz as az
import numpy as np
import pymc as pm

__all__ = ["CompiledLogp", "compile_logp", "sample_nutpie"]

CHEAP = {"mode": "FAST_COMPILE"}   # compile_kwargs for graphs evaluated a few thousand times


@dataclass
class CompiledLogp:
    """The log-density and gradient of a model over one flat vector of its unconstrained free variables."""

    model: pm.Model
    n_dim: int
    names: list[str]                 # free RV names
    shapes: list[tuple[int, ...]]
    logp_dlogp: Callable[[np.ndarray], tuple[float, np.ndarray]]
    expand: Callable[[np.ndarray], list[np.ndarray]]   # flat unconstrained → free RVs (constrained)
    initial_point: Callable[[int], np.ndarray]
    seconds: float
    backend: str


def _flat_graph(model: pm.Model):
    import pytensor
    import pytensor.tensor as pt

    free = list(model.free_RVs)
    values = [model.rvs_to_values[v] for v in free]
    point = model.initial_point(0)
    shapes = [tuple(np.shape(point[v.name])) for v in values]
    sizes = [int(np.prod(s, dtype=int)) for s in shapes]
    x = pt.TensorType("float64", shape=(sum(sizes),))("x")
    parts, i = {}, 0
    for v, s, k in zip(values, shapes, sizes):
        parts[v] = x[i:i + k].reshape(s).astype(v.dtype)
        i += k
    logp = model.logp()
    grads = pytensor.grad(logp, values)
    grad = pt.concatenate([g.ravel() for g in grads])
    logp_x, grad_x = pytensor.clone_replace([logp, grad], parts)
    constrained = pytensor.clone_replace(model.replace_rvs_by_values(free), parts)
    return x, free, values, shapes, sizes, logp_x, grad_x, constrained


def compile_logp(model: pm.Model, backend: str = "numba") -> CompiledLogp:
    """Compile ``model``'s log-density and gradient with PyTensor (``backend`` "numba" or "c")."""
    from pymc.initial_point import make_initial_point_fn
    from pymc.pytensorf import compile as compile_pymc

    t0 = time.perf_counter()
    # nutpie calls these from one thread per chain; a compiled PyTensor function keeps its inputs and outputs in
    # shared storage, so two threads inside one call can swap or clear each other's values (seen: the initial point
    # failing with a cleared input). The numba kernel is a pure function and needs no lock.
    lock = threading.Lock()
    x, free, values, shapes, sizes, logp_x, grad_x, constrained = _flat_graph(model)
    with model:
        if backend == "numba":
            fn = compile_pymc([x], [logp_x, grad_x], mode="NUMBA")
            jit = fn.vm.jit_fn
            shared = tuple(np.asarray(s.get_value()) for s in fn.get_shared())

            def logp_dlogp(q):
                lp, g = jit(q, *shared)
                return float(lp), g
        elif backend == "c":
            fn = compile_pymc([x], [logp_x, grad_x])
            fn.trust_input = True

            def logp_dlogp(q):
                with lock:
                    lp, g = fn(q)
                return float(lp), g
        else:
            raise ValueError(f"unknown backend {backend!r}; use 'numba' or 'c'")
        expand_fn = compile_pymc([x], constrained, **dict(CHEAP))
    expand_fn.trust_input = True
    ip_fn = make_initial_point_fn(model=model, jitter_rvs=set(free), return_transformed=True)
    names_v = [v.name for v in values]

    def initial_point(seed: int) -> np.ndarray:
        with lock:
            p = ip_fn(seed)
        return np.concatenate([np.asarray(p[n], float).ravel() for n in names_v])

    def expand(q: np.ndarray) -> list[np.ndarray]:
        with lock:
            return [np.array(a) for a in expand_fn(q)]

    logp_dlogp(initial_point(0))   # compile (or load from the cache) now, so that the time is counted here
    return CompiledLogp(model=model, n_dim=int(sum(sizes)), names=[v.name for v in free], shapes=shapes,
                        logp_dlogp=logp_dlogp, expand=expand, initial_point=initial_point,
                        seconds=time.perf_counter() - t0, backend=backend)


def sample_nutpie(c: CompiledLogp, *, draws: int, tune: int, chains: int, cores: int, seed: int,
                  target_accept: float, max_treedepth: int = 10, progressbar: bool = False) -> Any:
    """NUTS (nutpie) over ``c``: an InferenceData with the free variables (constrained) and sample stats."""
    import nutpie
    from nutpie.compiled_pyfunc import from_pyfunc

    model = c.model
    dims = {name: tuple(model.named_vars_to_dims.get(name, ())) for name in c.names}
    coords = {k: list(v) if v is not None else list(range(int(model.dim_lengths[k].eval())))
              for k, v in model.coords.items() if any(k in d for d in dims.values())}
    labels = {k: [str(x) for x in v] for k, v in coords.items()}   # nutpie takes string labels only
    shapes = [tuple(int(n) for n in np.shape(a)) for a in c.expand(c.initial_point(0))]

    def make_logp():
        return c.logp_dlogp

    def make_expand(seed1, seed2, chain):
        def expand(q):
            return {n: np.asarray(a, dtype="float64", order="C").reshape(s)
                    for n, a, s in zip(c.names, c.expand(q), shapes)}
        return expand

    pm_model = from_pyfunc(
        ndim=c.n_dim, make_logp_fn=make_logp, make_expand_fn=make_expand,
        expanded_dtypes=[np.dtype("float64")] * len(c.names), expanded_shapes=shapes, expanded_names=c.names,
        coords=labels, dims=dims, make_initial_point_fn=c.initial_point)
    idata = nutpie.sample(pm_model, draws=draws, tune=tune, chains=chains, cores=cores, seed=seed,
                          target_accept=target_accept, maxdepth=max_treedepth, save_warmup=False,
                          progress_bar=progressbar)
    post = idata.posterior.assign_coords({k: v for k, v in coords.items() if k in idata.posterior.dims})
    return az.InferenceData(posterior=post, sample_stats=idata.sample_stats)
