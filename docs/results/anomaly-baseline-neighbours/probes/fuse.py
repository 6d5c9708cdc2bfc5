"""Probe (issue 25): how the four standardised parts of +baseline are fused — mean (the product), max, mean of the
two largest, root-mean-square of the positive parts. Val only; references refitted on val's trained cells."""
import sys, numpy as np, pandas as pd
sys.path.insert(0, "/work/main"); sys.path.insert(0, "/work/main/benchmarks")
from anomaly_scores import _auroc, _sens_at_spec
from cytomodel.classify.novelty import anomaly_of, score_parts, fit_score_reference
held, tab = sys.argv[1:3]
t = pd.read_csv(tab); t = t[t.pred_class.notna()].reset_index(drop=True)
y = (t.label == held).to_numpy(); pred = t.pred_class.to_numpy(); classes = sorted(set(t.label) - {held})
ref = fit_score_reference(t[t.label != held], classes, "class-gain+texture+baseline")
Z = np.stack([anomaly_of(score_parts(t, {"parts": {c: r}}), pred, {"parts": {c: r}}) for c, r in ref["parts"].items()], 1)
assert np.allclose(Z.mean(1), anomaly_of(score_parts(t, ref), pred, ref))
srt = np.sort(Z, 1)
for name, s in {"mean (product)": Z.mean(1), "max": Z.max(1), "mean of two largest": srt[:, -2:].mean(1),
                "positive RMS": np.sqrt((np.clip(Z, 0, None) ** 2).mean(1)), "mean of three largest": srt[:, -3:].mean(1)}.items():
    print(f"{held:12s} {name:24s} {_auroc(s[y], s[~y]):.3f} {_sens_at_spec(s[y], s[~y]):.3f}")
