"""The augmentation every training image gets: dihedral flips/rotations and a mild brightness/colour jitter, the same
draw applied to every view of a batch (e.g. a cell at 128 px and its 32-px version). Another lab's look is
:mod:`.lab_augmentation`."""
from __future__ import annotations

import torch

from .config import TrainConfig


def augment(batch: torch.Tensor, cfg: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    """(B, 3, H, W) uint8 -> float in [0, 1] with dihedral flips/rotations and mild brightness/colour jitter."""
    return augment_views([batch], cfg, gen)[0]


def augment_views(batches: list[torch.Tensor], cfg: TrainConfig, gen: torch.Generator) -> list[torch.Tensor]:
    """The same random flips/rotations/jitter applied to several views of one batch (e.g. 128 px and its 32 px).

    Views are uint8 (0-255) or float in [0, 1]."""
    xs = [b.float() / 255.0 if b.dtype == torch.uint8 else b.float().clone() for b in batches]
    b = xs[0].shape[0]
    if cfg.flips:
        flip = torch.rand(b, generator=gen) < 0.5
        for x in xs:
            x[flip] = x[flip].flip(-1)
    if cfg.rotations:
        k = torch.randint(0, 4, (b,), generator=gen)
        for r in (1, 2, 3):
            sel = k == r
            if sel.any():
                for x in xs:
                    x[sel] = torch.rot90(x[sel], r, (2, 3))
    if cfg.color_jitter > 0:
        j = cfg.color_jitter
        bright = 1 + j * (2 * torch.rand(b, 1, 1, 1, generator=gen) - 1)
        gain = 1 + 0.5 * j * (2 * torch.rand(b, 3, 1, 1, generator=gen) - 1)
        xs = [(x * bright * gain).clamp(0, 1) for x in xs]
    return xs
