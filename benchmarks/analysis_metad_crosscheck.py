"""Single-rater meta-d′: Bayesian (PyMC, non-hierarchical) vs our SciPy MLE vs metadpy's MLE, same counts.

For several simulated raters (known d′, c, M-ratio) prints d′ and meta-d′ from each method, the absolute
differences, and whether the truth lies in the Bayesian 90 % interval.  Our MLE runs twice: with M&L's
meta-c1 = c1·meta-d′/d′ (compared with metadpy, which fits that) and with HMeta-d's meta-c1 = c1 (compared with
the Bayesian model, which uses that; the simulator generates it).

    nice -n 10 python benchmarks/analysis_metad_crosscheck.py [--raters 8] [--trials 600]
"""

from __future__ import annotations

import argparse
import sys
import warnings

import numpy as np
import pandas as pd

warnings.filterwarnings("ignore")

from analysis.fitting import SamplerConfig, draws, fit_model, set_quiet  # noqa: E402
from analysis.mle import fit_metad_mle  # noqa: E402
from analysis.models import build_metad_model  # noqa: E402
from analysis.simulate import RaterProfile, simulate_single_rater_auth_counts  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--raters", type=int, default=8)
    ap.add_argument("--trials", type=int, default=600)
    ap.add_argument("--draws", type=int, default=1000)
    a = ap.parse_args(argv)
    set_quiet(True)
    try:
        from metadpy.mle import metad as metadpy_metad
    except Exception as e:  # pragma: no cover
        print(f"metadpy unavailable ({e}); comparing with our own MLE only")
        metadpy_metad = None
    rng = np.random.default_rng(0)
    rows = []
    cfg = SamplerConfig(draws=a.draws, tune=1000, chains=2, posterior_predictive=False)
    for i in range(a.raters):
        prof = RaterProfile(d_prime=float(rng.uniform(0.8, 2.2)), criterion=float(rng.uniform(-0.4, 0.4)),
                            meta_ratio=float(rng.uniform(0.4, 1.2)), lapse=0.0)
        cS1, cS2 = simulate_single_rater_auth_counts(prof, a.trials, seed=100 + i)
        mle = fit_metad_mle(cS1[0], cS2[0])  # M&L's meta-c1 = c1·meta-d′/d′, as metadpy
        mle_fixed = fit_metad_mle(cS1[0], cS2[0], meta_c1="fixed")  # HMeta-d's meta-c1 = c1, as the Bayesian model
        row = {"rater": i, "true_d": prof.d_prime, "true_meta_d": prof.d_prime * prof.meta_ratio,
               "mle_d": mle["d"], "mle_meta_d": mle["meta_d"], "mle_fixed_meta_d": mle_fixed["meta_d"]}
        if metadpy_metad is not None:
            r = metadpy_metad(nR_S1=cS1[0], nR_S2=cS2[0], nRatings=prof.confidence_levels, padding=False)
            row["metadpy_meta_d"] = float(r["meta_d"].iloc[0])
            row["metadpy_d"] = float(r["dprime"].iloc[0])
        m, _ = build_metad_model(cS1, cS2, ["r"], prof.confidence_levels, pooled=[False])
        f = fit_model("metad_single", m, cfg, seed_offset=i)
        md = draws(f.idata, "meta_d")[:, 0]
        row.update({"bayes_meta_d_median": float(np.median(md)), "bayes_meta_d_sd": float(md.std()),
                    "bayes_d_median": float(np.median(draws(f.idata, "d")[:, 0])),
                    "truth_in_bayes_90": bool(np.quantile(md, 0.05) <= row["true_meta_d"] <= np.quantile(md, 0.95)),
                    "diagnostics_ok": f.diagnostics.ok})
        rows.append(row)
        print(f"rater {i}: done", file=sys.stderr, flush=True)
    t = pd.DataFrame(rows)
    pd.set_option("display.width", 200)
    print(t.round(4).to_string(index=False))
    print()
    print(f"|our MLE − metadpy MLE| meta-d′: max {np.max(np.abs(t.mle_meta_d - t.metadpy_meta_d)):.2e}"
          if "metadpy_meta_d" in t else "metadpy not compared")
    dif = np.abs(t.bayes_meta_d_median - t.mle_fixed_meta_d)
    print(f"|Bayes median − MLE (meta-c1 = c1)| meta-d′: mean {dif.mean():.3f}, max {dif.max():.3f}; "
          f"in posterior SDs: max {np.max(dif / t.bayes_meta_d_sd):.2f}")
    print(f"|Bayes median − MLE| d′: max {np.max(np.abs(t.bayes_d_median - t.mle_d)):.3f}")
    print(f"truth inside Bayesian 90 % interval: {t.truth_in_bayes_90.mean():.2f} of {len(t)} raters; "
          f"fits passing diagnostics: {int(t.diagnostics_ok.sum())}/{len(t)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
