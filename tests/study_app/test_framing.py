"""Real images are cropped as the model's record says (source_framing), a contradicting config is refused, and a
cascade (base + super-resolution stage) builds a study whose real and generated cells share its resolution."""
from __future__ import annotations

import json
import shutil

import pytest

from study_app.build import StudyBuildError, build_study, pad_stimulus, render_stimulus
from study_app.build.framing import FramingError, resolve_framing
from study_app.study import load_study

PBC = {"source_framing": {"original_px": [360, 363], "crop_of_original": 0.6667, "training_px": [128, 128]}}


def test_the_crop_comes_from_the_record():
    f = resolve_framing([PBC], 1.0, {(360, 363)}, None)
    assert (f.crop_fraction, f.source) == (0.6667, "record")           # originals: the record's crop of them
    assert resolve_framing([PBC], 1.0, {(128, 128)}, None).crop_fraction == 1.0   # the training images themselves
    assert resolve_framing([{}, PBC], 0.9, {(360, 363)}, 0.6).crop_fraction == pytest.approx(0.6667 * 0.9)  # base
    assert resolve_framing([PBC], 1.0, {(360, 363)}, 0.667).crop_fraction == 0.6667    # agrees within 0.005


def test_a_crop_that_contradicts_the_record_is_refused():
    with pytest.raises(FramingError, match=r"real_crop_fraction = 1 does not match .* 360x363 px are cropped to 0.6667"):
        resolve_framing([PBC], 1.0, {(360, 363)}, 1.0)
    with pytest.raises(FramingError, match="a size the model's record does not know"):
        resolve_framing([PBC], 1.0, {(500, 500)}, None)
    assert resolve_framing([PBC], 1.0, {(500, 500)}, 0.5).source == "config"      # stated by the researcher
    with pytest.raises(FramingError, match="several framings"):
        resolve_framing([PBC], 1.0, {(360, 363), (128, 128)}, None)


def test_without_a_record_the_model_crop_is_used_unchecked():
    f = resolve_framing([{}], 0.8, {(40, 40)}, None)
    assert (f.crop_fraction, f.source) == (0.8, "model crop_fraction (unchecked)") and "not checked" in f.note


def test_build_refuses_a_crop_mismatch_before_any_work(tiny_config, tiny_dataset, tiny_model_dir, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    meta = json.loads((model / "cytomodel.json").read_text())
    meta["source_framing"] = {"original_px": [40, 40], "crop_of_original": 0.5, "training_px": [20, 20]}
    (model / "cytomodel.json").write_text(json.dumps(meta))
    with pytest.raises(StudyBuildError, match="stimuli.real_crop_fraction = 1 does not match the model's record"):
        build_study(tiny_dataset, model, tmp_path / "s", tiny_config(**{"stimuli.real_crop_fraction": 1.0}))
    assert not (tmp_path / "s" / "stimuli").exists()


def test_a_cascade_builds_a_study_at_its_resolution(tiny_config, tiny_dataset, tiny_cascade_dir, tmp_path):
    """The tiny cascade: a 16-px base and a 16 -> 32 px super-resolution stage. Real and generated stimuli are
    32-px cells from the same crop, resampled alike to the display size; the classifier runs on the 16-px base."""
    from cytomodel.models import load_generator
    cfg = tiny_config(**{"id": "cascade", "stimuli.superres_steps": 2, "stimuli.morph_strengths": [],
                         "stimuli.classifier": {"strategy": "exhaustive", "trials": 2, "image_batch": 64}})
    out = build_study(tiny_dataset, tiny_cascade_dir, tmp_path / "s", cfg)
    st = load_study(out)
    prov = st.meta["provenance"]
    assert prov["model_resolution"] == 32 and prov["superres_steps"] == 2
    assert prov["model"]["stage"] == "cascade" and set(prov["model"]["weights_sha256"]) == {"base", "superres"}
    assert "at 16 px" in st.meta["classifier"]                   # the base stage judges the cells
    assert st.manifest["model_pred_class"].isin(st.classes).all()
    sizes = {len((out / f).read_bytes()) for f in st.manifest.file}
    assert len(sizes) == 1 and st.meta["leak_audit"]["passed"]
    model = load_generator(tiny_cascade_dir)
    real = st.manifest[st.manifest.source == "real"].iloc[0]
    arr = model.preprocess(f"{prov['data_source']}/{real.origin}")
    assert arr.shape == (32, 32, 3)
    assert pad_stimulus(render_stimulus(arr, 96, "bicubic"), st.meta["stimulus_bytes"]) == \
        (out / real.file).read_bytes()                            # the same path, byte for byte


def test_build_refuses_a_real_cell_whose_window_runs_past_its_image(tiny_config, tiny_model_dir, tmp_path):
    """Crops cut close to their cells, framed like the model's training cells, need a window larger than the image;
    its margin would be flat background, which no generated cell has (a tell): refused, naming the file."""
    import numpy as np
    from cytomodel.data.framing import measure_contract
    from cytomodel.testing import TINY_CLASSES, make_smear

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    meta = json.loads((model / "cytomodel.json").read_text())
    fields = [make_smear(128, um_per_px=0.2, cell_um=float(np.random.default_rng(i).uniform(10, 14)), n_rbc=12,
                         seed=i) for i in range(40)]
    meta["framing"] = measure_contract(fields, training_px=(128, 128)).to_dict()
    (model / "cytomodel.json").write_text(json.dumps(meta))
    data = tmp_path / "crops"
    rng = np.random.default_rng(3)
    for c in TINY_CLASSES:
        (data / c).mkdir(parents=True)
        for j in range(12):
            um = float(rng.uniform(9, 15))
            make_smear(96, um_per_px=um / (0.9 * 96), cell_um=um, n_rbc=0, seed=100 * len(c) + j).save(
                data / c / f"{c}_{j:02d}.png")
    with pytest.raises(StudyBuildError, match=r"crops/.*\.png: framed like the model's training cells, its window "
                                              r"runs .* px past the image"):
        build_study(data, model, tmp_path / "s", tiny_config())
    assert not (tmp_path / "s" / "stimuli").exists()
