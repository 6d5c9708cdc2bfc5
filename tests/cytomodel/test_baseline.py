"""The discriminative baseline: learns, round-trips, reproduces, rejects bad input, and has a working CLI."""
import json

import numpy as np
import pytest
import torch

from cytomodel.testing import make_dataset
from cytomodel.evaluate.baseline import BaselineClassifier, ResNetSmall, load_baseline
from cytomodel.evaluate.baseline_training import train_baseline
from cytomodel.evaluate.metrics import classification_metrics
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


def test_stem_stride_sees_a_large_image_at_a_small_ones_cost(tiny_arrays, tmp_path):
    strided = ResNetSmall(5, stem_stride=4).eval()
    assert strided.stem(torch.zeros(1, 3, 128, 128)).shape[-1] == 32     # 128 px in, 32 px after the stem
    assert ResNetSmall(5).stem(torch.zeros(1, 3, 32, 32)).shape[-1] == 32
    with pytest.raises(ValueError, match="stem_stride"):
        ResNetSmall(5, stem_stride=0)
    data = tiny_arrays
    clf = train_baseline(data, epochs=1, batch_size=8, progress=False, stem_stride=2)
    clf.save_pretrained(tmp_path / "s2")
    back = BaselineClassifier.from_pretrained(tmp_path / "s2")
    assert back.architecture["stem_stride"] == 2
    np.testing.assert_allclose(back.logits(data.images[:4]), clf.logits(data.images[:4]), atol=1e-4)


def test_group_norm_and_lab_variation(tiny_arrays, tiny_dataset, tmp_path):
    """Group norm (per-image statistics) and lab-variation training (at the source resolution) train, record
    themselves and round-trip; group norm's output for an image does not depend on the rest of the batch."""
    source = load_dataset(tiny_dataset, 32)
    clf = train_baseline(tiny_arrays, epochs=2, batch_size=8, progress=False, norm="group", lab_augment=0.7,
                         source=source, widths=(16, 32), blocks=(1, 1))
    assert clf.architecture["norm"] == "group" and clf.metadata["training"]["lab_augment"] == 0.7
    assert "lab variation" in clf.metadata["training"]["augmentation"]
    clf.save_pretrained(tmp_path / "gn")
    back = BaselineClassifier.from_pretrained(tmp_path / "gn")
    x = tiny_arrays.images[:6]
    np.testing.assert_allclose(back.logits(x), clf.logits(x), atol=1e-4)
    np.testing.assert_allclose(back.logits(x[:1]), back.logits(x)[:1], atol=1e-4)
    with pytest.raises(ValueError, match="norm must be"):
        ResNetSmall(3, norm="layer")
    with pytest.raises(ValueError, match="source images"):
        train_baseline(tiny_arrays, epochs=1, progress=False, lab_augment=0.5,
                       source=load_dataset(make_dataset(tmp_path / "other", n_per_class=2), 32))


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
    # the classification table of `cytomodel classify` (cytocore.classification): same names for the same things
    assert len(table) == 36
    assert list(table.columns[:4]) == ["image", "label", "pred_class", "confidence"]
    assert [c for c in table.columns if c.startswith("prob_")] == ["prob_alpha", "prob_beta", "prob_gamma"]
    assert not {"path", "predicted"} & set(table.columns) and not any(c.startswith("p_") for c in table.columns)
    # triage reads it, and a table of before the one schema (path, predicted, p_<class>) the same way
    old = tmp_path / "old.csv"
    table.rename(columns={"image": "path", "pred_class": "predicted",
                          **{c: "p_" + c[len("prob_"):] for c in table.columns if c.startswith("prob_")}}
                 ).to_csv(old, index=False)
    assert main(["triage", "--calibration", str(csv), "--cells", str(csv), "--compare", f"old={old},{old}",
                 "--target-error", "0.3", "--out", str(tmp_path / "triage")]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "triage" / "decisions_diffusion.csv"),
                                  pd.read_csv(tmp_path / "triage" / "decisions_old.csv"))
    # candidates restricted (another lab's classes): the probabilities renormalised over them, the rest 0
    capsys.readouterr()
    assert main(["baseline", "predict", "--model", str(out), "--data", str(tiny_dataset), "--out", str(csv),
                 "--classes", "alpha,gamma"]) == 0
    assert "outside the candidates (beta)" in capsys.readouterr().out
    table = pd.read_csv(csv)
    assert set(table.pred_class) <= {"alpha", "gamma"} and (table.prob_beta == 0).all()
    np.testing.assert_allclose(table[["prob_alpha", "prob_gamma"]].sum(1), 1.0, atol=1e-4)
    assert main(["baseline", "predict", "--model", str(out), "--data", str(tiny_dataset), "--classes",
                 "alpha,delta"]) == 2
    assert "unknown delta" in capsys.readouterr().err
    files = sorted((tiny_dataset / "beta").iterdir())[:2]
    assert main(["baseline", "predict", "--model", str(out), "--images", *map(str, files)]) == 0
    assert main(["baseline", "predict", "--model", str(tmp_path / "missing"), "--images", str(files[0])]) == 2


def test_pbc_labels_and_loader(shared_data):
    """The 32 px PBC train split loads with the 8 classes the bundled baseline knows."""
    from cytomodel import bundled_baseline_path
    data = load_dataset(shared_data / "pbc", 32, split="val")
    assert len(data.class_names) == 8
    if (bundled_baseline_path() / "baseline.json").is_file():
        clf = load_baseline()
        assert clf.class_names == data.class_names and clf.resolution == 32
        m = clf.evaluate(data, precision="bf16")  # bf16: 10x faster here; decisions match fp32 closely
        assert m["balanced_accuracy"] >= 0.9, m  # the bundled model card claims more; a real check, not a constant


# ----------------------------------------------------------------------------------------------- quality benchmarks
@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import quality_fidelity, quality_memorisation, quality_monitor, quality_two_sample  # noqa: E401
    return quality_fidelity, quality_memorisation, quality_two_sample, quality_monitor


@pytest.fixture(scope="module")
def split_dataset(tmp_path_factory, trained):
    """A manifest dataset with train/val/test splits (like ../shared/data/pbc) and a baseline for it."""
    root = make_dataset(tmp_path_factory.mktemp("splits"), n_per_class=12, seed=5)
    rows = ["path,label,split"]
    for p in sorted(root.rglob("*.png")):
        j = int(p.stem.split("_")[1])
        rows.append(f"{p.relative_to(root).as_posix()},{p.parent.name},{['train', 'val', 'test'][j % 3]}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path_factory.mktemp("bl") / "baseline"
    trained.save_pretrained(out)
    return root, out


def test_nearest_neighbour_flags_planted_copies(bench, held_out):
    _, mem, _, _ = bench
    bank = held_out.images[:20]
    copies = np.rot90(bank[:5], 1, axes=(1, 2))[:, ::-1]  # rotated + flipped exact copies
    others = held_out.images[20:]
    flat = lambda a, b: mem.nearest(a.reshape(len(a), -1).astype(np.float32), b, "rms")  # noqa: E731
    bank_flat = bank.reshape(len(bank), -1).astype(np.float32)
    d_copy, i_copy = mem.nn_dihedral(np.ascontiguousarray(copies), bank_flat, flat)
    d_other, _ = mem.nn_dihedral(others, bank_flat, flat)
    np.testing.assert_allclose(d_copy, 0, atol=0.05)  # float32 rounding, 0-255 units
    assert i_copy.tolist() == [0, 1, 2, 3, 4]
    assert d_other.min() > 1.0  # distinct noisy cartoon cells are never 'copies'
    d_plain, _ = flat(np.ascontiguousarray(copies), bank_flat)
    assert d_plain.min() > 1.0  # without the symmetries the copies would be missed


def test_two_sample_detector_separates_only_different_sets(bench):
    _, _, two, _ = bench
    from PIL import Image  # noqa: F401
    from cytomodel.testing import make_cell_image
    rng = np.random.default_rng(0)
    make = lambda c, n: np.stack([np.asarray(make_cell_image(c, rng, 16)) for _ in range(n)])  # noqa: E731
    a, b, other = make(0, 40), make(0, 40), make(2, 40)
    zeros = np.zeros(40, np.int64)
    same = two.two_sample_test(a, zeros, b, zeros, epochs=8, seed=0)
    diff = two.two_sample_test(a, zeros, other, zeros, epochs=8, seed=0)
    assert same["n_scored"] == 80 and diff["accuracy"] >= 0.95, diff
    assert same["accuracy"] <= 0.75, same  # same distribution: near chance


def test_fidelity_table_by_hand(bench):
    fid, _, _, _ = bench
    t = fid.fidelity_table(np.array([0, 0, 1, 2, 2, 2]), np.array([0, 0, 1, 1, 2, 2]), ["a", "b", "c"])
    assert t["overall"] == pytest.approx(5 / 6) and t["per_class"] == {"a": 1.0, "b": 0.5, "c": 1.0}
    assert t["assigned_share"]["c"] == pytest.approx(0.5) and t["ci95"][0] < 5 / 6 < t["ci95"][1]


def test_benchmark_scripts_run_end_to_end(bench, split_dataset, tiny_model_dir, tmp_path, capsys):
    fid, mem, two, mon = bench
    data, baseline = split_dataset
    common = ["--model", str(tiny_model_dir), "--baseline", str(baseline), "--data", str(data), "--steps", "2"]
    assert fid.main([*common, "--n", "3", "--guidance", "1", "3", "--json", str(tmp_path / "f.json")]) == 0
    r = json.loads((tmp_path / "f.json").read_text())
    assert set(r["guidance"]) == {"1", "3"} and r["guidance"]["1"]["n"] == 9
    assert all(0 <= t["overall"] <= 1 for t in r["guidance"].values())
    assert r["real_test_reference"]["overall"] >= 0.9  # the baseline names real cartoon cells
    assert mem.main([*common, "--n", "3", "--n-real", "12", "--json", str(tmp_path / "m.json"),
                     "--out", str(tmp_path)]) == 0
    m = json.loads((tmp_path / "m.json").read_text())
    assert set(m["spaces"]) == {"pixel", "feature"} and m["n_generated"] == 9 and m["n_val"] == 12
    assert (tmp_path / "closest-pairs.png").is_file()
    assert two.main([*common, "--n", "4", "--epochs", "1", "--json", str(tmp_path / "t.json")]) == 0
    t = json.loads((tmp_path / "t.json").read_text())
    assert t["n_real"] == 12 and set(t["tests"]) == {"generated"}  # no --floor: only the generated set
    assert t["tests"]["generated"]["n_generated"] == 12 and 0 <= t["tests"]["generated"]["accuracy"] <= 1
    # the monitor appends one row per export and guidance, and skips what it has measured
    csv_path = tmp_path / "monitor.csv"
    mon_args = ["--model", str(tiny_model_dir), "--baseline", str(baseline), "--data", str(data), "--n", "2",
                "--steps", "2", "--csv", str(csv_path), "--guidance", "1", "2"]
    assert mon.main(mon_args) == 0 and mon.main(mon_args) == 0
    import pandas as pd
    rows = pd.read_csv(csv_path)
    assert rows.train_steps.tolist() == [30, 30] and rows.guidance.tolist() == [1.0, 2.0]
    assert {"fidelity", "colour_error", "fid_alpha"} <= set(rows.columns)
    assert "fidelity" in capsys.readouterr().out
