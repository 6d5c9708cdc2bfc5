"""The texture evidence of the super-resolution stage (cytomodel.classify.texture), on a constructed stage whose
errors are known: it returns the true noise of the residual plus scales[label] times a shifted copy of it."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler

from cytomodel.classify.texture import texture_errors, texture_gain
from cytomodel.models.superres import SuperResModel

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
