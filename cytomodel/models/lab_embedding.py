"""The lab-variation conditioning of a base stage: which augmentation (another lab's stain, illumination,
magnification, focus, noise, JPEG, rotation) a training image was given, as a vector the network sees through
:class:`AugmentationEmbedding`, added to the class embedding (non-leaky augmentation: Karras et al. 2022,
*Elucidating the Design Space of Diffusion-Based Generative Models*, §5 and appendix C.4). The augmentation itself is
training's (:mod:`cytomodel.train.lab_augmentation`).

Sampling asks for no augmentation, so generated cells keep the training lab's look; the *unknown* token (zeros and a
flag) conditions on a cell whose lab is not told — what the classifier asks of an image from elsewhere. The
embedding is a bias-free MLP whose last layer starts at zero: "no augmentation" maps to exactly zero, so a model
fine-tuned from an unaugmented one starts as that model, and the UNet alone (what plain diffusers loads) *is* the
model under no augmentation.
"""
from __future__ import annotations

import contextlib
import math
from typing import Iterator

import torch
import torch.nn as nn

# what each entry of the conditioning vector means (the last entry is the "unknown" flag)
PARAMETERS = ("log_zoom", "rot_cos", "rot_sin", "shift_x", "shift_y", "blur", "noise", "jpeg",
              "log_gamma_r", "log_gamma_g", "log_gamma_b", "log_gain_r", "log_gain_g", "log_gain_b",
              "hue_cos", "hue_sin", "log_saturation", "log_contrast", "brightness", "unknown")
DIM = len(PARAMETERS)
WEIGHTS_FILE = "augmentation_embedding.safetensors"


# scale of each entry in the vector, so that the network sees values of order one
_SCALE = torch.tensor([1 / math.log(1.25), 1, 1, 1 / 0.06, 1 / 0.06, 1 / 2.5, 1 / 0.04, 1,
                       1 / 0.35, 1 / 0.35, 1 / 0.35, 1 / 0.25, 1 / 0.25, 1 / 0.25, 1, 1, 1 / 0.5, 1 / 0.3,
                       1 / 0.08, 1])


def encode(params: torch.Tensor, unknown: torch.Tensor | None = None) -> torch.Tensor:
    """The conditioning vector: scaled parameters, or the unknown token (zeros and a flag) where ``unknown``."""
    x = params * _SCALE.to(params.device)
    if unknown is not None:
        x = torch.where(unknown[:, None], torch.zeros_like(x), x)
        x[:, -1] = unknown.float()
    return x


def unknown_vector(n: int = 1) -> torch.Tensor:
    """The conditioning of an image whose lab (augmentation) is not known."""
    x = torch.zeros(n, DIM)
    x[:, -1] = 1.0
    return x


class AugmentationEmbedding(nn.Module):
    """Bias-free MLP from the conditioning vector to the UNet's embedding width; zero for "no augmentation"."""

    def __init__(self, embed_dim: int, hidden: int = 128, dim: int = DIM) -> None:
        super().__init__()
        self.dim, self.hidden, self.embed_dim = dim, hidden, embed_dim
        self.net = nn.Sequential(nn.Linear(dim, hidden, bias=False), nn.SiLU(), nn.Linear(hidden, embed_dim, bias=False))
        nn.init.zeros_(self.net[2].weight)
        self._current: torch.Tensor | None = None

    def forward(self, vec: torch.Tensor) -> torch.Tensor:
        return self.net(vec)

    def config(self) -> dict:
        return {"dim": self.dim, "hidden": self.hidden, "embed_dim": self.embed_dim, "parameters": list(PARAMETERS)}

    def attach(self, unet: nn.Module):
        """Add this embedding to the UNet's class embedding on every call (a forward hook); returns the handle."""
        if getattr(unet, "class_embedding", None) is None:
            raise ValueError("the UNet has no class embedding to condition on an augmentation")
        attached = getattr(unet.class_embedding, "_lab_augmentation", None)
        if attached is not None:
            if attached[0] is not self:
                raise ValueError("this UNet is already conditioned by another augmentation embedding")
            return attached[1]

        def hook(_module, _inputs, output):
            if self._current is None:
                return output
            vec = self._current.to(device=output.device)
            if len(vec) not in (1, len(output)):
                raise RuntimeError(f"augmentation conditioning for {len(vec)} images, but the UNet call has "
                                   f"{len(output)}; set it per call (conditioned_on)")
            return output + self.net(vec.to(self.net[0].weight.dtype)).to(output.dtype)

        handle = unet.class_embedding.register_forward_hook(hook)
        unet.class_embedding._lab_augmentation = (self, handle)
        return handle

    @contextlib.contextmanager
    def conditioned_on(self, vec: torch.Tensor | None) -> Iterator[None]:
        """Within the block, UNet calls see the conditioning ``vec`` ((1, DIM) for every image, or one row each)."""
        old, self._current = self._current, vec
        try:
            yield
        finally:
            self._current = old
