"""Images in: labelled datasets (:mod:`.dataset`), the framing of a cell (:mod:`.framing`), the intake every
model input goes through (:mod:`.intake`) and how the training files were saved (:mod:`.encoding`). numpy, Pillow
and cytocore only (scipy, scikit-image and tqdm when a function needs them), so the study app imports it without the
model extra."""
from __future__ import annotations

from .dataset import (IMAGE_SUFFIXES, MANIFEST_NAMES, DataError, ImageArrays, ImageDecodeError, LabelledImage,
                      cache_dir, list_inputs, load_arrays, load_dataset, load_image, preprocess, scan_dataset,
                      to_rgb)
from .encoding import encode_like, measure_encoding
from .framing import FramedCell, FramingContract, FramingError, measure_contract
from .intake import FRAMED, Intake, frame_or_raise, framed_arrays, measure_training_framing

__all__ = ["IMAGE_SUFFIXES", "MANIFEST_NAMES", "DataError", "ImageArrays", "ImageDecodeError", "LabelledImage",
           "cache_dir", "list_inputs", "load_arrays", "load_dataset", "load_image", "preprocess", "scan_dataset",
           "to_rgb",
           "encode_like", "measure_encoding",
           "FramedCell", "FramingContract", "FramingError", "measure_contract",
           "FRAMED", "Intake", "frame_or_raise", "framed_arrays", "measure_training_framing"]
