"""The check: do unsupervised clusters inside a trained class recover the finer labels (subtypes) no model trained
on? Per representation and class: the adjusted mutual information (AMI) between clusters and subtypes, and a k-NN
subtype probe (stratified cross-validation, balanced accuracy against its chance level 1/K).

Clusters inside a class: the class's cells, standardised and reduced by PCA, embedded by UMAP (a few dimensions,
``min_dist`` 0, as UMAP's authors advise for clustering) and clustered by HDBSCAN; HDBSCAN's noise counts as one
group in the AMI. numpy, scikit-learn and umap-learn (no torch)."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .config import ClusterSettings

MAX_PCA = 50          # dimensions kept before UMAP / the probe (pixels have thousands)


class Reducer:
    """Standardise the features (constant ones dropped) and keep at most ``max_dims`` principal components; fitted
    on one set of cells, it places others (added cells) in the same space."""

    def __init__(self, seed: int = 0, max_dims: int = MAX_PCA):
        self.seed, self.max_dims = seed, max_dims
        self.keep = self.mean = self.sd = self.pca = None

    def fit_transform(self, x: np.ndarray) -> np.ndarray:
        from sklearn.decomposition import PCA  # scikit-learn: only the map's analysis needs it

        x = np.asarray(x, np.float64)
        sd = x.std(axis=0)
        self.keep = sd > 1e-12 * max(1.0, float(np.abs(x).max(initial=0.0)))
        if not self.keep.any():
            self.keep[:1] = True
        self.mean, self.sd = x[:, self.keep].mean(axis=0), np.maximum(sd[self.keep], 1e-12)
        z = (x[:, self.keep] - self.mean) / self.sd
        k = min(self.max_dims, z.shape[1], max(1, len(z) - 1))
        if k < z.shape[1]:
            self.pca = PCA(n_components=k, random_state=self.seed, svd_solver="full")
            return self.pca.fit_transform(z)
        return z

    def transform(self, x: np.ndarray) -> np.ndarray:
        z = (np.asarray(x, np.float64)[:, self.keep] - self.mean) / self.sd
        return self.pca.transform(z) if self.pca is not None else z


def reduce(x: np.ndarray, seed: int = 0, max_dims: int = MAX_PCA) -> np.ndarray:
    """``x`` standardised and projected on at most ``max_dims`` principal components (:class:`Reducer`)."""
    return Reducer(seed, max_dims).fit_transform(x)


def umap_embed(x: np.ndarray, seed: int, n_components: int = 2, n_neighbors: int = 15, min_dist: float = 0.1):
    """A fitted, seeded UMAP of ``x`` (``.embedding_``; ``.transform`` places new cells on it)."""
    import umap  # umap-learn (numba): only the map needs it, and its import is slow

    n = len(x)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*n_jobs value.*")       # a seed makes UMAP single-threaded
        warnings.filterwarnings("ignore", message=".*n_neighbors is larger than.*")
        warnings.filterwarnings("ignore", category=UserWarning, module="umap")
        reducer = umap.UMAP(n_components=min(n_components, max(1, n - 2)), n_neighbors=max(2, min(n_neighbors, n - 1)),
                            min_dist=min_dist, random_state=int(seed), n_jobs=1,
                            init="spectral" if n > n_components + 8 else "random")
        reducer.fit(x)
    return reducer


def cluster_cells(x: np.ndarray, seed: int, settings: ClusterSettings = ClusterSettings()) -> np.ndarray:
    """HDBSCAN clusters (ints, -1 = noise) of one class's cells ``x`` (features, not yet reduced)."""
    from sklearn.cluster import HDBSCAN  # scikit-learn: only the map's analysis needs it

    n = len(x)
    size = settings.cluster_size(n)
    if n < max(2 * size, 10):
        return np.zeros(n, np.int64)          # too few cells to split: one cluster
    emb = umap_embed(reduce(x, seed), seed, settings.n_components, settings.n_neighbors, min_dist=0.0).embedding_
    return HDBSCAN(min_cluster_size=size, min_samples=settings.min_samples, copy=True).fit_predict(emb).astype(np.int64)


def subtype_ami(clusters: np.ndarray, subtypes) -> float:
    """Adjusted mutual information between clusters (noise -1 as one group) and subtypes; 0 = chance, 1 = same
    partition."""
    from sklearn.metrics import adjusted_mutual_info_score  # scikit-learn: only the map's analysis needs it

    return float(adjusted_mutual_info_score(np.asarray(subtypes).astype(str), np.asarray(clusters)))


def kmeans_ami(x: np.ndarray, subtypes, seed: int) -> float:
    """AMI of k-means with k = the number of subtypes on the reduced features: the clusters' best chance when the
    number of subtypes is told (HDBSCAN chooses its own)."""
    from sklearn.cluster import KMeans  # scikit-learn: only the map's analysis needs it

    k = len(set(np.asarray(subtypes).astype(str)))
    labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(reduce(x, seed))
    return subtype_ami(labels, subtypes)


def knn_probe(x: np.ndarray, subtypes, k: int = 5, folds: int = 5, seed: int = 0,
              permutations: int = 1000) -> dict:
    """Stratified-cross-validated balanced accuracy of a k-NN subtype classifier (standardisation, PCA and the
    neighbours fitted on each fold's training cells; one balanced accuracy over all held-out predictions), its chance
    level 1/K, and a permutation p-value: the same folds and neighbours with the subtypes shuffled ``permutations``
    times, p = (1 + #shuffles scoring at least as well) / (1 + permutations)."""
    from sklearn.decomposition import PCA  # scikit-learn: only the map's analysis needs it
    from sklearn.model_selection import StratifiedKFold  # scikit-learn, as above
    from sklearn.neighbors import NearestNeighbors  # scikit-learn, as above
    from sklearn.preprocessing import StandardScaler  # scikit-learn, as above

    y_names = np.asarray(subtypes).astype(str)
    names, y, counts = np.unique(y_names, return_inverse=True, return_counts=True)
    if len(names) < 2:
        raise ValueError(f"a subtype probe needs at least 2 subtypes, got {list(names)}")
    n_folds = int(min(folds, counts.min()))
    if n_folds < 2:
        raise ValueError(f"subtype {names[counts.argmin()]!r} has {counts.min()} cell(s): a cross-validated probe "
                         "needs at least 2 of each")
    x = np.asarray(x, np.float64)
    x = x[:, x.std(axis=0) > 0] if (x.std(axis=0) > 0).any() else x[:, :1]
    neighbours = []
    for train, test in StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed).split(x, y):
        scaler = StandardScaler().fit(x[train])
        zt, zv = scaler.transform(x[train]), scaler.transform(x[test])
        dims = min(MAX_PCA, zt.shape[1], len(train) - 1)
        if dims < zt.shape[1]:
            pca = PCA(n_components=dims, random_state=seed, svd_solver="full").fit(zt)
            zt, zv = pca.transform(zt), pca.transform(zv)
        kk = max(1, min(k, len(train)))
        idx = NearestNeighbors(n_neighbors=kk).fit(zt).kneighbors(zv, return_distance=False)
        neighbours.append((test, train[idx]))

    def score(labels: np.ndarray) -> float:
        pred = np.empty(len(labels), np.int64)
        for test, nb in neighbours:
            votes = np.zeros((len(test), len(names)))
            np.add.at(votes, (np.repeat(np.arange(len(test)), nb.shape[1]), labels[nb].ravel()), 1.0)
            pred[test] = votes.argmax(axis=1)              # ties: the first subtype in sorted order
        recall = [np.mean(pred[labels == c] == c) for c in range(len(names))]
        return float(np.mean(recall))

    observed = score(y)
    rng = np.random.default_rng([seed, 7])
    null = np.array([score(rng.permutation(y)) for _ in range(max(0, permutations))])
    p = float((1 + np.sum(null >= observed - 1e-12)) / (1 + len(null))) if len(null) else float("nan")
    return {"balanced_accuracy": observed, "chance": 1.0 / len(names), "p_value": p, "folds": n_folds,
            "n_subtypes": len(names), "null_mean": float(null.mean()) if len(null) else float("nan")}


def checkable(labels, subtypes, min_per_subtype: int = 5) -> dict[str, np.ndarray]:
    """{class: indices of its cells with a subtype of at least ``min_per_subtype`` cells} for every class with at
    least two such subtypes (the classes where the check means something)."""
    labels = np.asarray(labels).astype(str)
    subtypes = np.asarray([s if isinstance(s, str) and s else "" for s in subtypes])
    out = {}
    for c in dict.fromkeys(labels):
        idx = np.flatnonzero((labels == c) & (subtypes != ""))
        names, counts = np.unique(subtypes[idx], return_counts=True)
        big = set(names[counts >= min_per_subtype])
        if len(big) >= 2:
            out[c] = idx[np.isin(subtypes[idx], list(big))]
    return out


def subtype_check(features: dict[str, np.ndarray], labels, subtypes, seed: int = 0,
                  settings: ClusterSettings = ClusterSettings(), reference: dict[tuple[str, str], np.ndarray] | None
                  = None, runs: dict[tuple[str, str], list[tuple[np.ndarray, np.ndarray]]] | None = None,
                  k: int = 5, folds: int = 5, min_per_subtype: int = 5, permutations: int = 1000) -> pd.DataFrame:
    """The tidy table (representation, class, metric, value, n) for every representation and checkable class.

    ``reference[(rep, class)]`` are the class's clusters (all its cells, in the order of its cells) and
    ``runs[(rep, class)]`` the (cell indices into the class, clusters) of the stability runs, when already made
    (:mod:`.stability`); otherwise the clusters are made here with ``seed``. Metrics: ami_hdbscan (the reference
    clustering), ami_hdbscan_mean / _sd (over the runs), n_clusters, noise_fraction, ami_kmeans (k told),
    knn_balanced_accuracy, knn_chance, knn_p_value; ``n`` is the number of cells the metric is computed on."""
    labels = np.asarray(labels).astype(str)
    subtypes_arr = np.asarray([s if isinstance(s, str) else "" for s in subtypes])
    rows = []
    for cls, idx in checkable(labels, subtypes_arr, min_per_subtype).items():
        members = np.flatnonzero(labels == cls)            # the class's cells, the clusters' order
        pos = np.searchsorted(members, idx)                # the checked cells among them
        y = subtypes_arr[idx]
        for rep, x in features.items():
            def add(metric, value, n=len(idx)):
                rows.append({"representation": rep, "class": cls, "metric": metric, "value": float(value), "n": n})

            ref = (reference or {}).get((rep, cls))
            if ref is None:
                ref = cluster_cells(x[members], seed, settings)
            add("ami_hdbscan", subtype_ami(ref[pos], y))
            add("n_clusters", len(set(ref[pos]) - {-1}))
            add("noise_fraction", float(np.mean(ref[pos] == -1)))
            amis = []
            for sub, cl in (runs or {}).get((rep, cls), []):
                keep = np.isin(sub, pos)
                if keep.sum() >= 2:
                    amis.append(subtype_ami(cl[keep], subtypes_arr[members[sub[keep]]]))
            if amis:
                add("ami_hdbscan_mean", np.mean(amis))
                add("ami_hdbscan_sd", np.std(amis, ddof=1) if len(amis) > 1 else 0.0)
            add("ami_kmeans", kmeans_ami(x[idx], y, seed))
            probe = knn_probe(x[idx], y, k=k, folds=folds, seed=seed, permutations=permutations)
            add("knn_balanced_accuracy", probe["balanced_accuracy"])
            add("knn_chance", probe["chance"])
            add("knn_p_value", probe["p_value"])
    return pd.DataFrame(rows, columns=["representation", "class", "metric", "value", "n"])


TRAINED = "(trained classes)"


def class_probe(features: dict[str, np.ndarray], labels, seed: int = 0, k: int = 5, folds: int = 5,
                permutations: int = 1000) -> pd.DataFrame:
    """The same k-NN probe for the trained classes, over all cells (rows with class ``(trained classes)``): how well
    a representation separates what the models were trained on — the yardstick for reading its subtype probe."""
    rows = []
    labels = np.asarray(labels).astype(str)
    if len(set(labels)) < 2:
        return pd.DataFrame(rows, columns=["representation", "class", "metric", "value", "n"])
    for rep, x in features.items():
        probe = knn_probe(x, labels, k=k, folds=folds, seed=seed, permutations=permutations)
        for metric, key in (("knn_balanced_accuracy", "balanced_accuracy"), ("knn_chance", "chance"),
                            ("knn_p_value", "p_value")):
            rows.append({"representation": rep, "class": TRAINED, "metric": metric, "value": probe[key],
                         "n": len(labels)})
    return pd.DataFrame(rows, columns=["representation", "class", "metric", "value", "n"])


def subtype_counts(labels, subtypes_raw) -> pd.DataFrame:
    """How many sampled cells carry each (class, subtype) — the table that says what the check could see."""
    df = pd.DataFrame({"class": np.asarray(labels).astype(str),
                       "subtype": [s if isinstance(s, str) and s else "(none)" for s in subtypes_raw]})
    return df.groupby(["class", "subtype"]).size().rename("n").reset_index()
