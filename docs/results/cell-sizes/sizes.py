"""Per class, the white cell's diameter (and the red cells', where found) as a share of the image width, measured by the
product's own cell finder (cytomodel.data.framing.measure_cell) on the files as they are: PBC val (40 per class, the
training copies' framing), tecom_wbc and bccd_wbc.   python sizes.py OUT.csv"""
import sys, glob, os, numpy as np, pandas as pd
from PIL import Image
from cytomodel.data.framing import measure_cell
rows=[]
def go(ds, paths):
    for p, lab in paths:
        img=Image.open(p).convert('RGB'); m=measure_cell(img)
        w=img.size[0]
        rows.append(dict(ds=ds,label=lab,status=m.status,cell=(m.cell_diameter or np.nan)/w,rbc=(m.rbc_diameter or np.nan)/w,nrbc=m.n_rbc))
man=pd.read_csv('/work/shared/data/pbc/manifest.csv'); v=man[man.split=='val'].groupby('label').head(40)
go('pbc_val',[('/work/shared/data/pbc/'+r.path, r.label) for r in v.itertuples()])
for ds in ['tecom_wbc','bccd_wbc']:
    ps=[(p,p.split('/')[-2]) for p in sorted(glob.glob(f'/work/shared/data/{ds}/*/*'))]
    go(ds,ps)
d=pd.DataFrame(rows)
print(d.groupby(['ds','label'])[['cell','rbc','nrbc']].median().round(3))
print(d.groupby('ds').status.value_counts())
d.to_csv(sys.argv[1] if len(sys.argv) > 1 else "sizes.csv", index=False)
