"""The texture evidence of the super-resolution stage (cytomodel.classify.texture), on a constructed stage whose
errors are known: it returns the true noise of the residual plus scales[label] times a shifted copy of it."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from diffusers import DDPMScheduler

from cytomodel.classify.texture import texture_errors, texture_gain
from cytomodel.models.superres import SuperResModel

from cli_warnings import run_cli
from oracle_models import OracleUNet


class OracleResidualUNet(OracleUNet):
    """The residual of a flat image is 0, so the noisy residual (the first 3 input channels) is √(1−ᾱ)·ε."""

    def forward(self, x, t, class_labels):
        return super().forward(x[:, :3], t, class_labels)


def oracle_superres(scales, null_scale):
    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="epsilon")
    v = 128 / 255.0
    unet = OracleResidualUNet(sched, list(scales) + [null_scale])
    return SuperResModel(unet, sched, [f"c{i}" for i in range(len(scales))], 16, [v] * 3, [0.2] * 3,
                         metadata={"config": {"crop_size": 8}}, low_resolution=4)


def flat(n):
    return np.full((n, 16, 16, 3), 128, np.uint8)


def test_errors_follow_the_class_that_explains_the_detail():
    sr = oracle_superres(scales=[0.0, 0.6], null_scale=0.3)
    e = texture_errors(sr, flat(3), [0, 1, 0], draws=2, timesteps=(100, 500), precision="fp32")
    assert e.shape == (3, 2, 2, 2)
    # class 0 explains the residual exactly; class 1 (0.6) worse than no class (0.3)
    assert np.all(e[[0, 2], ..., 0] < 1e-6)
    ratio = e[1, ..., 0] / e[1, ..., 1]
    assert np.allclose(ratio, (0.6 / 0.3) ** 2, rtol=1e-4)
    gain = texture_gain(e)
    assert gain[0] < -5 and gain[1] == pytest.approx(np.log(4.0), rel=1e-4)
    assert texture_gain(e, [1])[1] == pytest.approx(np.log(4.0), rel=1e-4)


def test_seeded_and_paired():
    sr = oracle_superres(scales=[0.2, 0.6], null_scale=0.3)
    a = texture_errors(sr, flat(2), [1, 1], seed=3, precision="fp32")
    b = texture_errors(sr, flat(2), [1, 1], seed=3, precision="fp32")
    c = texture_errors(sr, flat(2), [1, 1], seed=4, precision="fp32")
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    # both classes see the same draw: their ratio is exact although each error varies with the noise
    assert np.allclose(a[..., 0] / a[..., 1], 4.0, rtol=1e-4) and a[..., 1].std() > 0


def test_bad_inputs_are_named():
    sr = oracle_superres(scales=[0.0, 0.6], null_scale=0.3)
    with pytest.raises(ValueError, match="16, 16, 3"):
        texture_errors(sr, np.zeros((2, 8, 8, 3), np.uint8), [0, 0])
    with pytest.raises(ValueError, match="predicted classes"):
        texture_errors(sr, flat(2), [0])
    with pytest.raises(ValueError, match="timesteps"):
        texture_errors(sr, flat(1), [0], timesteps=(1000,))
    with pytest.raises(ValueError, match="crop"):
        texture_errors(sr, flat(1), [0], crop=32)
    with pytest.raises(ValueError, match="N, T, D, 2"):
        texture_gain(np.ones((2, 3, 2)))


def test_per_image_seeds_make_an_images_errors_independent_of_its_batch():
    sr = oracle_superres(scales=[0.2, 0.6], null_scale=0.3)
    imgs = flat(3)
    imgs[1] += 3
    all3 = texture_errors(sr, imgs, [1, 0, 1], image_seeds=[11, 12, 13], precision="fp32")
    alone = texture_errors(sr, imgs[1:2], [0], image_seeds=[12], precision="fp32")
    np.testing.assert_array_equal(all3[1], alone[0])
    assert not np.array_equal(all3[0], all3[2])      # other seeds, other draws
    with pytest.raises(ValueError, match="image seeds"):
        texture_errors(sr, imgs, [0, 0, 0], image_seeds=[1])


def test_encoding_is_read_from_the_training_files_and_reproduced(tmp_path):
    from PIL import Image

    from cytomodel.data import encode_like, measure_encoding

    rng = np.random.default_rng(0)
    cells = rng.integers(0, 256, (4, 24, 24, 3), dtype=np.uint8)
    paths = []
    for i, c in enumerate(cells):
        paths.append(tmp_path / f"c{i}.jpg")
        Image.fromarray(c).save(paths[-1], "JPEG", quality=40)
    Image.fromarray(cells[0]).save(tmp_path / "odd.png")
    enc = measure_encoding(paths + [tmp_path / "odd.png"])
    assert enc["format"] == "JPEG" and enc["share"] == 0.8 and enc["files_read"] == 5
    # a cell saved the way the files were is decoded to the very pixels of the training files
    again = encode_like(cells, enc)
    for i, p in enumerate(paths):
        np.testing.assert_array_equal(again[i], np.asarray(Image.open(p).convert("RGB")))
    assert np.abs(again.astype(int) - cells).mean() > 1          # and it is not the input
    assert encode_like(cells, None) is cells and encode_like(cells, {"format": "lossless"}) is cells
    assert measure_encoding([tmp_path / "odd.png"])["format"] == "lossless"
    with pytest.raises(ValueError, match="no training files"):
        measure_encoding([])


def test_classify_and_calibrate_with_the_texture_scores(tiny_cascade_dir, tiny_model_dir, tiny_dataset, tmp_path,
                                                        capsys):
    from cytomodel.classify.novelty import standardise
    from cytomodel.cli import main

    model = tmp_path / "cascade"
    shutil.copytree(tiny_cascade_dir, model)
    opts = ["--trials", "4", "--min-trials", "2", "--precision", "fp32", "--anomaly", "class-gain+texture"]
    out = tmp_path / "val.csv"
    caught = run_cli(["classify", "--model", str(model), "--data", str(tiny_dataset), "--out", str(out)] + opts)
    # the tiny stages were trained on PNGs with no framing record: said, not guessed
    assert any("how its training files were saved" in m for m in caught)
    val = pd.read_csv(out)
    assert {"novelty_raw", "texture_raw", "anomaly_score"} <= set(val.columns) and val.texture_raw.notna().all()
    np.testing.assert_allclose(val.anomaly_score, (val.novelty_raw + val.texture_raw) / 2)   # raw: no reference yet
    assert main(["calibrate", "--model", str(model), "--data", str(tiny_dataset), "--from-results", str(out),
                 "--rescored-out", str(tmp_path / "val_T.csv")] + opts) == 0
    fit, = json.loads((model / "base" / "cytomodel.json").read_text())["novelty_fits"]
    assert set(fit["reference"]["parts"]) == {"novelty_raw", "texture_raw"}
    again = tmp_path / "again.csv"
    assert main(["classify", "--model", str(model), "--data", str(tiny_dataset), "--out", str(again)] + opts) == 0
    new, rescored = pd.read_csv(again), pd.read_csv(tmp_path / "val_T.csv")
    np.testing.assert_allclose(new.texture_raw, val.texture_raw)       # per-image seeds: the same draws again
    parts = fit["reference"]["parts"]
    want = np.mean([standardise(new[c].to_numpy(), list(new.pred_class), parts[c]) for c in parts], axis=0)
    np.testing.assert_allclose(new.anomaly_score, want)
    np.testing.assert_allclose(rescored.anomaly_score, new.anomaly_score, rtol=1e-9)
    # the reference belongs to this cascade's 128-px stage: under another stage (another weights hash) it is not used
    record = json.loads((model / "cytomodel.json").read_text())
    assert fit["texture_stage"]["superres_weights_sha256"] == record["stages"]["superres"]["weights_sha256"]
    record["stages"]["superres"]["weights_sha256"] = "0" * 64
    (model / "cytomodel.json").write_text(json.dumps(record))
    other = tmp_path / "other.csv"
    caught = run_cli(["classify", "--model", str(model), "--data", str(tiny_dataset), "--out", str(other)] + opts)
    assert any("no validation reference" in m for m in caught)
    np.testing.assert_allclose(pd.read_csv(other).anomaly_score, (new.novelty_raw + new.texture_raw) / 2)
    # a single stage cannot read texture: a clear error, before any work
    capsys.readouterr()
    assert main(["classify", "--model", str(tiny_model_dir), "--data", str(tiny_dataset), "--out",
                 str(tmp_path / "x.csv"), "--anomaly", "texture"]) != 0
    assert "a cascade's 128-px stage" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()
