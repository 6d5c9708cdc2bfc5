"""Probe (issue 23): optical density against each image's own background, not the set's median background.

The product (`cytomodel.data.stain`) takes OD = −log(I / I_background) with one background per set (the median of
its images' brightest tenth). Where a lab's lamp or exposure varies between images, an image lit darker than the
set's median has OD > 0 in its own background: after the map and the re-lighting its background — and the flat
margin `framing._window` fills beyond a close crop's border — is tinted, not the training images' background, and a
square frame shows round the cell (BCCD: per-image backgrounds 195–212 grey levels, 5–95 %). Here both sides measure
and map OD against each image's own background (``--variant image``); the set's median background still decides
`auto` and is still recorded. The training images' statistics for that variant are measured the same way on every
6th PBC train image (framed at 128 px by the product's intake), cached in OUT/train-stats-image.json; the product's
variant (``--variant set``) uses the bundled records as they are.

    python docs/results/stain-per-image-background/probe.py --variant image --out RUN/image -- \
        --diffusion lab=data/models/cpu-32-lab --baseline bundled=data/models/baseline-32 \
        --datasets bccd tecom pbc_val pbc_mini --configs framed+auto framed+od
Everything after ``--`` goes to benchmarks/cross_lab.py as it is.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
import cross_lab  # noqa: E402
from cytomodel.data import framing, intake, stain  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--variant", choices=["set", "image"], required=True)
p.add_argument("--out", required=True)
p.add_argument("--every", type=int, default=6, help="every n-th PBC train image measures the training statistics")
a, rest = p.parse_known_args()
rest = [r for r in rest if r != "--"]
out = Path(a.out)
out.mkdir(parents=True, exist_ok=True)

if a.variant == "image":
    measure_set = stain.measure_stain

    def channel_od_own(image, background):  # background ignored: each image's own
        return _channel_od(image, stain.image_background(image))

    _channel_od = stain.channel_od
    stain.channel_od = channel_od_own  # measure_stain and normalise_stain both call it by module name

    cache = out / "train-stats-image.json"
    if not cache.is_file():
        from cytomodel.data import framed_arrays, scan_dataset
        from cytomodel.models.loading import load_model

        model = load_model(REPO / "data/models/cpu-32-lab")
        recs = scan_dataset(REPO.parent / "shared" / "data" / "pbc", split="train")[::a.every]
        frame128 = intake.Intake.for_record(model.metadata, 128, stain="none")
        arr, _ = framed_arrays(frame128.frame([r.path for r in recs]), 128)
        stats = measure_set(list(arr))
        # the recorded background stays the set's (it decides `auto` and is what the map re-lights with)
        cache.write_text(json.dumps({"n_images": len(arr), "stain": stats.to_dict()}, indent=1))
    train = stain.StainStatistics.from_dict(json.loads(cache.read_text())["stain"])
    framing.FramingContract.stain_statistics = property(lambda self: train if self.stain else None)

sys.exit(cross_lab.main(["--out", str(out), *rest]))
