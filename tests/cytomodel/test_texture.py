"""The texture evidence of the super-resolution stage (cytomodel.classify.texture), on a constructed stage whose
errors are known: it returns the true noise of the residual plus scales[label] times a shifted copy of it."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from diffusers import DDPMScheduler

from cytomodel.classify.novelty import (anomaly_of, fit_profile_reference, fit_reference, part_values, profile_columns,
                                        profile_distance, standardise)
from cytomodel.classify.texture import TIMESTEPS, null_levels, texture_errors, texture_gain, texture_levels
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
    np.testing.assert_allclose(texture_levels(e).mean(axis=1), gain)
    assert texture_levels(e).shape == (3, 2) == null_levels(e).shape
    # the null error does not depend on the class called: rows 0 and 1 differ only in their class (same image, and
    # the draws are per batch position, so compare each with itself called under the other class)
    swapped = texture_errors(sr, flat(3), [1, 0, 0], draws=2, timesteps=(100, 500), precision="fp32")
    np.testing.assert_allclose(null_levels(swapped), null_levels(e), rtol=1e-5)
    assert not np.allclose(texture_levels(swapped), texture_levels(e))
    # gain + log null error = log class error, per level (averaged over draws)
    np.testing.assert_allclose((texture_levels(e) + null_levels(e))[1], np.log(e[1, ..., 0]).mean(axis=1), rtol=1e-6)


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


def copy_and_options(tiny_cascade_dir, tmp_path, anomaly: str):
    """A copy of the tiny cascade (calibrate writes into it) and fast classifier options for ``anomaly``."""
    model = tmp_path / "cascade"
    shutil.copytree(tiny_cascade_dir, model)
    return model, ["--trials", "4", "--min-trials", "2", "--precision", "fp32", "--anomaly", anomaly]


def expected_anomaly(table: pd.DataFrame, parts: dict) -> np.ndarray:
    """The mean of each part's robust z from a fitted reference, computed here rather than by ``anomaly_of``."""
    pred = list(table.pred_class)
    z = []
    for name, ref in parts.items():
        if name == "texture_profile":
            z.append(standardise(profile_distance(table[ref["columns"]].to_numpy(), pred, ref), pred, ref["distance"]))
        else:
            z.append(standardise(table[name].to_numpy(), pred, ref))
    return np.mean(z, axis=0)


def test_classify_and_calibrate_with_the_texture_scores(tiny_cascade_dir, tiny_model_dir, tiny_dataset, tmp_path,
                                                        capsys):
    from cytomodel.cli import main

    model, opts = copy_and_options(tiny_cascade_dir, tmp_path, "class-gain+texture")
    out = tmp_path / "val.csv"
    caught = run_cli(["classify", "--model", str(model), "--data", str(tiny_dataset), "--out", str(out)] + opts)
    # the tiny stages were trained on PNGs with no framing record: said, not guessed
    assert any("how its training files were saved" in m for m in caught)
    val = pd.read_csv(out)
    levels = [f"texture_t{t}" for t in TIMESTEPS]
    nulls = [f"texture_null_t{t}" for t in TIMESTEPS]
    assert {"novelty_raw", "texture_raw", "anomaly_score", *levels, *nulls} <= set(val.columns)
    assert val[nulls].notna().all().all() and (val[nulls].std() > 0).all()
    assert val.texture_raw.notna().all()
    np.testing.assert_allclose(val.texture_raw, val[levels].mean(axis=1))       # the gain: the levels' mean
    # raw, with no reference yet: the scalar parts' mean (the profile is a distance from a reference)
    np.testing.assert_allclose(val.anomaly_score, (val.novelty_raw + val.texture_raw) / 2)
    caught = run_cli(["calibrate", "--model", str(model), "--data", str(tiny_dataset), "--from-results", str(out),
                      "--rescored-out", str(tmp_path / "val_T.csv")] + opts)
    fit, = json.loads((model / "base" / "cytomodel.json").read_text())["novelty_fits"]
    assert set(fit["reference"]["parts"]) == {"novelty_raw", "texture_raw", "texture_profile"}
    # 36 cells are too few for a 10-column covariance (40): the gains alone, and said
    assert any("fitted on the gains alone" in m for m in caught)
    assert fit["reference"]["parts"]["texture_profile"]["columns"] == levels
    again = tmp_path / "again.csv"
    assert main(["classify", "--model", str(model), "--data", str(tiny_dataset), "--out", str(again)] + opts) == 0
    new, rescored = pd.read_csv(again), pd.read_csv(tmp_path / "val_T.csv")
    np.testing.assert_allclose(new.texture_raw, val.texture_raw)       # per-image seeds: the same draws again
    np.testing.assert_allclose(new.anomaly_score, expected_anomaly(new, fit["reference"]["parts"]))
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


def profiles(n, rng, cov, loc):
    return rng.multivariate_normal(loc, cov, size=n)


def test_the_texture_profile_is_the_mahalanobis_distance_from_the_cells_class():
    """Levels that move together (a common scale of gains) with small independent deviations: a cell whose gains
    break that pattern — one level up, the next down — has a typical mean gain yet a large profile distance."""
    rng = np.random.default_rng(0)
    common = np.full((3, 3), 0.9) + np.eye(3) * 0.1                    # strongly correlated levels
    a = profiles(400, rng, common * 1e-4, [-0.01, -0.02, -0.01])
    b = profiles(300, rng, common * 4e-4, [0.0, -0.005, 0.0])
    x = np.vstack([a, b])
    pred = np.array(["a"] * len(a) + ["b"] * len(b), dtype=object)
    cols = ["texture_t200", "texture_t500", "texture_t800"]
    ref = fit_profile_reference(x, pred, ["a", "b"], cols)
    assert ref["columns"] == cols
    np.testing.assert_allclose(ref["per_class"]["a"]["loc"], [-0.01, -0.02, -0.01], atol=2e-3)
    # the distance is the analytic Mahalanobis distance under the fitted mean and covariance
    d = profile_distance(x, list(pred), ref)
    want = np.sqrt(np.einsum("ij,jk,ik->i", a - a.mean(0), np.linalg.inv(np.cov(a, rowvar=False)), a - a.mean(0)))
    np.testing.assert_allclose(d[:len(a)], want, rtol=1e-6)
    # typical cells: about √3 on average; a broken pattern with the class's mean gain: far out
    odd = np.array([[-0.01 + 0.01, -0.02 - 0.02, -0.01 + 0.01]])        # same mean as class a's, shape broken
    assert 1.2 < np.median(d[:len(a)]) < 2.0
    z_odd = anomaly_of({"texture_profile": odd}, ["a"], {"parts": {"texture_profile": ref}})
    z_gain = (odd.mean() - np.median(a.mean(1))) / (1.4826 * np.median(np.abs(a.mean(1) - np.median(a.mean(1)))))
    assert z_odd[0] > 10 and abs(z_gain) < 1
    # a cell of class b's scale is judged against class b, not a
    assert profile_distance(b[:1], ["b"], ref)[0] < profile_distance(b[:1], ["a"], ref)[0]


def test_a_class_with_few_cells_uses_the_pooled_covariance_and_its_own_mean():
    """Three levels: a class needs 4 × 3 = 12 cells for its own covariance, 10 for its own mean."""
    rng = np.random.default_rng(1)
    cov = np.eye(3) * 1e-4
    x = np.vstack([profiles(100, rng, cov, [0] * 3), profiles(11, rng, cov, [0.05] * 3), profiles(3, rng, cov, [1] * 3)])
    pred = ["a"] * 100 + ["b"] * 11 + ["c"] * 3
    cols = ["texture_t1", "texture_t2", "texture_t3"]
    ref = fit_profile_reference(x, pred, ["a", "b", "c"], cols)
    b, c = ref["per_class"]["b"], ref["per_class"]["c"]
    assert b["pooled"] and b["n"] == 11 and np.allclose(b["loc"], [0.05] * 3, atol=0.01)   # its own mean
    assert c["pooled"] and c["loc"] == ref["pooled"]["loc"]                                 # too few: pooled
    assert "pooled" not in ref["per_class"]["a"]
    # the pooled covariance is within classes: class b's offset does not inflate it
    assert np.allclose(np.linalg.inv(ref["pooled"]["precision"]), cov, atol=3e-5)   # not ≈ 8e-4 (class b)
    with pytest.raises(ValueError, match="at least 12"):
        fit_profile_reference(x[:11], pred[:11], ["a"], cols)


def test_each_texture_score_fits_the_parts_it_names():
    from cytomodel.classify.novelty import fit_score_reference

    rng = np.random.default_rng(2)
    n = 60
    table = pd.DataFrame({"pred_class": ["a"] * n, "novelty_raw": rng.normal(size=n), "texture_raw": rng.normal(size=n),
                          "baseline_raw": rng.uniform(size=n), "baseline_distance": rng.normal(size=n),
                          "baseline_neighbours": rng.uniform(size=n),
                          **{f"texture_t{t}": rng.normal(size=n) for t in (200, 500, 800)}})
    want = {"texture": {"texture_raw", "texture_profile"},
            "class-gain+texture": {"novelty_raw", "texture_raw", "texture_profile"},
            "class-gain+texture-gain": {"novelty_raw", "texture_raw"},
            "class-gain+texture+baseline": {"novelty_raw", "texture_raw", "texture_profile", "baseline_neighbours"},
            "class-gain+texture+baseline-softmax": {"novelty_raw", "texture_raw", "texture_profile", "baseline_raw"}}
    for anomaly, parts in want.items():
        assert set(fit_score_reference(table, ["a"], anomaly)["parts"]) == parts, anomaly
    # with the null errors too, the profile reads gains then null errors (60 cells ≥ 4 × 6 columns)
    table = table.assign(**{f"texture_null_t{t}": rng.normal(size=n) for t in (800, 200, 500)})
    ref = fit_score_reference(table, ["a"], "class-gain+texture")["parts"]["texture_profile"]
    levels = (200, 500, 800)
    assert ref["columns"] == [f"texture_t{t}" for t in levels] + [f"texture_null_t{t}" for t in levels]


def test_tables_without_the_level_columns_are_named():
    t = pd.DataFrame({"pred_class": ["a"], "texture_raw": [0.1]})
    with pytest.raises(ValueError, match="texture_t<t>"):
        part_values(t, "texture_profile")
    with pytest.raises(ValueError, match="texture_t500"):
        part_values(t.assign(texture_t200=0.0), "texture_profile", ["texture_t200", "texture_t500"])
    # a reference fitted on gains and null errors needs both; one fitted on the gains alone (before the null
    # columns existed) reads its own columns from a newer table
    gains, nulls = ["texture_t200", "texture_t500"], ["texture_null_t200", "texture_null_t500"]
    newer = pd.DataFrame({"pred_class": ["a"] * 30, **{c: np.linspace(0, 1, 30) ** (i + 1)
                                                      for i, c in enumerate(gains + nulls)}})
    assert profile_columns(newer.columns[::-1]) == gains + nulls
    with pytest.raises(ValueError, match="texture_null_t200.*null-error columns"):
        part_values(newer[["pred_class"] + gains], "texture_profile", gains + nulls)
    assert part_values(newer, "texture_profile", gains).shape == (30, 2)
    assert part_values(newer, "texture_profile").shape == (30, 4)
    # and a reference without the profile part is refused for a score that needs it
    ref = {"parts": {"texture_raw": fit_reference(np.arange(20.0), ["a"] * 20, ["a"])}}
    with pytest.raises(ValueError, match="re-fit"):
        anomaly_of({"texture_raw": np.zeros(1), "texture_profile": np.zeros((1, 2))}, ["a"], ref)


def test_the_baseline_cnns_uncertainty_as_a_fourth_part(tiny_cascade_dir, tiny_baseline_dir, tiny_dataset, tmp_path,
                                                         capsys):
    from cytomodel.classify.baseline_part import BaselinePart
    from cytomodel.cli import main
    from cytomodel.evaluate import load_baseline

    model, opts = copy_and_options(tiny_cascade_dir, tmp_path, "class-gain+texture+baseline")
    baseline = tmp_path / "baseline"
    shutil.copytree(tiny_baseline_dir, baseline)
    out = tmp_path / "val.csv"
    run = ["classify", "--model", str(model), "--data", str(tiny_dataset), "--out", str(out)]
    # the option and the folder go together: each without the other is a clear error, before any work
    capsys.readouterr()
    assert main(run + opts) != 0 and "pass --baseline DIR" in capsys.readouterr().err
    assert main(run + ["--baseline", str(baseline)]) != 0
    assert "read only by --anomaly class-gain+texture+baseline" in capsys.readouterr().err
    # the score reads the baseline's feature distance: a baseline without a feature density is told how to fit one
    assert main(run + opts + ["--baseline", str(baseline)]) != 0
    assert "cytomodel baseline fit-density" in capsys.readouterr().err
    assert not out.exists()
    assert main(["baseline", "fit-density", "--model", str(baseline), "--data", str(tiny_dataset)]) == 0
    run_cli(run + opts + ["--baseline", str(baseline)])
    val = pd.read_csv(out)
    clf = load_baseline(baseline)
    assert clf.metadata["feature_density"]["n"] == len(val)
    part = BaselinePart.of_classifier(clf, baseline, sorted(val.label.unique()))
    columns = part.columns(list(val.image))
    np.testing.assert_allclose(val.baseline_raw, columns["baseline_raw"], rtol=1e-6)
    assert val.baseline_raw.between(0, 1).all() and val.baseline_raw.std() > 0
    for c in ("baseline_distance", "baseline_neighbours"):
        np.testing.assert_allclose(val[c], columns[c], rtol=1e-6)
        assert val[c].std() > 0
    assert main(["calibrate", "--model", str(model), "--data", str(tiny_dataset), "--from-results", str(out),
                 "--baseline", str(baseline)] + opts) == 0
    fit, = json.loads((model / "base" / "cytomodel.json").read_text())["novelty_fits"]
    parts = fit["reference"]["parts"]
    assert set(parts) == {"novelty_raw", "texture_raw", "texture_profile", "baseline_neighbours"}
    assert fit["baseline"]["baseline_weights_sha256"] == part.weights_sha256
    assert fit["baseline"]["baseline_density_sha256"] == clf.density.fingerprint()
    again = tmp_path / "again.csv"
    assert main(["classify", "--model", str(model), "--data", str(tiny_dataset), "--out", str(again),
                 "--baseline", str(baseline)] + opts) == 0
    np.testing.assert_allclose(pd.read_csv(again).anomaly_score, expected_anomaly(pd.read_csv(again), parts))
    # a baseline of other classes does not fit the diffusion model
    with pytest.raises(ValueError, match="same classes"):
        BaselinePart.of_classifier(clf, baseline, ["a", "b"])


def test_a_baseline_whose_density_keeps_no_training_features_is_told_to_refit(tiny_baseline_dir, tiny_dataset,
                                                                            tmp_path):
    """The +baseline score reads the nearest-neighbour distance: a density fitted before the training features were
    kept is refused before any work, with the command that refits it; the softmax form still runs."""
    from cytomodel.classify.baseline_part import BaselinePart
    from cytomodel.classify.config import SCORE_PARTS
    from cytomodel.cli import main
    from cytomodel.evaluate import load_baseline

    baseline = tmp_path / "baseline"
    shutil.copytree(tiny_baseline_dir, baseline)
    assert main(["baseline", "fit-density", "--model", str(baseline), "--data", str(tiny_dataset)]) == 0
    clf = load_baseline(baseline)
    part = BaselinePart.of_classifier(clf, baseline, clf.class_names)
    part.check_parts(SCORE_PARTS["class-gain+texture+baseline"], "class-gain+texture+baseline")   # fitted now: fine
    clf.density.neighbours = None
    with pytest.raises(ValueError, match="keeps no training features.*cytomodel baseline fit-density"):
        part.check_parts(SCORE_PARTS["class-gain+texture+baseline"], "class-gain+texture+baseline")
    part.check_parts(SCORE_PARTS["class-gain+texture+baseline-softmax"], "class-gain+texture+baseline-softmax")
    assert set(part.columns([])) == {"baseline_raw", "baseline_distance"}
