"""The model: its stages and how a folder becomes one.

* :mod:`.base` — :class:`CytoModel`, the class-conditional base stage (a diffusers ``UNet2DModel`` + null class for
  guidance, its noise schedule, pixel space), and its ``cytomodel.json`` record;
* :mod:`.superres` — :class:`SuperResModel`, the super-resolution stage of a cascade;
* :mod:`.cascade` — :class:`Cascade`, base + super-resolution stage in one folder, and the checks that they agree;
* :mod:`.lab_embedding` — the lab-variation conditioning a base stage trained with lab variation carries;
* :mod:`.loading` — the one registry from a folder's record to its class, and the loaders.

Sampling is in :mod:`cytomodel.pipelines`; the baseline CNN, the diffusion model's yardstick, in
:mod:`cytomodel.evaluate`.
"""
from __future__ import annotations

from .._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "CytoModel": "base", "METADATA_FILE": "base", "read_metadata": "base", "build_unet": "base",
    "build_scheduler": "base", "pixel_statistics": "base",
    "SuperResModel": "superres", "downsample": "superres", "upsample": "superres",
    "Cascade": "cascade", "CascadeError": "cascade", "check_stages_agree": "cascade",
    "AugmentationEmbedding": "lab_embedding",
    "STAGES": "loading", "stage_class": "loading", "load_stage": "loading", "load_model": "loading",
    "load_generator": "loading", "load_base": "loading", "base_folder": "loading", "assemble_cascade": "loading",
    "copy_model_folder": "loading",
})
