"""Multi-reader multi-case (MRMC) analysis of empirical AUCs: Obuchowski–Rockette (OR) with Hillis' denominator
degrees of freedom, the analysis reader studies in diagnostic imaging are reported with.

Every reader (and the model, a reader with no reader variability) rates the same cases; a reader's figure of merit
is the empirical AUC (Mann–Whitney: P(rating of a positive case > rating of a negative case), ties ½).  Readers
and cases are random: the variance of the readers' mean AUC has a reader part (the spread of the readers' AUCs,
MS(R)) and a case part, the covariance Cov2 between two readers' AUCs that comes from their reading the same cases,
estimated by jackknifing cases (or DeLong's structural components).  For one "test" (the human readers) Hillis
(2007) gives

    Var(mean AUC) = [MS(R) + J·max(Cov2, 0)] / J,   ddf = [MS(R) + J·max(Cov2, 0)]² / [MS(R)² / (J − 1)],

and the same analysis of the per-reader differences AUC_j − AUC_model (the model reads the same cases, so it is one
fixed reader; the jackknife gives the covariance of the differences) tests human − model — RJafroc's
"1T-RRRC" comparison of readers with a stand-alone algorithm.  :func:`or_hillis` is the general two-or-more-test
OR analysis (F test, Hillis ddf, per-test intervals), checked against the published Van Dyke example
(tests/analysis/test_mrmc.py).  :func:`simulate_roe_metz` draws reader studies from the Roe & Metz (1997) model
for the type-I error and coverage check (benchmarks/analysis_mrmc.py); :func:`sizing` is the power of the
human − model test for other numbers of readers and cases, from this study's variance components.

NumPy and SciPy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["ReaderAUCs", "or_hillis", "reader_aucs", "simulate_roe_metz", "single_test", "sizing"]


@dataclass
class ReaderAUCs:
    """Empirical AUCs of J readers on N common cases with their per-case jackknife values (J, N) and, where every
    reader has the same truth, DeLong's structural components (V10: (J, positives), V01: (J, negatives))."""

    auc: np.ndarray
    jack: np.ndarray
    v10: np.ndarray | None = None
    v01: np.ndarray | None = None

    def __sub__(self, other: "ReaderAUCs") -> "ReaderAUCs":
        """Per-reader differences with ``other`` (one row, e.g. the model, or J rows), same cases."""
        v10 = self.v10 - other.v10 if self.v10 is not None and other.v10 is not None else None
        v01 = self.v01 - other.v01 if self.v01 is not None and other.v01 is not None else None
        return ReaderAUCs(self.auc - other.auc, self.jack - other.jack, v10, v01)

    def cov(self, method: str = "jackknife") -> np.ndarray:
        """(J, J) case-sampling covariance of the readers' AUCs."""
        if method == "jackknife":
            n = self.jack.shape[1]
            d = self.jack - self.jack.mean(axis=1, keepdims=True)
            return (n - 1) / n * d @ d.T
        if method == "delong":
            if self.v10 is None:
                raise ValueError("DeLong's covariance needs one truth for every reader; use the jackknife")
            return (np.atleast_2d(np.cov(self.v10, ddof=1)) / self.v10.shape[1]
                    + np.atleast_2d(np.cov(self.v01, ddof=1)) / self.v01.shape[1])
        raise ValueError(f"unknown covariance method {method!r}; use 'jackknife' or 'delong'")


def _one_reader(pos: np.ndarray, neg: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """AUC and structural components: V10_k = P(neg < pos_k) + ½P(=), V01_l = P(pos > neg_l) + ½P(=)."""
    s = np.sort(neg)
    v10 = (np.searchsorted(s, pos, "left") + np.searchsorted(s, pos, "right")) / (2 * len(neg))
    s = np.sort(pos)
    v01 = (2 * len(pos) - np.searchsorted(s, neg, "left") - np.searchsorted(s, neg, "right")) / (2 * len(pos))
    return float(v10.mean()), v10, v01


def reader_aucs(ratings: np.ndarray, truth: np.ndarray) -> ReaderAUCs:
    """Empirical AUCs of ``ratings`` (J, N: higher = more likely positive) against ``truth`` — (N,) shared by the
    readers, or (J, N) when it differs by reader (e.g. each reader's own correct/incorrect calls, a type-2 AUC).
    Jackknife value of reader j without case c: (m·AUC − V10_c)/(m − 1) if c is positive for j, else
    (n·AUC − V01_c)/(n − 1) (exact: the Mann–Whitney AUC is the mean of its structural components)."""
    ratings = np.atleast_2d(np.asarray(ratings, float))
    J, N = ratings.shape
    tr = np.broadcast_to(np.asarray(truth, bool), (J, N))
    shared = np.asarray(truth).ndim == 1
    auc, jack, v10s, v01s = np.empty(J), np.empty((J, N)), [], []
    for j in range(J):
        p, q = tr[j], ~tr[j]
        m, n = int(p.sum()), int(q.sum())
        if m < 2 or n < 2:
            raise ValueError(f"reader {j}: needs ≥ 2 positive and ≥ 2 negative cases (has {m} and {n})")
        a, v10, v01 = _one_reader(ratings[j, p], ratings[j, q])
        auc[j] = a
        jack[j, p] = (m * a - v10) / (m - 1)
        jack[j, q] = (n * a - v01) / (n - 1)
        v10s.append(v10)
        v01s.append(v01)
    if shared:
        return ReaderAUCs(auc, jack, np.array(v10s), np.array(v01s))
    return ReaderAUCs(auc, jack)


def single_test(r: ReaderAUCs, *, alpha: float = 0.05, null: float = 0.0, cov: str = "jackknife") -> dict:
    """OR analysis of one test with Hillis' ddf: the readers' mean figure of merit, its standard error, ddf, the
    (1 − alpha) interval and the two-sided test of mean = ``null``.  Returns MS(R), Var (mean case variance), Cov2."""
    J = len(r.auc)
    if J < 2:
        raise ValueError("the random-reader analysis needs ≥ 2 readers")
    C = r.cov(cov)
    var = float(np.mean(np.diag(C)))
    cov2 = float((C.sum() - np.trace(C)) / (J * (J - 1)))
    ms_r = float(np.var(r.auc, ddof=1))
    den = ms_r + J * max(cov2, 0.0)
    se = float(np.sqrt(den / J))
    ddf = float(den**2 / (ms_r**2 / (J - 1))) if ms_r > 0 else float("inf")
    est = float(r.auc.mean())
    q = stats.t.ppf(1 - alpha / 2, ddf)
    t = (est - null) / se if se > 0 else float("nan")
    return {"estimate": est, "se": se, "df": ddf, "lo": est - q * se, "hi": est + q * se, "t": float(t),
            "p": float(2 * stats.t.sf(abs(t), ddf)), "MS_R": ms_r, "Var": var, "Cov2": cov2, "readers": J,
            "cases": int(r.jack.shape[1])}


def or_hillis(auc: np.ndarray, C: np.ndarray, *, alpha: float = 0.05) -> dict:
    """The OR test of equal tests with Hillis' ddf.  ``auc``: (I, J) figures of merit of I tests × J readers;
    ``C``: (I·J, I·J) their case-sampling covariance, index i·J + j.  Returns MS(T), MS(T:R), Var, Cov1–3, F, ddf,
    p, each pairwise difference with its interval, and each test alone (:func:`single_test`'s quantities)."""
    auc = np.asarray(auc, float)
    I, J = auc.shape
    idx = np.arange(I * J)
    ti, rj = idx // J, idx % J
    same_t, same_r = ti[:, None] == ti[None, :], rj[:, None] == rj[None, :]
    var = float(np.mean(np.diag(C)))
    cov1 = float(C[~same_t & same_r].mean())
    cov2 = float(C[same_t & ~same_r].mean())
    cov3 = float(C[~same_t & ~same_r].mean())
    m_t, m_r, m = auc.mean(axis=1), auc.mean(axis=0), auc.mean()
    ms_t = float(J * np.sum((m_t - m) ** 2) / (I - 1))
    ms_tr = float(np.sum((auc - m_t[:, None] - m_r[None, :] + m) ** 2) / ((I - 1) * (J - 1)))
    den = ms_tr + J * max(cov2 - cov3, 0.0)
    ddf = float(den**2 / (ms_tr**2 / ((I - 1) * (J - 1))))
    F = ms_t / den
    out = {"MS_T": ms_t, "MS_TR": ms_tr, "Var": var, "Cov1": cov1, "Cov2": cov2, "Cov3": cov3, "denominator": den,
           "F": float(F), "df1": I - 1, "df2": ddf, "p": float(stats.f.sf(F, I - 1, ddf)), "pairs": [], "tests": []}
    se = float(np.sqrt(2 * den / J))
    q = stats.t.ppf(1 - alpha / 2, ddf)
    for a in range(I):
        for b in range(a + 1, I):
            d = float(m_t[a] - m_t[b])
            out["pairs"].append({"pair": (a, b), "estimate": d, "se": se, "df": ddf, "lo": d - q * se,
                                 "hi": d + q * se, "p": float(2 * stats.t.sf(abs(d) / se, ddf))})
    for i in range(I):
        Ci = C[np.ix_(ti == i, ti == i)]
        cov2_i = float((Ci.sum() - np.trace(Ci)) / (J * (J - 1)))
        ms_r = float(np.var(auc[i], ddof=1))
        den_i = ms_r + J * max(cov2_i, 0.0)
        df_i = float(den_i**2 / (ms_r**2 / (J - 1)))
        se_i = float(np.sqrt(den_i / J))
        qi = stats.t.ppf(1 - alpha / 2, df_i)
        out["tests"].append({"estimate": float(m_t[i]), "MS_R": ms_r, "Cov2": cov2_i, "se": se_i, "df": df_i,
                             "lo": float(m_t[i] - qi * se_i), "hi": float(m_t[i] + qi * se_i)})
    return out


def sizing(pilot: dict, effect: float, readers: Sequence[int], cases: Sequence[int], *, alpha: float = 0.05
           ) -> pd.DataFrame:
    """Power of the two-sided single-test OR/Hillis test (e.g. human − model) to detect a true mean difference
    ``effect`` with J readers and N cases, from a pilot analysis (:func:`single_test`: MS(R), Var, Cov2 on its N₀
    cases).  Reader variance σ²_R = max(MS(R) − (Var − Cov2), 0) stays; Var and Cov2 are case-sampling variances
    and scale as N₀/N (the same mix of case types).  With D = σ²_R + Var' + (J − 1)·Cov2' the mean has variance
    D/J, the test Hillis' ddf = D² / (E[MS(R)]²/(J − 1)), E[MS(R)] = σ²_R + Var' − Cov2', and power
    P(|T| > t_{1−α/2, ddf}) for T noncentral t with noncentrality effect/√(D/J) (Hillis, Obuchowski & Berbaum
    2011's approach for one test)."""
    n0 = pilot["cases"]
    s2r = max(pilot["MS_R"] - (pilot["Var"] - pilot["Cov2"]), 0.0)
    rows = []
    for J in readers:
        for N in cases:
            v, c2 = pilot["Var"] * n0 / N, max(pilot["Cov2"], 0.0) * n0 / N
            D = s2r + v + (J - 1) * c2
            ems = s2r + v - c2
            ddf = D**2 / (ems**2 / (J - 1)) if ems > 0 else float("inf")
            q = stats.t.ppf(1 - alpha / 2, ddf)
            nc = effect / np.sqrt(D / J)
            power = float(stats.nct.sf(q, ddf, nc) + stats.nct.cdf(-q, ddf, nc))
            rows.append({"readers": J, "cases": N, "effect": effect, "se": float(np.sqrt(D / J)), "df": float(ddf),
                         "power": power})
    return pd.DataFrame(rows)


def simulate_roe_metz(n_readers: int, n_neg: int, n_pos: int, rng: np.random.Generator, *, mu: float = 1.5,
                      var_r: float = 0.011, var_tr: float = 0.011, var_c: float = 0.3, var_tc: float = 0.3,
                      var_rc: float = 0.2, var_e: float = 0.2, model_shift: float = 0.0, levels: int | None = None
                      ) -> dict:
    """A reader study from the Roe & Metz (1997) model: human readers (one test) and a model (another test, one
    fixed reader) rating the same cases.  Reader j, case k of truth t:

        X_jk = μ·t + R_j^t + TR_j^t + C_k + TC_k + RC_jk + E_jk,   model: X_k = μ_m·t + C_k + TC'_k + E'_k,

    every component normal with mean 0, the reader ones drawn separately for each truth state (so readers differ in
    AUC), the model's error with variance var_rc + var_e (a reader's per-case noise).  The readers' population mean
    AUC is Φ(μ/√(2s² + 2var_r + 2var_tr)), s² = var_c + var_tc + var_rc + var_e, and μ_m is set so that the
    model's AUC Φ(μ_m/√(2s²)) equals it plus ``model_shift``: ``model_shift = 0`` is the null hypothesis of
    human − model.  ``levels``: ratings binned into that many ordinal levels at the pooled quantiles (ties)."""
    N = n_neg + n_pos
    t = np.r_[np.zeros(n_neg), np.ones(n_pos)].astype(bool)
    s2 = var_c + var_tc + var_rc + var_e
    auc_h = float(stats.norm.cdf(mu / np.sqrt(2 * s2 + 2 * var_r + 2 * var_tr)))
    auc_m = auc_h + model_shift
    mu_m = float(stats.norm.ppf(auc_m) * np.sqrt(2 * s2))
    c = rng.normal(0, np.sqrt(var_c), N)
    reader = rng.normal(0, np.sqrt(var_r + var_tr), (n_readers, 2))[:, t.astype(int)]
    X = (mu * t + reader + c + rng.normal(0, np.sqrt(var_tc), N)
         + rng.normal(0, np.sqrt(var_rc + var_e), (n_readers, N)))
    Xm = mu_m * t + c + rng.normal(0, np.sqrt(var_tc), N) + rng.normal(0, np.sqrt(var_rc + var_e), N)
    if levels:
        edges = np.quantile(np.r_[X.ravel(), Xm], np.linspace(0, 1, levels + 1)[1:-1])
        X, Xm = np.digitize(X, edges).astype(float), np.digitize(Xm, edges).astype(float)
    return {"ratings": X, "model": Xm[None, :], "truth": t, "auc_readers": auc_h, "auc_model": auc_m}
