"""Cascades: a base stage + a super-resolution stage in one folder that plain diffusers reads, that generate whole
high-resolution cells (seeded, batch-independent), morph real ones continuously at one shared strength, and refuse
stages that do not fit together."""
import json
import shutil

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler, UNet2DModel

from cytomodel.models import (Cascade, CascadeError, SuperResModel, assemble_cascade, downsample, load_base,
                              load_generator, upsample)
from cytomodel.cli import main
from cytomodel.train import load_config, train
from cytomodel.data import load_dataset
from cytomodel.pipelines import generate_images, sdedit_images, super_resolve


@pytest.fixture(scope="module")
def cascade(tiny_cascade_dir):
    return load_generator(tiny_cascade_dir)


@pytest.fixture(scope="module")
def real32(tiny_dataset):
    return load_dataset(tiny_dataset, 32).images[:6]


def test_folder_layout_plain_diffusers_and_record(tiny_cascade_dir, cascade):
    assert isinstance(cascade, Cascade) and isinstance(cascade.superres, SuperResModel)
    assert (cascade.low_resolution, cascade.resolution) == (16, 32)
    for stage in ("base", "superres"):
        unet = UNet2DModel.from_pretrained(tiny_cascade_dir, subfolder=stage)
        DDPMScheduler.from_pretrained(tiny_cascade_dir, subfolder=stage)
        assert unet.config.in_channels == (3 if stage == "base" else 7)
    meta = json.loads((tiny_cascade_dir / "cytomodel.json").read_text())
    assert meta["stage"] == "cascade" and meta["class_names"] == ["alpha", "beta", "gamma"]
    assert meta["stages"]["base"]["data_hash"] == meta["stages"]["superres"]["data_hash"] == meta["data_hash"]
    assert len(meta["stages"]["superres"]["weights_sha256"]) == 64 and meta["sampling"]["superres_steps"] == 4
    # the classifier's stage
    assert load_base(tiny_cascade_dir).resolution == 16


def test_generation_is_seeded_batch_independent_and_high_resolution(cascade):
    a = generate_images(cascade, ["alpha", "beta"], n=3, steps=4, seed=5, batch_size=6)
    b = generate_images(cascade, ["beta"], n=1, steps=4, seed=6, batch_size=1)   # the 5th image of a, alone
    assert a.images.shape == (6, 32, 32, 3) and a.images.dtype == np.uint8
    assert np.array_equal(a.images[4], b.images[0])
    assert (a.records["superres_steps"] == 4).all()
    # the super-resolution stage keeps the base stage's low-res cell (it only adds detail)
    low = cascade.to_classifier_input(a.images).astype(float)
    base_only = generate_images(cascade.base, ["alpha", "beta"], n=3, steps=4, seed=5).images.astype(float)
    assert np.abs(low - base_only).mean() < 0.5 * np.abs(low - base_only[::-1]).mean()


def test_morph_strength_zero_is_the_real_image_one_is_a_generated_cell_and_between_is_continuous(cascade, real32):
    imgs = list(real32[:3])
    same = sdedit_images(cascade, imgs, "alpha", 0.0, steps=4)
    assert np.array_equal(same.images, real32[:3])
    full = sdedit_images(cascade, imgs, "alpha", 1.0, steps=4, seed=0)
    gen = generate_images(cascade, "alpha", n=3, steps=4, seed=0)
    assert np.array_equal(full.images, gen.images)       # s = 1 ignores the real image entirely
    dist = [np.abs(sdedit_images(cascade, imgs, "alpha", s, steps=10).images.astype(float) - real32[:3]).mean()
            for s in (0.1, 0.5, 1.0)]
    assert dist[0] < dist[1] < dist[2] + 1e-9, dist
    with pytest.raises(ValueError, match="strength"):
        sdedit_images(cascade, imgs, "alpha", 1.5)
    with pytest.raises(ValueError, match="32x32"):
        sdedit_images(cascade, [real32[0][:16, :16]], "alpha", 0.5)


def test_super_resolution_stage_checks_its_input(cascade, real32):
    sr = cascade.superres
    with pytest.raises(ValueError, match=r"\(N, 16, 16, 3\)"):
        super_resolve(sr, real32, [0] * len(real32), list(range(len(real32))))
    with pytest.raises(ValueError, match="level"):
        super_resolve(sr, downsample(real32, 16), None, list(range(len(real32))), level=5.0)
    with pytest.raises(ValueError, match="eta"):
        super_resolve(sr, downsample(real32, 16), None, list(range(len(real32))), eta=1.5)
    # ancestral sampling (eta 1) draws its fresh noise from each image's seed: reproducible, batch-independent,
    # and another draw than deterministic DDIM
    low, seeds = downsample(real32[:3], 16), [3, 4, 5]
    a = super_resolve(sr, low, [0, 1, 0], seeds, steps=4, eta=1.0, batch_size=3)
    b = super_resolve(sr, low[2:], [0], seeds[2:], steps=4, eta=1.0, batch_size=1)
    d = super_resolve(sr, low, [0, 1, 0], seeds, steps=4, eta=0.0)
    assert np.array_equal(a[2], b[0]) and not np.array_equal(a, d)
    # the residual convention round-trips
    hi, lo = sr.encode(real32), sr.encode(downsample(real32, 16))
    assert torch.allclose(sr.from_residual(sr.to_residual(hi, lo), lo), hi, atol=1e-5)
    assert upsample(lo, 32).shape == hi.shape


def test_stages_that_disagree_are_refused(tiny_model_dir, tiny_superres_dir, tiny_cascade_dir, tmp_path,
                                          tiny_dataset):
    with pytest.raises(CascadeError, match="super-resolution stage alone"):
        load_generator(tiny_superres_dir)
    with pytest.raises(CascadeError, match="not a super-resolution stage"):
        assemble_cascade(tiny_model_dir, tiny_model_dir, tmp_path / "bad")
    # classes differ
    other = tmp_path / "sr_other"
    shutil.copytree(tiny_superres_dir, other)
    meta = json.loads((other / "cytomodel.json").read_text())
    meta["class_names"] = ["x", "y", "z"]
    (other / "cytomodel.json").write_text(json.dumps(meta))
    with pytest.raises(CascadeError, match="classes differ"):
        assemble_cascade(tiny_model_dir, other, tmp_path / "bad2")
    # a super-resolution stage for another base size
    cfg = load_config("tiny-sr32", overrides={"max_steps": 1, "low_resolution": 8, "sample_every": 100})
    train(cfg, load_dataset(tiny_dataset, 32), tmp_path / "sr8", progress=False)
    with pytest.raises(CascadeError, match="takes 8-px cells but the base stage makes 16-px"):
        assemble_cascade(tiny_model_dir, tmp_path / "sr8" / "model", tmp_path / "bad3")
    # a cascade whose stage folder went missing
    broken = tmp_path / "broken"
    shutil.copytree(tiny_cascade_dir, broken)
    shutil.rmtree(broken / "superres")
    with pytest.raises(CascadeError, match="superres stage folder"):
        load_generator(broken)


def test_cli_assembles_generates_and_exports(tiny_model_dir, tiny_superres_dir, tiny_dataset, tmp_path, capsys):
    out = tmp_path / "casc"
    assert main(["cascade", "--base", str(tiny_model_dir), "--superres", str(tiny_superres_dir), "--out", str(out),
                 "--superres-steps", "3"]) == 0
    assert main(["generate", "--model", str(out), "--class", "beta", "--n", "2", "--steps", "3",
                 "--out", str(tmp_path / "gen")]) == 0
    from PIL import Image
    files = sorted((tmp_path / "gen").glob("*.png"))
    assert len(files) == 2 and Image.open(files[0]).size == (32, 32)
    img = next((tiny_dataset / "alpha").iterdir())
    assert main(["generate", "--model", str(out), "--class", "alpha", "--from-image", str(img), "--strength", "1.5",
                 "--out", str(tmp_path / "m")]) == 2
    assert "--strength" in capsys.readouterr().err
    assert main(["export", "--model", str(out), "--out", str(tmp_path / "fp16")]) == 0
    assert isinstance(load_generator(tmp_path / "fp16"), Cascade)
    # a lone super-resolution stage exports too (before it is assembled), and the export assembles
    assert main(["export", "--model", str(tiny_superres_dir), "--out", str(tmp_path / "sr16")]) == 0
    assert json.loads((tmp_path / "sr16" / "cytomodel.json").read_text())["weights_dtype"] == "float16"
    assert main(["cascade", "--base", str(tiny_model_dir), "--superres", str(tmp_path / "sr16"), "--out",
                 str(tmp_path / "casc16")]) == 0


@pytest.mark.parametrize("preset", ["gpu-sr256", "gpu-sr128"])
def test_super_resolution_presets_run_a_few_steps_on_cpu(preset, tmp_path):
    # the preset's own network at its own resolution; a small crop and batch keep two steps cheap on a CPU
    cfg = load_config(preset, overrides={"max_steps": 2, "batch_size": 1, "crop_size": 32, "checkpoint_every": 2,
                                         "sample_every": 100})
    rng = np.random.default_rng(0)
    from cytomodel.data import ImageArrays
    data = ImageArrays(rng.integers(0, 256, (4, cfg.resolution, cfg.resolution, 3), dtype=np.uint8),
                       np.array([0, 1, 0, 1]), ["a", "b"], [], "random")
    model = train(cfg, data, tmp_path, progress=False)
    assert isinstance(model, SuperResModel) and model.metadata["train_steps"] == 2
    assert model.low_resolution == cfg.low_resolution and model.unet.config.sample_size == cfg.resolution
