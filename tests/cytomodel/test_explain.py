"""Counterfactual heat maps on the tiny model."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cytomodel.classify import ClassifierConfig, explain_image, save_overlay
from cytomodel.models import load_model


def test_heat_map_shape_range_and_overlay(tiny_model_dir, tiny_dataset, tmp_path):
    model = load_model(tiny_model_dir)
    path = sorted(Path(tiny_dataset).glob("alpha/*.png"))[0]
    exp = explain_image(model, path, target="gamma", config=ClassifierConfig(trials=6, precision="fp32"))
    assert exp.heatmap.shape == (16, 16) and exp.delta.shape == (3, 16, 16)
    assert np.isfinite(exp.heatmap).all() and exp.heatmap.min() >= 0 and exp.heatmap.max() == pytest.approx(1.0)
    assert exp.target == "gamma" and exp.predicted in model.class_names and exp.predicted != "gamma"
    assert exp.error_gap == pytest.approx(exp.errors["gamma"] - exp.errors[exp.predicted])
    # the map is the per-pixel size of the mean residual difference, not noise: it must vary over the image
    assert exp.heatmap.std() > 0.05
    out = save_overlay(exp, tmp_path / "overlay.png", upscale=4)
    with Image.open(out) as im:
        assert im.mode == "RGB" and im.size[0] > 3 * 64
    # a fixed pair of classes gives the same map with the same seed
    again = explain_image(model, path, target="gamma", predicted=exp.predicted,
                          config=ClassifierConfig(trials=6, precision="fp32"))
    np.testing.assert_allclose(again.heatmap, exp.heatmap, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="same"):
        explain_image(model, path, target="gamma", predicted="gamma")


def test_explain_cli(tiny_model_dir, tiny_dataset, tmp_path):
    from cytomodel.cli import main

    path = sorted(Path(tiny_dataset).glob("beta/*.png"))[0]
    out = tmp_path / "o.png"
    assert main(["explain", "--model", str(tiny_model_dir), "--image", str(path), "--target", "alpha",
                 "--trials", "4", "--out", str(out), "--upscale", "2"]) == 0
    assert out.is_file()
