import numpy as np

from cytomodel import generate_images, load_model


def test_tiny_model_generates(tiny_model_dir):
    model = load_model(tiny_model_dir)
    batch = generate_images(model, "beta", n=3, steps=4, seed=5)
    assert batch.images.shape == (3, 16, 16, 3) and batch.images.dtype == np.uint8
    assert list(batch.records.seed) == [5, 6, 7]
