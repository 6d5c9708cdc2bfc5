"""The baseline's feature density (cytomodel.evaluate.feature_density): the relative Mahalanobis distance against its
closed form, what it ranks high, persistence, and bad inputs."""
import numpy as np
import pytest

from cytomodel.evaluate.feature_density import FeatureDensity


def classes(rng, n=300):
    """Three Gaussian classes in 4-D whose means differ in the first two coordinates; every cell also varies a lot
    along the fourth (a nuisance direction shared by all classes, e.g. stain)."""
    means = np.array([[0, 0, 0, 0], [4, 0, 0, 0], [0, 4, 0, 0]], float)
    scale = np.array([1.0, 1.0, 1.0, 5.0])
    x = np.concatenate([m + rng.normal(size=(n, 4)) * scale for m in means])
    return x, np.repeat(np.arange(3), n)


def test_the_distance_is_the_relative_mahalanobis_distance():
    rng = np.random.default_rng(0)
    x, y = classes(rng)
    d = FeatureDensity.fit(x, y, ["a", "b", "c"])
    within = np.cov(np.concatenate([x[y == k] - x[y == k].mean(0) for k in range(3)]), rowvar=False)
    new = rng.normal(size=(5, 4)) * 3
    sq = lambda v, m, c: np.einsum("ij,jk,ik->i", v - m, np.linalg.inv(c), v - m)   # noqa: E731
    want = (np.min([sq(new, x[y == k].mean(0), within) for k in range(3)], axis=0)
            - sq(new, x.mean(0), np.cov(x, rowvar=False)))
    np.testing.assert_allclose(d.distance(new), want, rtol=1e-4)
    assert d.record["n"] == 900 and d.record["per_class"] == {"a": 300, "b": 300, "c": 300}


def test_it_ranks_a_cell_between_the_classes_above_the_classes_own():
    """What the relative distance sees: a cell amid the classes, like none of them (an unseen class that shares
    their features in new proportions), is far from every class yet near the background; a shift along the
    direction every cell varies in (stain) moves the class and background terms alike and is discounted."""
    rng = np.random.default_rng(1)
    x, y = classes(rng)
    d = FeatureDensity.fit(x, y, ["a", "b", "c"])
    held_in, _ = classes(np.random.default_rng(2), 100)
    between = rng.normal(size=(100, 4)) * [1, 1, 1, 5] + [2, 2, 0, 0]
    stain = held_in + [0, 0, 0, 12]
    assert np.median(d.distance(between)) > np.quantile(d.distance(held_in), 0.9)
    assert abs(np.median(d.distance(stain)) - np.median(d.distance(held_in))) < 0.5


def test_saved_and_loaded(tmp_path):
    rng = np.random.default_rng(3)
    x, y = classes(rng, 50)
    d = FeatureDensity.fit(x, y, ["a", "b", "c"], {"split": "train"})
    d.save(tmp_path)
    back = FeatureDensity.load(tmp_path, ["a", "b", "c"], d.record)
    np.testing.assert_array_equal(back.distance(x[:7]), d.distance(x[:7]))
    assert back.fingerprint() == d.fingerprint() != FeatureDensity.fit(x[::-1], y[::-1], ["a", "b", "c"]).fingerprint()
    with pytest.raises(ValueError, match="3 class means for 2 classes"):
        FeatureDensity.load(tmp_path, ["a", "b"], {})


def test_bad_inputs_are_named():
    rng = np.random.default_rng(4)
    x, y = classes(rng, 20)
    with pytest.raises(ValueError, match="too few of \\['d'\\]"):
        FeatureDensity.fit(x, y, ["a", "b", "c", "d"])
    two_each = np.concatenate([np.flatnonzero(y == k)[:2] for k in range(3)])
    with pytest.raises(ValueError, match="too few for a covariance of 4 features"):
        FeatureDensity.fit(x[two_each], y[two_each], ["a", "b", "c"])
    with pytest.raises(ValueError, match="N labels"):
        FeatureDensity.fit(x, y[:-1], ["a", "b", "c"])


def test_the_neighbour_distance_is_the_cosine_distance_to_the_kth_nearest_training_cell():
    rng = np.random.default_rng(5)
    x, y = classes(rng, 40)
    d = FeatureDensity.fit(x, y, ["a", "b", "c"])
    assert d.k == d.record["neighbours"]["k"] == 10 and d.neighbours.dtype == np.float16
    new = rng.normal(size=(7, 4)) * 3
    unit = lambda v: v / np.linalg.norm(v, axis=1, keepdims=True)   # noqa: E731
    want = np.sort(1 - unit(new) @ unit(x).T, axis=1)[:, d.k - 1]
    np.testing.assert_allclose(d.neighbour_distance(new, chunk=3), want, atol=2e-3)   # float16 training features
    # a training cell is its own nearest neighbour; scale does not matter, direction does
    d.record["neighbours"]["k"] = 1
    assert np.abs(d.neighbour_distance(x[:5])).max() < 2e-3
    np.testing.assert_allclose(d.neighbour_distance(10 * new), d.neighbour_distance(new), atol=1e-6)


def test_the_neighbour_distance_ranks_an_unseen_cluster_above_the_classes_own():
    """Cells drawn by another process than the fitted classes (a tight cluster in a direction none of them takes)
    lie further from their nearest training cells than new cells of the trained classes."""
    rng = np.random.default_rng(6)
    x, y = classes(rng)
    d = FeatureDensity.fit(x, y, ["a", "b", "c"])
    held_in, _ = classes(np.random.default_rng(7), 100)
    unseen = np.array([3.0, -3.0, 3.0, 0.0]) + rng.normal(size=(100, 4)) * 0.5
    assert np.median(d.neighbour_distance(unseen)) > np.quantile(d.neighbour_distance(held_in), 0.9)


def test_a_density_saved_before_it_kept_training_features(tmp_path):
    """Fitted before the training features were kept: loads, gives the same Mahalanobis distance, and names the
    command that adds them when the nearest-neighbour distance is asked for."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(8)
    x, y = classes(rng, 30)
    d = FeatureDensity.fit(x, y, ["a", "b", "c"])
    save_file({"means": d.means, "precision": d.precision, "background_mean": d.background_mean,
               "background_precision": d.background_precision}, str(tmp_path / "feature_density.safetensors"))
    old = FeatureDensity.load(tmp_path, ["a", "b", "c"], {"n": 90})
    assert old.neighbours is None
    np.testing.assert_array_equal(old.distance(x[:4]), d.distance(x[:4]))
    assert old.fingerprint() != d.fingerprint()   # the kept features are part of what a reference was fitted with
    with pytest.raises(ValueError, match="cytomodel baseline fit-density"):
        old.neighbour_distance(x[:2])
    d.save(tmp_path)
    back = FeatureDensity.load(tmp_path, ["a", "b", "c"], d.record)
    np.testing.assert_array_equal(back.neighbour_distance(x[:4]), d.neighbour_distance(x[:4]))
    assert back.fingerprint() == d.fingerprint()
