"""Where a fit diverges: one gate study's fit run once (no re-run), its divergent draws set against the rest.

For each sampler seed, the parameters whose mean over the divergent draws lies more than ``--z`` posterior SDs
from their mean over the other draws — the region the sampler cannot cross (e.g. the tail of a group SD).  The
studies are benchmarks/analysis_gate.py's (same scenarios and seeds).

    python benchmarks/analysis_divergences.py --study 4 --seeds 0 1 2 [--fit metad_authenticity]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from analysis_gate import ORDER, SCENARIOS  # noqa: E402

from analysis.config import AnalysisConfig  # noqa: E402
from analysis.fitting import set_quiet  # noqa: E402
from analysis.pipeline import run_analysis  # noqa: E402
from analysis.simulate import simulate_study  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", type=int, required=True, help="gate study index (scenario = index mod 5)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="sampler seeds")
    ap.add_argument("--fit", default="metad_authenticity", help="the report's fit to look at")
    ap.add_argument("--analyses", default="metacognition", help="the analyses that contain that fit")
    ap.add_argument("--raters", type=int, default=10)
    ap.add_argument("--trials", type=int, default=300)
    ap.add_argument("--z", type=float, default=1.0, help="report parameters shifted by more than this many SDs")
    a = ap.parse_args(argv)
    set_quiet(True)
    scen = ORDER[a.study % len(ORDER)]
    df = simulate_study(a.raters, a.trials, seed=100 + a.study, **SCENARIOS[scen])
    for seed in a.seeds:
        cfg = AnalysisConfig(analyses=tuple(a.analyses.split(",")))
        cfg = dataclasses.replace(cfg, sampler=dataclasses.replace(cfg.sampler, max_reruns=0, seed=seed))
        fit = run_analysis(df, cfg).fits[a.fit]
        post, div = fit.idata.posterior, fit.idata.sample_stats["diverging"].values.astype(bool)
        print(f"study {a.study} ({scen}), seed {seed}: {int(div.sum())} divergences (per chain {div.sum(1).tolist()}), "
              f"R-hat max {fit.diagnostics.rhat_max:.3f}", flush=True)
        if not div.any():
            continue
        for name in post.data_vars:
            x = post[name].values
            x = x.reshape(x.shape[0], x.shape[1], -1)
            for k in range(x.shape[2]):
                at, rest = x[..., k][div], x[..., k][~div]
                if not np.isfinite(rest).all() or rest.std() == 0:
                    continue
                z = (at.mean() - rest.mean()) / rest.std()
                if abs(z) > a.z:
                    print(f"  {name}[{k}]: {at.mean():.3f} at the divergences vs {rest.mean():.3f} ± {rest.std():.3f} "
                          f"({z:+.1f} SD)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
