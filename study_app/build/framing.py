"""How real images are cropped: taken from the model's own record, and a mismatch refused.

A model's ``preprocessing.crop_fraction`` is relative to *its training images*. Those may themselves be crops of
larger original frames (the bundled PBC models: 240/360 centre crops of the 360x363 originals, resized to 128 px,
trained with ``crop_fraction = 1.0``). Data in the original framing then needs the product of both crops. The
record says so in ``source_framing`` (top level of ``cytomodel.json``; for a cascade, the cascade's record or its
base stage's)::

    "source_framing": {"original_px": [360, 363], "crop_of_original": 0.6667, "training_px": [128, 128]}

Real images whose size is ``original_px`` are cropped to ``crop_of_original * crop_fraction``; images of
``training_px`` to ``crop_fraction``; a ``stimuli.real_crop_fraction`` that disagrees with the record is refused.
Without ``source_framing`` the model's ``crop_fraction`` (or the configured value) is used unchecked, and the
content-confound check of the audit (dark-pixel area: nucleus size) is the remaining guard.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

TOLERANCE = 0.005


class FramingError(ValueError):
    """The crop for the real images cannot be taken from the model's record, or contradicts it."""


@dataclass(frozen=True)
class Framing:
    crop_fraction: float
    source: str          # "framing" (the model's measured framing), "record", "config" or "model crop_fraction
    note: str            # (unchecked)"
    intake: Any = None   # the model's cytomodel.intake.Intake when the source is "framing"

    def to_dict(self) -> dict[str, Any]:
        out = {"crop_fraction": self.crop_fraction, "source": self.source, "note": self.note}
        if self.intake is not None:
            out["plans"] = self.intake.plan_record()
        return out


def source_framing(*records: dict[str, Any]) -> dict[str, Any] | None:
    """The first ``source_framing`` entry among the model records given (cascade record, then base stage)."""
    for meta in records:
        sf = (meta or {}).get("source_framing")
        if sf:
            return sf
    return None


def _size(px) -> tuple[int, int] | None:
    return None if px is None else (int(px[0]), int(px[1]))


def expected_crop(sf: dict[str, Any] | None, model_crop: float, size: tuple[int, int]) -> float | None:
    """The crop the record implies for images of ``size`` (w, h); None when the record does not know the size."""
    if sf is None:
        return model_crop
    if _size(sf.get("original_px")) == size:
        return round(float(sf["crop_of_original"]) * model_crop, 6)
    if _size(sf.get("training_px")) == size:
        return model_crop
    return None


def resolve_framing(records: Iterable[dict[str, Any]], model_crop: float, image_sizes: Iterable[tuple[int, int]],
                    configured: float | None, data: str = "the data") -> Framing:
    """The crop for real images of ``image_sizes`` (see the module docstring), or :class:`FramingError`."""
    sf = source_framing(*records)
    sizes = sorted(set(image_sizes))
    wanted = {sz: expected_crop(sf, model_crop, sz) for sz in sizes}
    known = {v for v in wanted.values() if v is not None}
    shown = ", ".join(f"{w}x{h}" for w, h in sizes)
    if len(known) > 1:
        raise FramingError(f"the real images in {data} come in several framings ({shown}) that the model's record "
                           f"crops differently ({sorted(known)}); use images of one size")
    if sf is None:
        crop = model_crop if configured is None else configured
        return Framing(crop, "config" if configured is not None else "model crop_fraction (unchecked)",
                       "the model's record has no source_framing: the crop is not checked against it")
    record = (f"source_framing: originals {sf.get('original_px')} cropped to {sf.get('crop_of_original')}, "
              f"training images {sf.get('training_px')}; crop_fraction {model_crop:g} of the training images")
    if not known:
        if configured is None:
            raise FramingError(
                f"the real images in {data} are {shown} px, a size the model's record does not know ({record}). "
                "Set stimuli.real_crop_fraction to the centre crop of your images that frames a cell as the "
                "model's training images did, and check the audit's content-confound report")
        return Framing(configured, "config", f"images of {shown} px are not in the model's record; {record}")
    crop = known.pop()
    if configured is not None and abs(configured - crop) > TOLERANCE:
        raise FramingError(
            f"stimuli.real_crop_fraction = {configured:g} does not match the model's record: images of {shown} px "
            f"are cropped to {crop:g} ({record}). Remove stimuli.real_crop_fraction (or the crop-fraction "
            "argument) to use the record's crop")
    return Framing(crop, "record", record)
