"""Argument helpers shared by the ``cytomodel`` commands (data, device, ``--set``, input framing, output checks)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..data.intake import STAINS


def add_data_args(p: argparse.ArgumentParser, split_default: str | None = None) -> None:
    p.add_argument("--data", required=True, help="class-per-folder tree, a folder with manifest.csv, or a manifest CSV")
    p.add_argument("--split", default=split_default, help="manifest split to use (e.g. train); default: %(default)s")
    p.add_argument("--strict", action="store_true", help="fail on the first unreadable image instead of skipping it")


def add_device_arg(p: argparse.ArgumentParser, what: str = "the model runs") -> None:
    p.add_argument("--device", default=None, metavar="auto|cpu|cuda[:N]",
                   help=f"where {what} (default: auto = CUDA if present, else the CPU)")


def add_set_arg(p: argparse.ArgumentParser) -> None:
    """``--set a=1 b=2`` (several after one flag) and ``--set a=1 --set b=2`` (repeated) both work."""
    p.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="override config fields, several after one --set: --set max_steps=100 seed=1")


def add_intake_args(p: argparse.ArgumentParser) -> None:
    """``--um-per-px`` and ``--stain-normalisation``: how input images are brought to the model's framing."""
    g = p.add_argument_group("framing of the input images")
    g.add_argument("--um-per-px", type=float, default=None,
                   help="the images' pixel size in micrometres, if known (else measured from the red cells or the "
                   "white cell)")
    g.add_argument("--stain-normalisation", default="auto", choices=list(STAINS),
                   help="map the images' colours onto the training images' first: 'optical-density' (the set's "
                   "background and stain, measured over its images, mapped onto the training images'), 'auto' "
                   "(that, for a set lit unlike the training images; none otherwise), 'reinhard' (CIELAB mean "
                   "and spread) or 'none' (%(default)s)")


def add_classes_arg(p: argparse.ArgumentParser) -> None:
    """``--classes``: the candidate classes, e.g. only those another lab's data has."""
    p.add_argument("--classes", type=parse_classes, default=None, metavar="A,B,...",
                   help="choose only among these classes (comma-separated; default: all the model's), e.g. the "
                   "classes another lab's data holds; cells labelled otherwise are kept and left out of the metrics")


def parse_classes(text: str) -> list[str]:
    names = [c.strip() for c in str(text).split(",") if c.strip()]
    if not names:
        raise argparse.ArgumentTypeError("--classes needs at least one class name, comma-separated")
    return names


def check_out_suffix(path: str | Path, suffixes: tuple[str, ...], flag: str = "--out") -> None:
    """The CLI's wording of the library's output-suffix rule (which names no flag)."""
    if Path(path).suffix not in suffixes:
        raise ValueError(f"{flag} must end in {' or '.join(suffixes)}, got {Path(path).name}")
