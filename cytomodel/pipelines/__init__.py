"""Sampling, each pipeline top to bottom in one file (as diffusers' DeepFloyd IF pipelines read):

* :mod:`.scheduling` — the DDIM schedule, SDEdit's starting step, the seeded noise and Min-SNR weights (a leaf);
* :mod:`.base` — a base stage: classifier-free guidance and SDEdit;
* :mod:`.superres` — a super-resolution stage;
* :mod:`.cascade` — base stage, then super-resolution stage, one strength for both;
* :mod:`.generate` — ``generate_images`` / ``sdedit_images`` for any model that can generate, and saving them.
"""
from __future__ import annotations

from .._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "ddim_scheduler": "scheduling", "ddim_timesteps": "scheduling", "seeded_noise": "scheduling",
    "min_snr_weights": "scheduling",
    "sample": "base", "super_resolve": "superres", "sample_cascade": "cascade",
    "GeneratedImages": "generate", "generate_images": "generate", "sdedit_images": "generate",
    "save_generated": "generate", "image_grid": "generate", "pipeline_for": "generate",
})
