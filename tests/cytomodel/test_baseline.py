"""The discriminative baseline: learns, round-trips, reproduces, rejects bad input, and has a working CLI."""
import json

import numpy as np
import pytest
import torch

from conftest import make_dataset
from cytomodel.baseline import (BaselineClassifier, ResNetSmall, classification_metrics, load_baseline,
                                train_baseline)
from cytomodel.cli import main
from cytomodel.data import load_dataset

RES = 16


@pytest.fixture(scope="module")
def tiny_arrays(tiny_dataset):
    return load_dataset(tiny_dataset, RES)


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    """Another draw of the same three cartoon classes (different seed): unseen images."""
    return load_dataset(make_dataset(tmp_path_factory.mktemp("held_out"), n_per_class=10, seed=123), RES)


@pytest.fixture(scope="module")
def trained(tiny_arrays):
    return train_baseline(tiny_arrays, tiny_arrays, epochs=15, batch_size=12, seed=0, progress=False,
                          widths=(16, 32), blocks=(1, 1), threads=1)


def test_learns_the_tiny_classes(trained, held_out):
    m = trained.evaluate(held_out)
    # 3 classes, chance is 1/3; the classes differ by colour and size, so a working CNN separates them.
    assert m["balanced_accuracy"] >= 0.9, m
    assert trained.metadata["val_metrics"]["balanced_accuracy"] >= 0.9
    assert trained.metadata["history"][-1]["train_loss"] < trained.metadata["history"][0]["train_loss"]


def test_api_shapes(trained, held_out):
    x = held_out.images
    p = trained.predict_proba(x)
    assert p.shape == (len(x), 3) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
    z = trained.logits(x)
    np.testing.assert_array_equal(trained.predict(x), z.argmax(1))
    f = trained.features(x)
    assert f.shape == (len(x), 32) and np.isfinite(f).all()
    # a single HWC image is treated as a batch of one; batching does not change results
    np.testing.assert_allclose(trained.logits(x[0]), z[:1], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(trained.logits(x, batch_size=7), z, rtol=1e-5, atol=1e-5)
    assert trained.class_names == ["alpha", "beta", "gamma"] and trained.resolution == RES


def test_save_load_round_trip(trained, held_out, tmp_path):
    trained.save_pretrained(tmp_path / "fp32")
    back = BaselineClassifier.from_pretrained(tmp_path / "fp32")
    np.testing.assert_array_equal(back.logits(held_out.images), trained.logits(held_out.images))
    np.testing.assert_array_equal(back.features(held_out.images), trained.features(held_out.images))
    meta = json.loads((tmp_path / "fp32" / "baseline.json").read_text())
    for key in ("class_names", "resolution", "normalisation", "data_hash", "code_version", "val_metrics",
                "architecture", "training"):
        assert key in meta, key
    # fp16 storage: half the bytes, same decisions
    trained.save_pretrained(tmp_path / "fp16", dtype=torch.float16)
    half = load_baseline(tmp_path / "fp16")
    size = lambda d: (d / "model.safetensors").stat().st_size  # noqa: E731
    assert size(tmp_path / "fp16") < 0.6 * size(tmp_path / "fp32")
    np.testing.assert_array_equal(half.predict(held_out.images), trained.predict(held_out.images))
    np.testing.assert_allclose(half.predict_proba(held_out.images), trained.predict_proba(held_out.images), atol=2e-2)


def test_training_is_seeded(tiny_arrays):
    kw = dict(epochs=1, batch_size=12, progress=False, widths=(8, 16), blocks=(1, 1), threads=1)
    a, b = train_baseline(tiny_arrays, seed=3, **kw), train_baseline(tiny_arrays, seed=3, **kw)
    c = train_baseline(tiny_arrays, seed=4, **kw)
    x = tiny_arrays.images[:8]
    np.testing.assert_array_equal(a.logits(x), b.logits(x))
    assert not np.array_equal(a.logits(x), c.logits(x))


def test_resolution_agnostic_network():
    net = ResNetSmall(5).eval()
    for size in (16, 32, 64):
        assert net(torch.zeros(2, 3, size, size)).shape == (2, 5)
        assert net.features(torch.zeros(2, 3, size, size)).shape == (2, 128)


def test_rejects_bad_inputs(trained):
    with pytest.raises(ValueError, match="trained at 16px"):
        trained.predict_proba(np.zeros((2, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        trained.predict_proba(np.zeros((2, RES, RES, 3), np.float32))
    with pytest.raises(ValueError, match="shape"):
        trained.predict_proba(np.zeros((2, RES, RES), np.uint8))
    with pytest.raises(FileNotFoundError, match="baseline.json"):
        BaselineClassifier.from_pretrained("/nonexistent/folder")


def test_metrics_by_hand():
    m = classification_metrics(np.array([0, 0, 0, 0, 1]), np.array([0, 0, 0, 1, 0]), ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(0.6)
    assert m["balanced_accuracy"] == pytest.approx((0.75 + 0.0) / 2)  # class c absent: not averaged
    assert m["recall"]["c"] is None and m["confusion"][0] == [3, 1, 0]


def test_cli_train_and_predict(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "bl"
    assert main(["baseline", "train", "--data", str(tiny_dataset), "--resolution", str(RES), "--epochs", "2",
                 "--batch-size", "12", "--fp16", "--out", str(out)]) == 0
    assert (out / "model.safetensors").is_file()
    assert json.loads((out / "baseline.json").read_text())["weights_dtype"] == "float16"
    csv = tmp_path / "pred.csv"
    assert main(["baseline", "predict", "--model", str(out), "--data", str(tiny_dataset), "--out", str(csv)]) == 0
    text = capsys.readouterr().out
    assert "balanced accuracy" in text
    import pandas as pd
    table = pd.read_csv(csv)
    assert len(table) == 36 and {"path", "label", "predicted", "confidence", "p_alpha"} <= set(table.columns)
    files = sorted((tiny_dataset / "beta").iterdir())[:2]
    assert main(["baseline", "predict", "--model", str(out), "--images", *map(str, files)]) == 0
    assert main(["baseline", "predict", "--model", str(tmp_path / "missing"), "--images", str(files[0])]) == 2


def test_pbc_labels_and_loader(shared_data):
    """The 32 px PBC train split loads with the 8 classes the bundled baseline knows."""
    from cytomodel.baseline import bundled_baseline_path
    data = load_dataset(shared_data / "pbc", 32, split="val")
    assert len(data.class_names) == 8
    if (bundled_baseline_path() / "baseline.json").is_file():
        clf = load_baseline()
        assert clf.class_names == data.class_names and clf.resolution == 32
        m = clf.evaluate(data)
        assert m["balanced_accuracy"] >= 0.9, m  # the bundled model card claims more; a real check, not a constant
