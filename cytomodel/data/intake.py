"""How any input image reaches a model: decoded, brought to the model's training framing (:mod:`.framing`) with
one scale per set of images of one size, and stain-normalised per set when the set is lit unlike the training images
(``stain="auto"``, the models' default; :mod:`.stain`) — the same code for every entry point
(classify, calibrate, explain, evaluate, baseline predict, generate ``--from-image``, ``cytostudy build``).

:class:`Intake` is that step for one model: built from the model's record (``framing`` / ``source_framing``, output
size, crop), it frames a list of images (:meth:`Intake.frame`), says how each was framed (:meth:`FramedCell.columns`)
and warns when the inputs look unlike the training data (:meth:`Intake.warnings`).
"""
from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from PIL import Image, ImageOps

from .dataset import DataError, load_image, scan_dataset
from .encoding import measure_encoding
from .framing import (STATUS_OK, FramedCell, FramingContract, FramingError, Scale, cropped_per_cell, frame_image,
                      known_window, lab_statistics, measure_cell, measure_contract, plan_scale, reinhard)
from .stain import (AUTO_DELTA_E, STAIN_PX, StainStatistics, background_difference, measure_stain,
                    normalise_stain)

log = logging.getLogger(__name__)

#: "auto": optical density for a set lit unlike the training images (background ΔE > AUTO_DELTA_E), none otherwise
STAINS = ("auto", "none", "reinhard", "optical-density")
PLAN_SAMPLE = 400        # images per size measured to plan a set's scale (evenly spread; all if fewer)
FRAMED = (STATUS_OK, "cut_by_border")   # statuses whose image goes on to the model


@dataclass
class Intake:
    """Framing settings of one model (see the module docstring)."""
    contract: FramingContract | None
    out_px: int
    crop_fraction: float = 1.0
    um_per_px: float | None = None
    stain: str = "none"
    plans: dict[tuple[int, int], Scale] = field(default_factory=dict)
    colours: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    stains: dict[tuple[int, int], StainStatistics] = field(default_factory=dict)
    stain_shift: dict[tuple[int, int], float] = field(default_factory=dict)   # "auto": background ΔE per set

    def __post_init__(self) -> None:
        if self.stain not in STAINS:
            raise ValueError(f"stain normalisation must be one of {', '.join(STAINS)}, not {self.stain!r}")
        target = None if self.contract is None else (self.contract.lab_mean if self.stain == "reinhard"
                                                      else self.contract.stain)
        if self.stain not in ("none", "auto") and target is None:
            raise FramingError(f"{self.stain} stain normalisation needs the colour statistics of the model's framing "
                               "record, which it lacks: measure it with `cytomodel framing measure --model DIR "
                               "--data TRAINING_DATA --split train`")

    @classmethod
    def for_record(cls, meta: dict[str, Any], out_px: int, crop_fraction: float = 1.0,
                   um_per_px: float | None = None, stain: str = "none") -> "Intake":
        return cls(contract_of(meta), out_px, crop_fraction, um_per_px, stain)

    def with_options(self, um_per_px: float | None = None, stain: str | None = None) -> "Intake":
        return replace(self, um_per_px=um_per_px if um_per_px is not None else self.um_per_px,
                       stain=stain or self.stain, plans={}, colours={}, stains={},
                       stain_shift={})

    # ------------------------------------------------------------------ planning
    def plan(self, sources: Sequence, progress: bool = False) -> dict[tuple[int, int], Scale]:
        """One scale per image size in ``sources`` (paths, bytes or PIL images), from up to PLAN_SAMPLE of each."""
        if self.contract is None:
            return {}
        by_size: dict[tuple[int, int], list] = {}
        for src in sources:
            size = _size_of(src)
            if size is not None:
                by_size.setdefault(size, []).append(src)
        iterator = by_size.items()
        for size, group in iterator:
            if size in self.plans:
                continue
            step = max(1, len(group) // PLAN_SAMPLE)
            opened = [(img, measure_cell(img)) for img in map(_open, group[::step][:PLAN_SAMPLE]) if img is not None]
            if not opened:
                continue
            self.plans[size] = plan_scale([m for _, m in opened], self.contract, self.crop_fraction, self.um_per_px)
            if self.stain != "none" and not (self.stain == "auto" and self.contract.stain is None):
                self._measure_colour(size, opened)
        return self.plans

    def _measure_colour(self, size: tuple[int, int], opened: list) -> None:
        """The set's colour, on its cells framed as the model will see them (optical density: at STAIN_PX, the
        size its target was measured at)."""
        px = self.out_px if self.stain == "reinhard" else STAIN_PX
        framed = []
        for img, m in opened:
            cell = frame_image(img, self.contract, px, self.crop_fraction, self.plans[size], m, self.um_per_px)
            if cell.image is not None:
                framed.append(cell.image)
        if not framed:
            return
        if self.stain == "reinhard":
            stats = [lab_statistics(Image.fromarray(im)) for im in framed]
            self.colours[size] = (np.median([a for a, _ in stats], 0), np.median([b for _, b in stats], 0))
            return
        try:
            stats = measure_stain(framed)
        except ValueError as exc:
            log.warning("images of %dx%d px: no stain measured (%s); they are not stain-normalised", *size, exc)
            return
        self.stains[size] = stats
        if self.stain == "auto":
            self.stain_shift[size] = round(background_difference(stats, self.contract.stain_statistics), 2)

    def _normalises(self, size: tuple[int, int]) -> bool:
        """Whether the set of images of this size is stain-normalised in optical density."""
        if size not in self.stains:
            return False
        return self.stain == "optical-density" or (self.stain == "auto" and self.stain_shift[size] > AUTO_DELTA_E)

    def plan_record(self) -> dict[str, Any]:
        out = {f"{w}x{h}": s.to_dict() for (w, h), s in sorted(self.plans.items())}
        for (w, h), (mean, std) in sorted(self.colours.items()):
            out[f"{w}x{h}"]["lab_mean"] = [round(float(v), 3) for v in mean]
            out[f"{w}x{h}"]["lab_std"] = [round(float(v), 3) for v in std]
        for (w, h), stats in sorted(self.stains.items()):
            out[f"{w}x{h}"]["stain"] = stats.to_dict()
            if (w, h) in self.stain_shift:
                out[f"{w}x{h}"]["stain"].update(background_delta_e=self.stain_shift[(w, h)],
                                                normalised=self._normalises((w, h)))
        return out

    # ------------------------------------------------------------------ framing
    def frame_one(self, source, name: str | None = None) -> FramedCell:
        """One image, framed with its set's plan (made now from this image alone if its size has none)."""
        name = name or (str(source) if isinstance(source, (str, Path)) else "<image>")
        img, note = _inspect(source)
        if img is None:
            return FramedCell(None, note[0], "not framed", message=note[1])
        m = measure_cell(img) if self.contract is not None else None
        scale = self.plans.get(img.size)
        try:
            cell = frame_image(img, self.contract, self.out_px, self.crop_fraction, scale=scale, measurement=m,
                               um_per_px=self.um_per_px, name=name)
        except FramingError:
            raise
        except ValueError as exc:  # e.g. an image smaller than the model's input
            return FramedCell(None, "bad_image", "not framed", message=str(exc))
        if m is not None and m.status == "cut_by_border":
            cell.status, cell.message = "cut_by_border", "the nucleus touches the border: the cell may be cut off"
        if cell.image is not None and self.stain == "reinhard":
            cell.image = reinhard(cell.image, self.contract, self.colours.get(img.size))
            cell.rule += ", Reinhard stain normalisation" + ("" if img.size in self.colours else " (per image)")
        elif cell.image is not None and self._normalises(img.size):
            cell.image = normalise_stain(cell.image, self.stains[img.size], self.contract.stain_statistics)
            cell.rule += ", optical-density stain normalisation" + (
                f" (auto: background ΔE {self.stain_shift[img.size]:.1f} from the training images')"
                if self.stain == "auto" else "")
        elif cell.image is not None and self.stain == "optical-density":  # one image alone, or no stain measured
            cell.message = "; ".join(x for x in (cell.message, "not stain-normalised: its stain is measured over a "
                                                 "set of images, and this one had none") if x)
        if note:
            cell.message = "; ".join(x for x in (cell.message, note[1]) if x)
        return cell

    def frame(self, sources: Sequence, names: Sequence[str] | None = None, progress: bool = False
              ) -> list[FramedCell]:
        """Every image of ``sources``, framed with one scale per image size (planned over all of them)."""
        sources = list(sources)
        self.plan(sources)
        out = []
        iterator: Iterable = range(len(sources))
        if progress:
            from tqdm.auto import tqdm  # model extra only; data/ is imported without it (the study app)
            iterator = tqdm(iterator, desc="framing", unit="img")
        for i in iterator:
            out.append(self.frame_one(sources[i], None if names is None else names[i]))
        return out

    def warnings(self, cells: Sequence[FramedCell], sources: Sequence | None = None) -> list[str]:
        """What a user should hear about these inputs: cells not found, a scale far from the training framing,
        colours outside the training images' range."""
        msgs = []
        n = len(cells)
        if not n and not sources:
            return msgs
        if self.contract is None:
            msgs.append("this model has no framing record: images are only resized, so cells framed unlike its "
                        "training images are misread; record it with `cytomodel framing measure --model DIR --data "
                        "TRAINING_DATA --split train`")
        bad = [c for c in cells if c.status not in FRAMED]
        if bad:  # (classify passes no cells: it reports each unframed image after the run)
            kinds = {}
            for c in bad:
                kinds[c.status] = kinds.get(c.status, 0) + 1
            msgs.append(f"{len(bad)} of {n} images could not be framed and are not classified ("
                        + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in sorted(kinds.items())) + ")")
        for (w, h), s in sorted(self.plans.items()):
            known = known_window(self.contract, (w, h), self.crop_fraction) if self.contract else None
            if s.window_fraction is not None:
                change = s.window_fraction / (known[0] if known else self.crop_fraction)
                msgs.append(f"images of {w}x{h} px are framed differently from the training images: the cell "
                            f"appears at {1 / change:.2f}x the scale the model knows ({s.rule}, from {s.n} images); "
                            "each row says how it was framed")
            if s.rule == "scale from white-cell size" and cropped_per_cell(s, self.contract):
                msgs.append(f"images of {w}x{h} px: the white cells are all about one size in their images (spread "
                            f"{s.cell_spread:.2f} vs {self.contract.cell_log_sd:.2f} in the training images) — crops "
                            "cut to each cell's own size, or a single cell type. Cell size then cannot tell the "
                            "magnification and small cells (lymphocytes) look as large as big ones: pass um_per_px "
                            "if it is known, or crop a fixed field around each cell")
            if s.rule == "no scale":
                msgs.append(f"images of {w}x{h} px: no scale could be measured; they were cut as the training images "
                            "were. Pass um_per_px if the cells look larger or smaller than the model's")
        if sources is not None and self.contract is not None and self.contract.lab_mean_low is not None:
            lo, hi = np.asarray(self.contract.lab_mean_low), np.asarray(self.contract.lab_mean_high)
            step = max(1, len(sources) // PLAN_SAMPLE)
            means = []
            for src in list(sources)[::step][:PLAN_SAMPLE]:
                img = _open(src)
                if img is not None:
                    means.append(lab_statistics(img)[0])
            if means:
                outside = np.mean([((m < lo) | (m > hi)).any() for m in means])
                if outside > 0.2:
                    done = any(self._normalises(size) for size in self.stains)
                    msgs.append(f"{outside:.0%} of the images have colours outside the range of the training "
                                "images (another stain, camera or lab): expect lower accuracy; "
                                + ("they were stain-normalised in optical density; validate on the lab's own "
                                   "labelled cells" if done else "consider a model trained with lab variation and "
                                   "stain normalisation (--stain-normalisation optical-density)"))
        return msgs


def framed_arrays(cells: Sequence[FramedCell], out_px: int) -> tuple[np.ndarray, list[int]]:
    """The images of the cells that were framed, stacked, and their positions in ``cells``."""
    keep = [i for i, c in enumerate(cells) if c.image is not None and c.status in FRAMED]
    if not keep:
        return np.zeros((0, out_px, out_px, 3), np.uint8), keep
    return np.stack([cells[i].image for i in keep]), keep


def frame_or_raise(intake: Intake, image) -> np.ndarray:
    """One image through ``intake``, or a DataError naming it and what was wrong."""
    name = str(image) if isinstance(image, (str, Path)) else "<image>"
    cell = intake.frame_one(image, name)
    if cell.image is None or cell.status not in FRAMED:
        raise DataError(f"{name}: {cell.message or cell.status}")
    return cell.image


def measure_training_framing(data, split: str | None = None, limit: int | None = None,
                             original_px: tuple[int, int] | None = None, crop_of_original: float | None = None,
                             progress: bool = False, holdout: str | None = None) -> dict[str, Any]:
    """The framing record of a model's training images (``framing`` in its record): measured on ``limit`` of them
    (every n-th, all when None), at their most common size, with how the files were saved (``encoding``,
    :mod:`.encoding`). ``original_px`` / ``crop_of_original`` say which originals they were cut from, when known;
    ``holdout``: a class the model was trained without, whose images are left out."""
    records = [r for r in scan_dataset(data, split=split) if holdout is None or r.label != holdout]
    if not records:
        raise DataError(f"{data}: no training images{f' outside class {holdout!r}' if holdout else ''} to measure")
    step = max(1, len(records) // limit) if limit else 1
    picked = records[::step][:limit] if limit else records
    sizes: dict[tuple[int, int], int] = {}
    for r in picked[:50]:
        size = load_image(r.path).size
        sizes[size] = sizes.get(size, 0) + 1
    contract = measure_contract((load_image(r.path) for r in picked), training_px=max(sizes, key=sizes.get),
                                original_px=original_px, crop_of_original=crop_of_original, progress=progress,
                                labels=[r.label for r in picked])
    return {**contract.to_dict(), "encoding": measure_encoding(r.path for r in picked), "data": str(data),
            "split": split, "images_measured": len(picked), **({"holdout_class": holdout} if holdout else {})}


def contract_of(meta: dict[str, Any]) -> FramingContract | None:
    """The framing contract of a model record (``framing``, completed by ``source_framing``), or None."""
    return FramingContract.from_dict(meta.get("framing"), meta.get("source_framing"))


def _open(source) -> Image.Image | None:
    return _inspect(source)[0]


def _inspect(source) -> tuple[Image.Image | None, tuple[str, str] | tuple]:
    """(RGB image or None, (status, message) or ()): unreadable and grey-scale images are refused (a model of stained
    cells has nothing to go on without colour); a 16-bit image is taken at 8 bits, with a note."""
    try:
        raw = Image.open(source) if isinstance(source, (str, Path)) else None
        mode = raw.mode if raw is not None else getattr(source, "mode", "RGB")
        if raw is not None:
            raw.close()
        img = load_image(source)
    except (DataError, OSError, ValueError) as exc:
        return None, ("unreadable", str(exc))
    if mode in ("L", "LA", "1", "I", "F", "I;16", "I;16B", "I;16L") and not mode.startswith("I;16"):
        return None, ("greyscale", f"a grey-scale image ({mode}): the model needs the stain's colours; give the "
                      "colour image")
    arr = np.asarray(img)
    if arr[..., 0].size and np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 1], arr[..., 2]):
        if mode.startswith("I;16"):
            return None, ("greyscale", "a 16-bit grey-scale image: the model needs the stain's colours")
        return None, ("greyscale", "a grey-scale image (R = G = B): the model needs the stain's colours; give the "
                      "colour image")
    if mode.startswith("I;16") or mode in ("I", "RGB;16", "RGBA;16"):
        return img, ("16-bit", f"a {mode} image, taken at 8 bits per channel")
    return img, ()


def _size_of(source) -> tuple[int, int] | None:
    if isinstance(source, Image.Image):
        return source.size
    try:
        if isinstance(source, (bytes, bytearray)):
            with Image.open(io.BytesIO(source)) as im:
                return im.size
        with Image.open(source) as im:
            return ImageOps.exif_transpose(im).size if im.getexif().get(0x0112) else im.size
    except (OSError, ValueError):
        return None
