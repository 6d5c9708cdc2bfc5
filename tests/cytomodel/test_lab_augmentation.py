"""Lab variation: the augmentation leaves un-augmented images alone and changes augmented ones in the named ways; its
embedding is exactly zero for "no augmentation" (a fine-tune starts as the model it starts from, and plain diffusers
reads the no-augmentation model); a model trained with it saves, loads, resumes and classifies under "unknown"."""
import json
import math
import shutil

import numpy as np
import pytest
import torch
from diffusers import UNet2DModel

from cytomodel.data import load_dataset
from cytomodel.models import lab_embedding, load_model
from cytomodel.train import lab_augmentation as lab
from cytomodel.train import load_config, train
from cytomodel.train.loop import _lr_lambda


@pytest.fixture(scope="module")
def cells(tiny_dataset):
    data = load_dataset(tiny_dataset, 32)
    return torch.from_numpy(data.images.transpose(0, 3, 1, 2).copy()).float() / 255


def test_rows_without_augmentation_are_returned_unchanged(cells):
    g = torch.Generator().manual_seed(0)
    params = lab.sample_parameters(len(cells), g, p_augment=0.5)
    out = lab.apply(cells, params, g)
    plain = params.abs().sum(1) == 0
    assert 0 < int(plain.sum()) < len(cells)
    assert torch.equal(out[plain], cells[plain])
    assert (out[~plain] - cells[~plain]).abs().amax(dim=(1, 2, 3)).min() > 0.01
    assert out.min() >= 0 and out.max() <= 1


def test_each_variation_does_what_its_name_says(cells):
    g = torch.Generator().manual_seed(0)
    x = cells[:4]

    def one(**values):
        p = torch.zeros(len(x), lab_embedding.DIM)
        for name, v in values.items():
            p[:, lab_embedding.PARAMETERS.index(name)] = v
        return lab.apply(x, p, g)

    # illumination gain on blue only: the blue channel drops, red and green stay
    darker_blue = one(log_gain_b=-0.25)
    assert torch.allclose(darker_blue[:, :2], x[:, :2], atol=1e-5)
    assert (darker_blue[:, 2].mean() < x[:, 2].mean() - 0.05)
    # blur lowers the high-frequency energy
    blurred = one(blur=2.0)
    hf = lambda y: (y[..., 1:] - y[..., :-1]).abs().mean()  # noqa: E731
    assert hf(blurred) < 0.7 * hf(x)
    # zoom in (log_zoom > 0) magnifies: the central disc covers more of the image
    zoomed = one(log_zoom=math.log(1.25))
    centre_dark = lambda y: (y.mean(1) < 0.6).float().mean()  # noqa: E731
    assert centre_dark(zoomed) > centre_dark(x)
    # zero saturation leaves grey
    grey = one(log_saturation=-20.0)
    assert (grey.max(1).values - grey.min(1).values).max() < 0.02


def test_embedding_is_zero_without_augmentation_and_conditioning_is_per_call():
    emb = lab_embedding.AugmentationEmbedding(64)  # the UNet's embedding width: 4 x its first block's channels
    with torch.no_grad():
        emb.net[2].weight.normal_()
    assert torch.equal(emb(torch.zeros(3, lab_embedding.DIM)), torch.zeros(3, 64))
    assert emb(lab_embedding.unknown_vector(1)).abs().sum() > 0
    unet = UNet2DModel(sample_size=8, block_out_channels=(16, 16), down_block_types=("DownBlock2D",) * 2,
                       up_block_types=("UpBlock2D",) * 2, norm_num_groups=8, num_class_embeds=3,
                       layers_per_block=1).eval()
    x, t, y = torch.randn(2, 3, 8, 8), torch.tensor([10, 500]), torch.tensor([0, 1])
    with torch.no_grad():
        plain = unet(x, t, class_labels=y).sample
        emb.attach(unet)
        emb.attach(unet)  # attaching twice adds one hook, not two
        assert len(unet.class_embedding._forward_hooks) == 1
        same = unet(x, t, class_labels=y).sample
        with emb.conditioned_on(lab_embedding.unknown_vector(1)):
            unknown = unet(x, t, class_labels=y).sample
        after = unet(x, t, class_labels=y).sample
    assert torch.equal(plain, same) and torch.equal(plain, after)
    assert not torch.allclose(plain, unknown)


def test_encode_withholds_the_unknown_rows():
    g = torch.Generator().manual_seed(1)
    p = lab.sample_parameters(4, g)
    unknown = torch.tensor([True, False, True, False])
    v = lab_embedding.encode(p, unknown)
    assert torch.equal(v[0], lab_embedding.unknown_vector(1)[0]) and v[1, -1] == 0 and v[1].abs().sum() > 0


def test_fine_tune_starts_as_its_model_saves_loads_and_resumes(tiny_model_dir, tiny_dataset, tmp_path):
    start = tmp_path / "start"                      # the model fine-tuned from, with a framing record of its images
    shutil.copytree(tiny_model_dir, start)
    record = json.loads((start / "cytomodel.json").read_text())
    framing = {"window_rbc": 3.4, "window_cell": 1.8, "training_px": [32, 32]}
    (start / "cytomodel.json").write_text(json.dumps({**record, "framing": framing}))
    base = load_model(start)
    data = load_dataset(tiny_dataset, 16)
    cfg = load_config("tiny-16", overrides={"max_steps": 36, "checkpoint_every": 3, "sample_every": 10_000,
                                            "lab_augment": 0.8, "source_resolution": 32})
    # stop after the first step, then resume: the result is a model with a lab embedding
    first = train(cfg, data, tmp_path / "ft", init_from=start, progress=False, max_minutes=0)
    assert first.metadata["train_steps"] == 31 and first.metadata["fine_tune_from"]["step"] == 30
    model = train(cfg, data, tmp_path / "ft", resume=True, progress=False)
    assert model.metadata["train_steps"] == 36 and model.augmentation is not None
    meta = json.loads((tmp_path / "ft" / "model" / "cytomodel.json").read_text())
    assert meta["augmentation"]["parameters"] == list(lab_embedding.PARAMETERS)
    # the same training images: the fine-tune keeps the framing record of the model it started from
    assert meta["framing"] == framing and first.metadata["framing"] == framing
    assert (tmp_path / "ft" / "model" / lab_embedding.WEIGHTS_FILE).is_file()
    # plain diffusers reads the UNet: the model under no augmentation
    plain = UNet2DModel.from_pretrained(tmp_path / "ft" / "model")
    x, t, y = torch.randn(2, 3, 16, 16), torch.tensor([100, 700]), torch.tensor([0, 2])
    with torch.no_grad():
        ours = model.unet(x, t, class_labels=y).sample
        theirs = plain(x, t, class_labels=y).sample
        with model.lab_condition("unknown"):
            unknown = model.unet(x, t, class_labels=y).sample
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert not torch.allclose(ours, unknown, atol=1e-6)
    # a model without the embedding has no "unknown" condition, and says so
    with pytest.raises(ValueError, match="not trained with lab variation"):
        base.lab_condition("unknown")
    # the fine-tune's schedule warms up and anneals over its own steps
    f = _lr_lambda(load_config("cpu-32", overrides={"max_steps": 1100, "lr_warmup_steps": 10}), start=100)
    assert f(0) == pytest.approx(0.1) and f(10) == pytest.approx(1.0) and f(1000) == pytest.approx(0.1)


def test_first_step_of_a_fine_tune_equals_the_model_it_starts_from(tiny_model_dir, tiny_dataset, tmp_path):
    """Zero-initialised embedding: before any update, the lab-conditioned network computes what the base did."""
    from cytomodel.models import build_scheduler
    from cytomodel.train.objectives import BaseObjective

    base = load_model(tiny_model_dir)
    data = load_dataset(tiny_dataset, 16)
    cfg = load_config("tiny-16", overrides={"lab_augment": 1.0, "source_resolution": 32})
    obj = BaseObjective(cfg, data, build_scheduler(cfg), base.pixel_mean, base.pixel_std, torch.device("cpu"))
    unet = obj.build_unet()
    unet.load_state_dict(base.unet.state_dict())
    model = obj.model(unet)
    x, t, y = torch.randn(3, 3, 16, 16), torch.tensor([5, 300, 900]), torch.tensor([0, 1, 2])
    vec = lab_embedding.encode(lab.sample_parameters(3, torch.Generator().manual_seed(0)))
    with torch.no_grad(), model.augmentation.conditioned_on(vec):
        conditioned = model.unet(x, t, class_labels=y).sample
        reference = base.unet(x, t, class_labels=y).sample
    assert float((conditioned - reference).abs().max()) < 1e-6, float((conditioned - reference).abs().max())


@pytest.mark.parametrize("override, field", [("lab_augment=1.5", "lab_augment"), ("lab_unknown=1", "lab_unknown"),
                                             ("source_resolution=8", "source_resolution"),
                                             ("lab_variation.gamma=-0.1", "lab_variation"),
                                             ("lab_variation.zoom=0.8", "lab_variation")])
def test_bad_lab_settings_name_the_field(override, field):
    with pytest.raises(ValueError, match=f"'{field}'"):
        load_config("tiny-16", overrides=[override])


def test_lab_variation_ranges_are_a_config_field_and_bound_the_draws():
    cfg = load_config("tiny-16", overrides=["lab_augment=1", "lab_variation.gamma=0.7"])
    assert cfg.lab_variation.gamma == 0.7 and cfg.to_dict()["lab_variation"]["gamma"] == 0.7
    stain = slice(lab_embedding.PARAMETERS.index("log_gamma_r"), lab_embedding.PARAMETERS.index("log_gamma_b") + 1)
    wide = lab.sample_parameters(4000, torch.Generator().manual_seed(0), cfg.lab_variation)[:, stain]
    plain = lab.sample_parameters(4000, torch.Generator().manual_seed(0))[:, stain]
    assert 0.65 < float(wide.abs().max()) <= 0.7 and float(plain.abs().max()) <= 0.35
