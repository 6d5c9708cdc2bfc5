"""Check the fast power approximation against full Bayesian fits of the SDT model (same simulated studies).

For a few designs, prints P(equivalent) / P(different) from the t-interval approximation and from the
posterior of the population accuracy, and the agreement of the two decisions study by study.

    nice -n 10 python benchmarks/analysis_power.py [--sims 20] [--d-prime 0.0]
"""

from __future__ import annotations

import argparse
import sys
import warnings

import numpy as np
import pandas as pd

warnings.filterwarnings("ignore")

from analysis.fitting import SamplerConfig, set_quiet  # noqa: E402
from analysis.power import _approx_interval, _bayes_interval, decide, simulate_auth_correct  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sims", type=int, default=20)
    ap.add_argument("--d-prime", type=float, default=0.0)
    ap.add_argument("--rope", type=float, default=0.05)
    ap.add_argument("--designs", default="10x300,20x300")
    a = ap.parse_args(argv)
    set_quiet(True)
    rng = np.random.default_rng(0)
    cfg = SamplerConfig(draws=500, tune=500, posterior_predictive=False)
    rows = []
    for des in a.designs.split(","):
        R, T = map(int, des.split("x"))
        for i in range(a.sims):
            sim = simulate_auth_correct(R, T, a.d_prime, 0.0, 0.3, 0.2, 0.3, rng)
            lo_a, hi_a = _approx_interval(sim["correct"], 0.95)
            lo_b, hi_b = _bayes_interval(sim, 0.95, cfg, seed=i)
            rows.append({"design": des, "approx": decide(lo_a, hi_a, a.rope), "bayes": decide(lo_b, hi_b, a.rope),
                         "width_approx": hi_a - lo_a, "width_bayes": hi_b - lo_b})
            print(f"{des} sim {i}: approx [{lo_a:.3f}, {hi_a:.3f}]  bayes [{lo_b:.3f}, {hi_b:.3f}]",
                  file=sys.stderr, flush=True)
    t = pd.DataFrame(rows)
    out = t.groupby("design").agg(
        p_equiv_approx=("approx", lambda s: np.mean(s == "equivalent")),
        p_equiv_bayes=("bayes", lambda s: np.mean(s == "equivalent")),
        p_diff_approx=("approx", lambda s: np.mean(s == "different")),
        p_diff_bayes=("bayes", lambda s: np.mean(s == "different")),
        median_width_approx=("width_approx", "median"), median_width_bayes=("width_bayes", "median"))
    out["decision_agreement"] = t.assign(same=t.approx == t.bayes).groupby("design")["same"].mean()
    print(f"d′ = {a.d_prime}, ROPE ±{a.rope}, {a.sims} simulated studies per design")
    print(out.round(3).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
