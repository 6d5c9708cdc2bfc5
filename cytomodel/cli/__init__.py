"""``cytomodel`` command line: a thin layer over the package's functions, one module per command group (argument
parsing only): :mod:`.train` (train), :mod:`.generate` (generate, export, cascade), :mod:`.baseline` (baseline
train|predict), :mod:`.classify` (classify, calibrate, explain), :mod:`.evaluate` (evaluate, train-variant),
:mod:`.framing` (framing measure|show), :mod:`.triage` (triage), :mod:`.morphology_map` (map); shared argument
helpers in :mod:`.common`.

Building the parser imports no torch (``cytomodel --help`` is instant): the command modules hold cytomodel's
packages, which load a module when a command first uses one of its names. Every command that loads a model for work
takes ``--device`` (default auto: CUDA if present, else the CPU; :func:`cytomodel.runtime.resolve_device`)."""
from __future__ import annotations

import argparse
import logging
import sys

from .. import bundled_classifier_path, bundled_model_path
from ..data import DataError
from . import baseline, classify, distil, evaluate, framing, generate, morphology_map, train, triage


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cytomodel", description="Train, sample and evaluate a class-conditional "
                                     "diffusion model of blood cells.")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (train, generate, baseline, classify, distil, evaluate, framing, triage, morphology_map):
        group.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if getattr(args, "model", "unset") is None:    # classification commands default to the bundled classifier
        args.model = str(bundled_classifier_path() if getattr(args, "bundled", "") == "classifier"
                         else bundled_model_path())
    try:
        return args.func(args) or 0
    except (DataError, ValueError, FileNotFoundError) as exc:  # FramingError is a ValueError
        print(f"cytomodel {args.command}: error: {exc}", file=sys.stderr)
        return 2

