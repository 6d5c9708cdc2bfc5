"""(From the repository root.) AUROC per ig subtype (PMY / MY / MMY) of the chosen scores on val and test, with the
held-out-ig cascade's stored texture errors and its baseline (paths of /work/runs; models.json says how they were made)."""
import sys, numpy as np, pandas as pd
from pathlib import Path
sys.path.insert(0,'benchmarks'); sys.path.insert(0,'.')
from texture_scores import load_errors, library_candidates, auroc_sens
from cytomodel.data import framed_arrays
from cytomodel.evaluate import load_baseline
z={s:load_errors(Path("/work/runs/holdout-sr/texture-ig"),s) for s in ("val","test")}
tabs={s:pd.read_csv(f"/work/runs/holdout/CG_ig_{s}.csv") for s in z}
tabs={s:t[t.pred_class.notna()].reset_index(drop=True).iloc[:len(z[s]["errors"])] for s,t in tabs.items()}
clf=load_baseline("/work/runs/holdout-sr/baseline-ig"); base={}
for s in z:
    a,keep=framed_arrays(clf.intake().frame(list(tabs[s]["image"])),clf.resolution); p=np.full(len(tabs[s]),np.nan); p[keep]=1-clf.predict_proba(a).max(1); base[s]=p
classes=[str(c) for c in z["val"]["classes"]]; tr=z["val"]["label"]!="ig"
c=library_candidates(z,tabs,{"t ≥ 200":[200,350,500,650,800]},classes,tr,base)
c["baseline"]=base
for n,sc in c.items():
    out=[]
    for s in ("val","test"):
        lab=z[s]["label"]; sub=z[s]["subtype"]; neg=sc[s][lab!="ig"]
        out.append(s+" "+" ".join(f"{st} {auroc_sens(sc[s][(lab=='ig')&(sub==st)],neg)[0]:.3f}" for st in ("PMY","MY","MMY")))
    print(f"{n[:70]:70s}", " | ".join(out))
