"""Single-observer meta-d′ by maximum likelihood (Maniscalco & Lau 2012), in SciPy.

Used to cross-check the Bayesian meta-d′ model.  As in M&L's ``fit_meta_d_MLE``: d′ and c1 come from the
type-1 counts and are held fixed; meta-d′ and the 2(K−1) type-2 criteria maximise the likelihood of the
confidence counts given the answer.  The type-2 criteria start at meta-c1 = c1·meta-d′/d′ (M&L's "meta-c′ = c′",
``meta_c1="scaled"``, what metadpy fits) or at meta-c1 = c1 (HMeta-d's convention and the Bayesian model's,
``meta_c1="fixed"``).
Counts follow the HMeta-d layout (answer S1 at confidence K..1, then answer S2 at confidence 1..K).
"""

from __future__ import annotations

import numpy as np
from scipy import optimize
from scipy.stats import norm

__all__ = ["fit_metad_mle", "type1_sdt"]


def type1_sdt(nR_S1: np.ndarray, nR_S2: np.ndarray, pad: float = 0.0) -> tuple[float, float]:
    """d′ and c1 (threshold on the decision axis; P(answer S2 | S2) = Φ(d′/2 − c1)) from HMeta-d counts."""
    nR_S1 = np.asarray(nR_S1, float) + pad
    nR_S2 = np.asarray(nR_S2, float) + pad
    K = len(nR_S1) // 2
    hr = nR_S2[K:].sum() / nR_S2.sum()
    far = nR_S1[K:].sum() / nR_S1.sum()
    zh, zf = norm.ppf(hr), norm.ppf(far)
    return float(zh - zf), float(-0.5 * (zh + zf))


def _neg_loglik(theta, nR_S1, nR_S2, d1, c1, K, meta_c1="scaled"):
    meta_d = theta[0]
    inc = np.exp(theta[1:])
    inc_neg, inc_pos = inc[: K - 1], inc[K - 1:]
    mc = c1 * meta_d / d1 if meta_c1 == "scaled" else c1
    t_pos = mc + np.cumsum(inc_pos)
    t_neg = mc - np.cumsum(inc_neg)
    ll = 0.0
    for counts, mu in ((nR_S1, -meta_d / 2), (nR_S2, meta_d / 2)):
        # answer S2, confidence 1..K: bins [mc, t1), ..., [t_{K-1}, inf), normalised by P(x > mc)
        e = np.r_[mc, t_pos, np.inf]
        sf = norm.sf(e - mu)
        p2 = (sf[:-1] - sf[1:]) / sf[0]
        # answer S1, confidence 1..K: bins (t_neg1, mc], ..., (-inf, t_neg_{K-1}], normalised by P(x < mc)
        e = np.r_[mc, t_neg, -np.inf]
        cdf = norm.cdf(e - mu)
        p1 = (cdf[:-1] - cdf[1:]) / cdf[0]
        p = np.r_[p1[::-1], p2]
        ll += float(np.sum(counts * np.log(np.maximum(p, 1e-300))))
    return -ll


def fit_metad_mle(nR_S1, nR_S2, pad: float = 0.0, n_starts: int = 5, seed: int = 0, meta_c1: str = "scaled"
                  ) -> dict:
    """Maximum-likelihood meta-d′ for one observer.  ``pad`` adds a constant to every cell (M&L suggest 1/(2K));
    ``meta_c1``: "scaled" (M&L, metadpy) or "fixed" (HMeta-d, the Bayesian model)."""
    if meta_c1 not in ("scaled", "fixed"):
        raise ValueError(f"meta_c1 must be 'scaled' or 'fixed' (got {meta_c1!r})")
    nR_S1 = np.asarray(nR_S1, float) + pad
    nR_S2 = np.asarray(nR_S2, float) + pad
    K = len(nR_S1) // 2
    d1, c1 = type1_sdt(nR_S1, nR_S2)
    rng = np.random.default_rng(seed)
    best = None
    for i in range(n_starts):
        x0 = np.r_[d1 if i == 0 else d1 * rng.uniform(0.2, 1.5),
                   np.log(0.5) + (np.zeros(2 * (K - 1)) if i == 0 else rng.normal(0, 0.5, 2 * (K - 1)))]
        r = optimize.minimize(_neg_loglik, x0, args=(nR_S1, nR_S2, d1, c1, K, meta_c1), method="L-BFGS-B")
        if best is None or r.fun < best.fun:
            best = r
    meta_d = float(best.x[0])
    return {"d": d1, "c1": c1, "meta_d": meta_d, "M": meta_d / d1 if d1 != 0 else float("nan"),
            "neg_loglik": float(best.fun), "converged": bool(best.success)}
