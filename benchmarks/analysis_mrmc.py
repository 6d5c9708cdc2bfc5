"""MRMC (Obuchowski–Rockette, Hillis df; analysis.mrmc) against known truth and against the published example.

1. Van Dyke et al. (1993), the example of MRMCaov / RJafroc / iMRMC (tests/analysis/data/vandyke.csv): our OR
   analysis next to MRMCaov's printed numbers (DeLong and jackknife covariances).
2. Roe & Metz (1997) simulation model (analysis.mrmc.simulate_roe_metz): reader studies where the model's AUC equals
   the readers' population mean AUC.  Printed per design: type-I error of the 5 % test of experts − model (target
   near 0.05), and coverage of the 95 % intervals of the readers' mean AUC and of experts − model (target near
   0.95), with binomial standard errors; then the rejection rate when the model is better by ``--shift``.  With
   ratings binned into levels, the true value used for the mean-AUC coverage is the continuous AUC, which ties
   make the empirical AUC estimate slightly low; the human − model test compares like with like (both binned).

    python benchmarks/analysis_mrmc.py [--sims 1000] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.mrmc import or_hillis, reader_aucs, simulate_roe_metz, single_test

ROOT = Path(__file__).resolve().parents[1]
# MRMCaov (Smith & Hillis), docs/jss/MRMCaov.tex: empirical AUC, VanDyke, random readers and cases
PUBLISHED = {
    "delong": {"F": 4.484854, "df2": 15.06611, "p": 0.05123303, "diff_lo": -0.0878671960, "diff_hi": 0.0002665519,
               "t1_lo": 0.8253461, "t1_hi": 0.9687280, "t2_lo": 0.8942155, "t2_hi": 0.9874592},
    "jackknife": {"Var": 0.0008022883, "Cov1": 0.0003466137, "Cov2": 0.0003440748, "Cov3": 0.0002390284},
}
DESIGNS = [  # readers, negatives, positives, rating levels (None: continuous), separation μ
    (5, 50, 50, None, 1.5), (10, 150, 150, 8, 1.5), (10, 150, 150, 8, 0.75), (4, 40, 40, 5, 2.0)]


def van_dyke() -> None:
    vd = pd.read_csv(ROOT / "tests" / "analysis" / "data" / "vandyke.csv", comment="#")
    truth = vd[(vd.reader == 1) & (vd.treatment == 1)].sort_values("case").truth.to_numpy()
    R = np.stack([vd[(vd.treatment == i) & (vd.reader == j)].sort_values("case").rating.to_numpy()
                  for i in (1, 2) for j in range(1, 6)])
    r = reader_aucs(R, truth)
    print("Van Dyke (5 readers × 114 cases, 2 treatments): ours vs MRMCaov's published output")
    for cov, pub in PUBLISHED.items():
        o = or_hillis(r.auc.reshape(2, 5), r.cov(cov))
        ours = {"F": o["F"], "df2": o["df2"], "p": o["p"], "diff_lo": o["pairs"][0]["lo"], "diff_hi": o["pairs"][0]["hi"],
                "t1_lo": o["tests"][0]["lo"], "t1_hi": o["tests"][0]["hi"], "t2_lo": o["tests"][1]["lo"],
                "t2_hi": o["tests"][1]["hi"], "Var": o["Var"], "Cov1": o["Cov1"], "Cov2": o["Cov2"], "Cov3": o["Cov3"]}
        for k, v in pub.items():
            print(f"  {cov:9s} {k:8s} ours {ours[k]: .7f}   published {v: .7f}   |Δ| {abs(ours[k] - v):.1e}")
        if cov == "jackknife":
            print(f"  jackknife F {o['F']:.4f}, ddf {o['df2']:.2f}, p {o['p']:.4f} (Hillis et al.'s jackknife example: "
                  "F 4.46, ddf 15.26, p 0.0517)")


def roe_metz(sims: int, seed: int, shift: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for J, n0, n1, levels, mu in DESIGNS:
        rej = cov_h = cov_d = rej_alt = 0
        for _ in range(sims):
            s = simulate_roe_metz(J, n0, n1, rng, mu=mu, levels=levels)
            hum, mod = reader_aucs(s["ratings"], s["truth"]), reader_aucs(s["model"], s["truth"])
            d = single_test(hum - mod)
            h = single_test(hum)
            rej += d["p"] < 0.05
            cov_d += d["lo"] <= 0.0 <= d["hi"]
            cov_h += h["lo"] <= s["auc_readers"] <= h["hi"]
            a = simulate_roe_metz(J, n0, n1, rng, mu=mu, levels=levels, model_shift=shift)
            rej_alt += single_test(reader_aucs(a["ratings"], a["truth"]) - reader_aucs(a["model"], a["truth"]))["p"] < 0.05
        se = lambda p: np.sqrt(p * (1 - p) / sims)  # noqa: E731
        rows.append({"readers": J, "cases": f"{n0}+{n1}", "levels": levels or "continuous", "mu": mu,
                     "AUC": round(s["auc_readers"], 3), "sims": sims, "type_I_error": rej / sims,
                     "se_typeI": round(se(rej / sims), 4), "coverage_mean_auc": cov_h / sims,
                     "coverage_difference": cov_d / sims, "se_cov": round(se(0.95), 4),
                     f"power_shift_{shift:g}": rej_alt / sims})
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sims", type=int, default=1000, help="simulated reader studies per design (≥ 200)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shift", type=float, default=0.05, help="model − readers' AUC for the power column")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    van_dyke()
    print(f"\nRoe & Metz model, H0 (model AUC = readers' mean AUC); {a.sims} reader studies per design:")
    print(roe_metz(a.sims, a.seed, a.shift).to_string(index=False))
    print(f"\nwall {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
