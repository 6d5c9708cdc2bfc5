"""Framing: bring any cell image — a CellaVision original, another scanner's crop, a pre-cropped training copy — to
the framing of the model's training cells before anything else sees it.

A model records how its training cells were framed (:class:`FramingContract`, ``framing`` in ``cytomodel.json``
and ``baseline.json``): how many red-cell diameters and white-cell diameters its window spans, measured on its own
training images by :func:`measure_contract`, and how precisely those measurements come out on them. For an input
image, :func:`frame_image`

1. finds the white cell (or platelet clump): optical density over the image's own background, three-level Otsu;
   the darkest level's blobs grouped into cells, the group nearest the centre taken — no cell, two cells at the
   centre, or a cell cut by the border is reported, never guessed;
2. measures the scale: from ``um_per_px`` when the lab knows it; otherwise from the red cells (~7.5 µm, round,
   around almost every white cell: the median diameter of the isolated round ones); otherwise from the white
   cell's own size (which loses part of the size difference between cell types: the row says so);
3. keeps the images exactly as the training copies were cut when their size is one the record knows (the training
   images' own, or the originals' of ``source_framing``) and the set's measurements agree with that framing within
   what the training images' spread allows, so a pre-cropped copy and its original give the training pixels;
   otherwise cuts a square centred on the cell, of the side the scale gives, filled with the image's background
   colour where the window reaches past the image (a reflection would mirror the cell itself into the window of an
   image cut close to its cell), and resizes it (Lanczos).

The scale is planned per set (:func:`plan_scale`: all images of one size from one source share a magnification), from
the median over its cells; a single cell's size says more about its type than about the magnification.

Each result says what was done (:class:`FramedCell`: status, rule, centre, window, scale, red-cell count).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np
from PIL import Image

from .cell_mask import cell_region, optical_density
from .dataset import preprocess
from .stain import StainStatistics, at_stain_px, image_background, measure_stain

RBC_UM = 7.5            # red-cell diameter used to turn µm per pixel into a window
WORK_PX = 192           # short side of the working copy the measurements run on
MIN_RBC = 3             # isolated round red cells needed to trust their median diameter
MIN_SET = 5             # cells of one image size measured before a known framing of that size can be overruled
CONTRAST = 1.35         # the cell's optical density over the red cells' below which no stained cell is taken as found

STAIN_SAMPLE = 4000     # training images the stain statistics are measured on (a uniform sample when more)

CUT_SHARE = 0.12        # share of the nucleus outline on the border beyond which the cell counts as cut off

STATUS_OK = "ok"
PROBLEMS = {
    "no_cell": "no white cell found (no stained object clearly darker than the red cells)",
    "two_cells": "two cells of similar size near the centre: crop each cell to its own image",
    "cut_by_border": "the cell's nucleus touches the image border: the cell is cut off",
    "bad_image": "the image cannot be framed",
}
#: the statuses of a cell that is framed (and classified): a cut cell is framed, its row says it is cut
FRAMED_STATUSES = (STATUS_OK, "cut_by_border")


class FramingError(ValueError):
    """An image that cannot be framed, or an impossible framing setting; the message says which and what to do."""


@dataclass(frozen=True)
class FramingContract:
    """How a model's training cells were framed, measured on them (see the module docstring)."""
    window_rbc: float | None          # window side in red-cell diameters (median over training images)
    window_cell: float | None         # window side in white-cell diameters (median)
    rbc_log_sd: float = 0.0           # spread (sd of the log) of those ratios over the training images
    cell_log_sd: float = 0.0
    centre_tolerance: float = 0.0     # 97.5th percentile of the measured centre's offset, fraction of the window
    training_px: tuple[int, int] | None = None
    original_px: tuple[int, int] | None = None   # the originals the training images were cut from, if known
    crop_of_original: float | None = None
    n_images: int = 0
    rbc_found_share: float = 0.0      # isolated whole red cells found per training image
    # colour of the training images in CIELAB: the median of the per-image means and standard deviations (the
    # target of Reinhard stain normalisation), and the 0.5 / 99.5 % quantiles of the per-image means (what
    # "looks like the training data" means for a warning)
    lab_mean: tuple[float, float, float] | None = None
    lab_std: tuple[float, float, float] | None = None
    lab_mean_low: tuple[float, float, float] | None = None
    lab_mean_high: tuple[float, float, float] | None = None
    # light and stain of the training images (:class:`.stain.StainStatistics` as a dict): the target of
    # optical-density stain normalisation
    stain: dict[str, Any] | None = None
    # per training class, log of the window the white-cell rule gives a set of that class alone, relative to the
    # training window (:func:`class_offsets`): how far a set's median white cell can lie from the training median
    # by its mix of cell types alone, at the training magnification
    cell_class_offsets: dict[str, float] | None = None

    @property
    def stain_statistics(self) -> StainStatistics | None:
        return StainStatistics.from_dict(self.stain)

    @property
    def cell_offset_range(self) -> tuple[float, float]:
        """(lowest, highest) of :attr:`cell_class_offsets` and 0 (a set of the training mix); (0, 0) without them."""
        offsets = list((self.cell_class_offsets or {}).values())
        return min([0.0, *offsets]), max([0.0, *offsets])

    @property
    def window_um(self) -> float | None:
        return None if self.window_rbc is None else self.window_rbc * RBC_UM

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None, source_framing: dict[str, Any] | None = None
                  ) -> "FramingContract | None":
        """From a model record's ``framing`` (and ``source_framing``, the older record of the originals' crop)."""
        if not d and not source_framing:
            return None
        d = dict(d or {})
        sf = source_framing or {}
        for key in ("training_px", "original_px"):
            if d.get(key) is None and sf.get(key) is not None:
                d[key] = sf[key]
            if d.get(key) is not None:
                d[key] = tuple(int(v) for v in d[key])
        for key in ("lab_mean", "lab_std", "lab_mean_low", "lab_mean_high"):
            if d.get(key) is not None:
                d[key] = tuple(float(v) for v in d[key])
        if d.get("crop_of_original") is None and sf.get("crop_of_original") is not None:
            d["crop_of_original"] = float(sf["crop_of_original"])
        d.setdefault("window_rbc", None)
        d.setdefault("window_cell", None)
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class CellMeasurement:
    """What :func:`measure_cell` finds in one image (pixels of the input image)."""
    status: str
    centre: tuple[float, float] | None = None          # (x, y)
    cell_diameter: float | None = None                 # white cell (nucleus + cytoplasm), equivalent diameter
    rbc_diameter: float | None = None                  # median of the isolated round red cells (>= MIN_RBC)
    n_rbc: int = 0
    rbc_diameters: tuple[float, ...] = ()              # every isolated, round, whole red cell's diameter
    contrast: float = 0.0
    size: tuple[int, int] = (0, 0)                     # (w, h)


@dataclass
class FramedCell:
    """An image brought to the training framing, and how (one row of a results table)."""
    image: np.ndarray | None        # (out, out, 3) uint8, None when the image could not be framed
    status: str                     # "ok" or a key of PROBLEMS
    rule: str                       # how the window was chosen
    centre: tuple[float, float] | None = None
    window: float | None = None     # side of the window, input pixels
    scale: float | None = None      # output pixels per input pixel
    n_rbc: int = 0
    message: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    filled_px: float = 0.0          # output pixels of the widest band of the window beyond the image's border (filled
                                    # with its background colour; 0 where the window lies inside the image)

    def columns(self) -> dict[str, Any]:
        """The framing columns of a results table."""
        return {"framing_status": self.status, "framing_rule": self.rule,
                "framing_centre_x": None if self.centre is None else round(self.centre[0], 1),
                "framing_centre_y": None if self.centre is None else round(self.centre[1], 1),
                "framing_window_px": None if self.window is None else round(self.window, 1),
                "framing_scale": None if self.scale is None else round(self.scale, 4),
                "framing_red_cells": self.n_rbc, "framing_note": self.message}


# ============================================================================================== measuring
def _working_copy(img: Image.Image) -> tuple[np.ndarray, float]:
    w, h = img.size
    s = min(1.0, WORK_PX / min(w, h))
    if s < 1.0:
        img = img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(img, dtype=np.float64), s


def measure_cell(img: Image.Image) -> CellMeasurement:
    """Find the white cell nearest the centre, its size, and the red cells' diameter (see the module docstring)."""
    # scipy and scikit-image come with the model extra; data/ is imported without them (the study app)
    from scipy import ndimage as ndi
    from skimage.filters import threshold_multiotsu

    w, h = img.size
    rgb, s = _working_copy(img)
    H, W = rgb.shape[:2]
    if min(H, W) < 16:
        return CellMeasurement("bad_image", size=(w, h))
    od = optical_density(rgb)
    try:
        t_lo, t_hi = threshold_multiotsu(od, classes=3)
    except ValueError:  # a flat image
        return CellMeasurement("no_cell", size=(w, h))
    dark = ndi.binary_opening(od > t_hi, iterations=1)
    mid = (od > t_lo) & (od <= t_hi)
    contrast = float(od[dark].mean() / max(od[mid].mean(), 1e-6)) if dark.any() and mid.any() else 0.0
    if not dark.any() or contrast < CONTRAST:
        return CellMeasurement("no_cell", contrast=contrast, size=(w, h))
    # blobs of the darkest level, grouped into cells (a neutrophil's lobes are one cell)
    reach = max(1, int(round(0.06 * min(H, W))))
    groups, n = ndi.label(ndi.binary_dilation(dark, iterations=reach))
    idx = np.arange(1, n + 1)
    area = ndi.sum(dark, groups, idx)
    com = np.array(ndi.center_of_mass(dark, groups, idx)).reshape(-1, 2)
    dist = np.hypot(com[:, 0] - (H - 1) / 2, com[:, 1] - (W - 1) / 2) / min(H, W)
    keep = area >= max(6.0, 0.002 * H * W)
    if not keep.any():
        return CellMeasurement("no_cell", contrast=contrast, size=(w, h))
    score = np.where(keep, area / (1 + (dist / 0.2) ** 2), -1)
    order = np.argsort(-score)
    best = order[0]
    # a field of red cells alone: the darkest level is the red cells themselves — much of the image, in many blobs
    # as large as the biggest blob of the chosen "cell"
    blobs, n_blobs = ndi.label(dark)
    blob_area = ndi.sum(dark, blobs, np.arange(1, n_blobs + 1))
    own = np.unique(blobs[(groups == idx[best]) & dark])
    biggest = blob_area[own[own > 0] - 1].max()
    if dark.mean() > 0.15 and (blob_area >= 0.5 * biggest).sum() >= 6:
        return CellMeasurement("no_cell", contrast=contrast, size=(w, h))
    if len(order) > 1 and keep[order[1]]:
        second = order[1]
        if area[second] >= 0.5 * area[best] and dist[best] < 0.2 and dist[second] < 0.25:
            return CellMeasurement("two_cells", contrast=contrast, size=(w, h))
    nucleus = (groups == idx[best]) & dark
    cy, cx = com[best]
    # cut off: a real share of the nucleus's outline runs along the border (a lobe touching it is not)
    on_border = nucleus[0].sum() + nucleus[-1].sum() + nucleus[:, 0].sum() + nucleus[:, -1].sum()
    outline = math.pi * 2 * math.sqrt(nucleus.sum() / math.pi)
    status = "cut_by_border" if on_border > CUT_SHARE * outline else STATUS_OK
    cell_d, cell = cell_region(od, t_lo, nucleus)
    # a red cell (7.5 µm) is 0.3-1.0 times a white cell (8-20 µm) across: smaller blobs are platelets or debris
    rbcs = [d for d in _red_cells(od, t_lo, t_hi, cell) if cell_d is None or 0.3 <= d / cell_d <= 1.0]
    rbc_d = float(np.median(rbcs)) if len(rbcs) >= MIN_RBC else None
    return CellMeasurement(status, centre=((cx + 0.5) / s - 0.5, (cy + 0.5) / s - 0.5),
                           cell_diameter=None if cell_d is None else cell_d / s,
                           rbc_diameter=None if rbc_d is None else rbc_d / s, n_rbc=len(rbcs),
                           rbc_diameters=tuple(d / s for d in rbcs), contrast=contrast, size=(w, h))


def _red_cells(od: np.ndarray, t_lo: float, t_hi: float, cell: np.ndarray) -> list[float]:
    """Equivalent diameters of the red cells that are whole (not cut by the border), isolated (touching neither
    the white cell nor each other) and round."""
    # scipy and scikit-image: model extra only (see measure_cell)
    from scipy import ndimage as ndi
    from skimage.measure import regionprops

    H, W = od.shape
    rbc = ndi.binary_fill_holes(ndi.binary_opening((od > t_lo) & (od <= 1.15 * t_hi), iterations=1))
    lab, _ = ndi.label(rbc)
    touching = np.unique(lab[ndi.binary_dilation(cell, iterations=2)])
    sizes = []
    for r in regionprops(lab):
        if r.label in touching:
            continue
        y0, x0, y1, x1 = r.bbox
        if y0 == 0 or x0 == 0 or y1 == H or x1 == W:
            continue
        d = r.equivalent_diameter_area
        if not 0.03 * min(H, W) <= d <= 0.45 * min(H, W):
            continue
        if r.solidity < 0.9 or r.axis_minor_length < 0.75 * r.axis_major_length:
            continue
        sizes.append(float(d))
    return sizes


# ============================================================================================== the contract
MIN_CLASS_CELLS = 10    # measured cells of a class needed for its offset (:func:`class_offsets`)


def class_offsets(cell_ratio: Sequence[float], labels: Sequence[str | None], window_cell: float
                  ) -> dict[str, float]:
    """Per class, log(window_cell / the class's median image side ÷ white-cell diameter): the log of the window the
    white-cell rule (:func:`plan_scale`) gives a set of that class alone at the training magnification, relative to
    the training window — monocytes are larger than the median white cell (> 0), lymphocytes and platelets smaller
    (< 0).  Classes with fewer than ``MIN_CLASS_CELLS`` measured cells are left out."""
    by: dict[str, list[float]] = {}
    for r, label in zip(cell_ratio, labels):
        if label:   # None or "": an unlabelled image
            by.setdefault(str(label), []).append(r)
    return {c: round(float(np.log(window_cell) - np.median(np.log(v))), 4) + 0.0   # + 0.0: no "-0.0"
            for c, v in sorted(by.items()) if len(v) >= MIN_CLASS_CELLS}


def measure_contract(images: Sequence[Image.Image], training_px: tuple[int, int] | None = None,
                     original_px: tuple[int, int] | None = None, crop_of_original: float | None = None,
                     progress: bool = False, labels: Sequence[str | None] | None = None) -> FramingContract:
    """The framing of these (training) images: the window in red-cell and white-cell diameters (medians) with their
    spread, and how far the found cell sits from the centre (97.5th percentile).  With ``labels`` (one per image),
    also each class's offset of the white-cell size (:func:`class_offsets`)."""
    rbc_ratio, cell_ratio, offsets, lab_means, lab_stds, pixels = [], [], [], [], [], []
    cell_labels: list[str | None] = []
    label_of = iter(labels) if labels is not None else None
    reservoir = np.random.default_rng(0)
    n = 0
    iterator = images
    if progress:
        from tqdm.auto import tqdm  # model extra only; data/ is imported without it
        iterator = tqdm(images, desc="measuring the framing", unit="img")
    for img in iterator:
        m = measure_cell(img)
        label = next(label_of) if label_of is not None else None
        n += 1
        mean, std = lab_statistics(img)
        if len(pixels) < STAIN_SAMPLE:  # a uniform sample of the images (reservoir), for the stain statistics
            pixels.append(at_stain_px(img))
        elif (j := int(reservoir.integers(0, n))) < STAIN_SAMPLE:
            pixels[j] = at_stain_px(img)
        lab_means.append(mean)
        lab_stds.append(std)
        if m.status not in FRAMED_STATUSES or m.centre is None:
            continue
        side = min(m.size)
        offsets.append(_offset(m, side))
        rbc_ratio += [side / d for d in m.rbc_diameters]  # pooled over images: a small crop shows one or two
        if m.cell_diameter:
            cell_ratio.append(side / m.cell_diameter)
            cell_labels.append(label)
    if not offsets:
        raise FramingError("no cell was found in any of the images measured for the framing contract")

    def summary(ratios: list[float], least: int) -> tuple[float | None, float]:
        if len(ratios) < least:
            return None, 0.0
        logs = np.log(np.asarray(ratios))
        centre = float(np.median(logs))
        robust_sd = 1.4826 * float(np.median(np.abs(logs - centre)))  # a few failed measurements must not widen it
        return round(float(np.exp(centre)), 4), round(robust_sd, 4)

    window_rbc, rbc_sd = summary(rbc_ratio, 30)
    window_cell, cell_sd = summary(cell_ratio, 10)
    means, stds = np.asarray(lab_means), np.asarray(lab_stds)

    def triple(v) -> tuple[float, float, float]:
        return tuple(round(float(x), 3) for x in v)

    return FramingContract(window_rbc=window_rbc, window_cell=window_cell, rbc_log_sd=rbc_sd, cell_log_sd=cell_sd,
                           centre_tolerance=round(float(np.quantile(offsets, 0.975)), 4),
                           training_px=training_px, original_px=original_px, crop_of_original=crop_of_original,
                           n_images=n, rbc_found_share=round(len(rbc_ratio) / max(n, 1), 4),
                           lab_mean=triple(np.median(means, 0)), lab_std=triple(np.median(stds, 0)),
                           lab_mean_low=triple(np.quantile(means, 0.005, 0)),
                           lab_mean_high=triple(np.quantile(means, 0.995, 0)),
                           stain=_stain_record(pixels),
                           cell_class_offsets=(class_offsets(cell_ratio, cell_labels, window_cell) or None)
                           if labels is not None and window_cell else None)


def _stain_record(pixels: list[np.ndarray]) -> dict[str, Any] | None:
    try:
        return measure_stain(pixels).to_dict()
    except ValueError:  # unstained images: the record says nothing, and optical-density normalisation is refused
        return None


def lab_statistics(img: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of an image in CIELAB (on a working copy)."""
    from skimage.color import rgb2lab  # scikit-image: model extra only

    rgb, _ = _working_copy(img)
    lab = rgb2lab(rgb / 255.0).reshape(-1, 3)
    return lab.mean(0), lab.std(0)


def reinhard(image: np.ndarray, contract: FramingContract,
             source: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Reinhard et al. (2001) colour transfer in CIELAB: the source's mean and spread mapped onto the training
    images' (``contract.lab_mean`` / ``lab_std``). ``source``: the (mean, std) of the set the image comes from — a
    lab's stain shifts all its images alike, and per-image statistics would erase what differs between cell types
    (a platelet's field is mostly background); default the image's own. (H, W, 3) uint8 in and out."""
    from skimage.color import lab2rgb, rgb2lab  # scikit-image: model extra only

    if contract.lab_mean is None or contract.lab_std is None:
        raise FramingError("the model's framing record has no colour statistics: re-measure it "
                           "(`cytomodel framing`) to use stain normalisation")
    lab = rgb2lab(np.asarray(image, dtype=np.float64) / 255.0)
    if source is None:
        flat = lab.reshape(-1, 3)
        source = (flat.mean(0), flat.std(0))
    mean, std = np.asarray(source[0]), np.maximum(np.asarray(source[1]), 1e-3)
    out = (lab - mean) / std * np.asarray(contract.lab_std) + np.asarray(contract.lab_mean)
    rgb = lab2rgb(out)
    return np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _offset(m: CellMeasurement, window: float) -> float:
    """How far the found cell sits from the image centre, as a fraction of ``window``."""
    w, h = m.size
    return math.hypot(m.centre[0] - (w - 1) / 2, m.centre[1] - (h - 1) / 2) / window


# ============================================================================================== the scale of a set
@dataclass(frozen=True)
class Scale:
    """The window for images of one size from one source: its side as a fraction of the image's short side."""
    window_fraction: float | None     # None: keep the known framing (see ``rule``)
    rule: str
    n: int                            # images it was measured on
    cell_spread: float | None = None  # robust log-SD of the white cells' size over the set (image side / diameter)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def known_window(contract: FramingContract, size: tuple[int, int], crop_fraction: float
                 ) -> tuple[float, str] | None:
    """(window fraction, rule) of a framing the record knows for images of ``size``: a CellaVision-style original
    (``original_px``, cut to ``crop_of_original``) or the training images' own size."""
    if contract.original_px is not None and contract.crop_of_original and tuple(size) == tuple(contract.original_px):
        return contract.crop_of_original * crop_fraction, "as the training originals"
    if contract.training_px is not None and tuple(size) == tuple(contract.training_px):
        return crop_fraction, "as the training images"
    return None


def plan_scale(measurements: Sequence[CellMeasurement], contract: FramingContract, crop_fraction: float = 1.0,
               um_per_px: float | None = None) -> Scale:
    """One window for a set of images of one size from one source (one scanner: one magnification), from the median
    of their measurements. A known framing for their size is kept when the measurements agree with it within what
    the training images' spread allows for this many images; ``um_per_px`` overrides the measurements."""
    found = [m for m in measurements if m.status in FRAMED_STATUSES]
    size = measurements[0].size if measurements else (0, 0)
    side = min(size) if measurements else 1
    if um_per_px is not None:
        _check_um_per_px(um_per_px)
        if contract.window_um is None:
            raise FramingError("um_per_px was given but the model's record has no red-cell scale to compare it with")
        return Scale(contract.window_um / um_per_px * crop_fraction / side, "scale from um_per_px", len(found))
    rbc = [side / d for m in found for d in m.rbc_diameters]
    cell = [side / m.cell_diameter for m in found if m.cell_diameter]
    spread = _robust_log_sd(cell) if len(cell) >= MIN_SET else None
    measured, sd, rule, n = None, 0.0, "", 0
    # the red cells when the set shows enough of them (pooled over its images), else the white cells' size
    if contract.window_rbc is not None and len(rbc) >= max(MIN_RBC, min(10, 2 * len(found))):
        measured = contract.window_rbc / float(np.exp(np.median(np.log(rbc))))
        sd, rule, n = contract.rbc_log_sd, "scale from red cells", len(rbc)
    elif contract.window_cell is not None and cell:
        measured = contract.window_cell / float(np.exp(np.median(np.log(cell))))
        sd, rule, n = contract.cell_log_sd, "scale from white-cell size", len(cell)
    known = known_window(contract, size, crop_fraction)
    if known is not None:
        fraction, how = known
        if n < MIN_SET:  # one cell's size says more about its type than about the magnification
            return Scale(None, how, len(found), spread)
        # the known framing stands unless the set's median is off by more than its sampling error allows — and, for
        # the white cells' size, by more than its mix of cell types can move it: a set of monocytes alone, or of
        # platelets, is not at another magnification (the training classes' offsets, where the record has them)
        tolerance = max(0.1, 2.5 * 1.25 * sd / math.sqrt(n))
        low, high = contract.cell_offset_range if rule == "scale from white-cell size" else (0.0, 0.0)
        if measured is None or low - tolerance <= math.log(measured * crop_fraction / fraction) <= high + tolerance:
            return Scale(None, how, len(found), spread)
    if measured is None:
        return Scale(None, "no scale", len(found), spread)
    return Scale(measured * crop_fraction, rule, n, spread)


def _robust_log_sd(values: Sequence[float]) -> float:
    logs = np.log(np.asarray(values, float))
    return round(1.4826 * float(np.median(np.abs(logs - np.median(logs)))), 4)


def cropped_per_cell(scale: Scale, contract: FramingContract) -> bool:
    """Whether a set's white cells are all about one size in their images, much more alike than the training
    images' cells (less than half their spread, over >= 20 images): crops cut to each cell's own bounding box, or
    one cell type. In such crops a cell's size no longer tells the magnification (a lymphocyte fills the image as a
    neutrophil does), so a scale taken from the white cells is unreliable (the intake warns when it used one)."""
    return (scale.cell_spread is not None and contract.cell_log_sd and scale.n >= 20
            and scale.cell_spread < 0.5 * contract.cell_log_sd)


def _check_um_per_px(um_per_px: float) -> None:
    if not 0.01 <= um_per_px <= 5.0:
        raise FramingError(f"um_per_px={um_per_px:g} is not a microscope pixel size (0.01-5 µm per pixel; "
                           "CellaVision images are about 0.1)")


# ============================================================================================== framing
def frame_image(img: Image.Image, contract: FramingContract | None, out_px: int, crop_fraction: float = 1.0,
                scale: Scale | None = None, measurement: CellMeasurement | None = None,
                um_per_px: float | None = None, name: str = "<image>") -> FramedCell:
    """Bring ``img`` (RGB) to the contract's framing at ``out_px`` (see the module docstring).

    ``scale`` is the window planned for the set this image belongs to (:func:`plan_scale`); without it the image
    is its own set. Without a contract the image is centre-cropped to ``crop_fraction`` (rule ``centre crop``).
    """
    w, h = img.size
    if contract is None:
        return _cut(img, ((w - 1) / 2, (h - 1) / 2), crop_fraction * min(w, h), out_px, "centre crop (the model "
                    "records no framing)", name, exact=True)
    m = measurement or measure_cell(img)
    if m.status not in FRAMED_STATUSES:
        return FramedCell(None, m.status, "not framed", m.centre, n_rbc=m.n_rbc, message=PROBLEMS[m.status])
    if scale is None:
        scale = plan_scale([m], contract, crop_fraction, um_per_px)
    if scale.window_fraction is None:
        known = known_window(contract, (w, h), crop_fraction)
        if known is None and contract.window_rbc is None and contract.window_cell is None:
            return _cut(img, ((w - 1) / 2, (h - 1) / 2), crop_fraction * min(w, h), out_px, "centre crop (the "
                        "model records no measured framing)", name, exact=True, n_rbc=m.n_rbc)
        if known is None:
            return FramedCell(None, "no_scale", "not framed", m.centre, n_rbc=m.n_rbc,
                              message="no scale: neither red cells nor the white cell could be measured, and the "
                              "image size is not one the model knows; pass um_per_px")
        # a set framed as the training images were is cut exactly as they were: centred on the image, as the
        # training pipeline did (re-centring on the found cell would change training copies)
        cell = _cut(img, ((w - 1) / 2, (h - 1) / 2), known[0] * min(w, h), out_px, scale.rule, name, exact=True,
                    n_rbc=m.n_rbc)
        if _offset(m, known[0] * min(w, h)) > max(contract.centre_tolerance, 0.02):
            cell.message = "the cell sits further from the centre than in the training images"
        return cell
    side = scale.window_fraction * min(w, h)
    return _cut(img, m.centre, side, out_px, "centred, " + scale.rule, name, exact=False, n_rbc=m.n_rbc)


def _cut(img: Image.Image, centre: tuple[float, float], side: float, out_px: int, rule: str, name: str,
         exact: bool, n_rbc: int = 0) -> FramedCell:
    """The square window of ``side`` input pixels about ``centre``, resized to ``out_px``. ``exact``: the integer
    centre crop of the training pipeline (:func:`~cytomodel.data.dataset.preprocess`); otherwise a sub-pixel window
    filled with the image's background colour beyond its border."""
    w, h = img.size
    if exact:
        arr = preprocess(img, out_px, side / min(w, h), name=name)
        scale = out_px / int(round(side))
        return FramedCell(arr, STATUS_OK, rule, centre, side, scale, n_rbc)
    arr, filled_px = _window(img, centre, side, out_px)
    return FramedCell(arr, STATUS_OK, rule, centre, side, out_px / side, n_rbc, filled_px=filled_px)


def _window(img: Image.Image, centre: tuple[float, float], side: float, out_px: int) -> tuple[np.ndarray, float]:
    """Cut a square of ``side`` px centred at ``centre``; beyond the image's border, the image's background colour.
    Not a reflection: in an image cut close to its cell (a bounding-box crop, a high magnification) the reflection
    is the cell itself, mirrored around it — PBC val cells cut to their bounding boxes: the diffusion classifier
    0.796 reflected, 0.900 filled (docs/real-images.md, "Beyond the border"). Also returns the widest band of the
    window beyond the border, in output pixels (:attr:`FramedCell.filled_px`)."""
    w, h = img.size
    half = side / 2
    cx, cy = centre
    filled_px = max(0.0, half - cx - 0.5, half - cy - 0.5, cx + 0.5 + half - w, cy + 0.5 + half - h) * (out_px / side)
    pad = math.ceil(max(0.0, half - cx, half - cy, cx + half - (w - 1), cy + half - (h - 1))) + 2
    if pad > 2:  # the window and the resampling kernel's reach
        canvas = Image.new("RGB", (w + 2 * pad, h + 2 * pad), tuple(int(round(v)) for v in image_background(img)))
        canvas.paste(img, (pad, pad))
        img, cx, cy = canvas, cx + pad, cy + pad
    box = (cx + 0.5 - half, cy + 0.5 - half, cx + 0.5 + half, cy + 0.5 + half)
    arr = np.asarray(img.resize((out_px, out_px), Image.Resampling.LANCZOS, box=box), dtype=np.uint8)
    return arr, filled_px
