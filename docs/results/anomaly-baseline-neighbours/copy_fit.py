"""Copy the ANOMALY reference a calibrated copy of a cascade holds into a bundled base record (its temperature and
every other fit untouched): python copy_fit.py COPY/base/cytomodel.json BUNDLED/cytomodel.json ANOMALY CASCADE_NAME"""
import json
import sys

src, dst, anomaly, cascade = sys.argv[1:5]
fit = [f for f in json.load(open(src))["novelty_fits"] if f["config"]["anomaly"] == anomaly][-1]
fit["texture_stage"]["cascade"] = cascade
fit["fitted_on"] = f"a copy of {cascade} (cytomodel calibrate --split val --from-results); this fit copied in, the " \
                   "temperature not"
meta = json.load(open(dst))
meta["novelty_fits"] = [f for f in meta["novelty_fits"] if f["config"]["anomaly"] != anomaly] + [fit]
open(dst, "w").write(json.dumps(meta, indent=2) + "\n")
print(dst, [f["config"]["anomaly"] for f in meta["novelty_fits"]])
