"""A map of what the model has learned (``cytomodel map``): cells embedded in the diffusion model's own
representation — its UNet's mid-block at a noise level, under the null class; optionally its per-class
denoising-error profile — beside the baseline CNN's features and raw pixels; projected by UMAP, clustered inside each
class by HDBSCAN, and checked against the finer labels no model trained on (PBC's ``subtype``): do the clusters
recover them (AMI), can a k-NN probe read them (cross-validated balanced accuracy)? Clusters that come back over
seeds and subsamples are the candidates an expert should look at.

Code layout: :mod:`.cells` (sampling, subtypes, added images; torch-free) · :mod:`.representations` (the vectors)
· :mod:`.check` (clustering, AMI, the probe; torch-free) · :mod:`.stability` (reruns, Jaccard, typicality) ·
:mod:`.figures` (PDF/PNG, contact sheets) · :mod:`.html` (the interactive page) · :mod:`.run` (:func:`build_map`).
The command is :mod:`cytomodel.cli.morphology_map`.
"""
from __future__ import annotations

from .._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    **dict.fromkeys(["sample_cells", "read_subtypes", "unspecified", "list_added", "manifest_of"], "cells"),
    **dict.fromkeys(["diffusion_features", "error_features", "baseline_features", "pixel_features"],
                    "representations"),
    **dict.fromkeys(["Reducer", "reduce", "umap_embed", "cluster_cells", "subtype_ami",
                     "kmeans_ami", "knn_probe", "checkable", "subtype_check", "subtype_counts", "class_probe",
                     "TRAINED"], "check"),
    **dict.fromkeys(["ClassClusters", "cluster_class"], "stability"),
    **dict.fromkeys(["fig_map", "fig_check", "contact_sheet"], "figures"),
    **dict.fromkeys(["write_map_html", "thumbnail", "summary_rows"], "html"),
    **dict.fromkeys(["MapConfig", "ClusterSettings"], "config"),
    **dict.fromkeys(["MapResult", "build_map"], "run"),
})
