"""Copy a calibrated copy's anomaly reference of ANOMALY into the bundled base record (temperature untouched)."""
import json, sys
src, anomaly = sys.argv[1], sys.argv[2]
dst = "data/models/cpu-32/cytomodel.json"
fit = [f for f in json.load(open(src))["novelty_fits"] if f["config"]["anomaly"] == anomaly][-1]
fit["texture_stage"]["cascade"] = "data/models/cascade-128"
fit["fitted_on"] = "a copy of data/models/cascade-128 (cytomodel calibrate --split val); this fit copied in, the temperature not"
meta = json.load(open(dst))
meta["novelty_fits"] = [f for f in meta["novelty_fits"] if f["config"]["anomaly"] != anomaly] + [fit]
open(dst, "w").write(json.dumps(meta, indent=2) + "\n")
print([f["config"]["anomaly"] for f in meta["novelty_fits"]])
