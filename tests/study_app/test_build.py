"""Building a study: identical encoding for real and synthetic stimuli, manifest, model outputs, provenance, and
what a build refuses (overwriting answers, too few images, model and data that do not fit, a bad device)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from study_app.audit import png_chunks
from study_app.build import StudyBuildError, build_study, pad_stimulus, render_stimulus
from study_app.study import load_study


def test_manifest_roles_and_counts(built_study):
    st = load_study(built_study)
    m = st.manifest
    cfg = st.config
    main = m[m.role == "main"]
    n_cls = len(st.classes)
    assert st.classes == ["alpha", "beta", "gamma"]
    assert (main.source == "real").sum() == 2 * n_cls
    assert ((main.source == "synthetic") & (main.morph_strength == 1.0)).sum() == 2 * n_cls
    assert ((main.source == "synthetic") & (main.morph_strength == 0.5)).sum() == 2 * n_cls
    assert set(m.role) == {"main", "practice", "attention", "example"}
    assert (m[m.role == "example"].source == "real").all()
    for role, n in (("practice", cfg.stimuli.practice_per_source), ("attention", cfg.stimuli.attention_per_source)):
        assert m[m.role == role].source.value_counts().to_dict() == {"real": n, "synthetic": n}
    # real images are never reused across roles (a morph's source is not also shown as a real stimulus)
    real_origins = m.loc[m.source == "real", "origin"]
    assert real_origins.is_unique
    morph_origins = set(m.loc[(m.source == "synthetic") & (m.morph_strength < 1), "origin"])
    assert not morph_origins & set(real_origins)
    assert list(m.stimulus_id) == sorted(m.stimulus_id)      # manifest order = random id order


def test_every_stimulus_is_encoded_identically(built_study):
    st = load_study(built_study)
    sizes, layouts = set(), set()
    for r in st.manifest.itertuples():
        data = (built_study / r.file).read_bytes()
        sizes.add(len(data))
        chunks = png_chunks(data)
        layouts.add(tuple(chunks))
        assert {c for c, _ in chunks} <= {"IHDR", "IDAT", "IEND"}          # no text / colour-profile / time chunks
        with Image.open(built_study / r.file) as im:
            assert im.size == (96, 96) and im.mode == "RGB" and not im.info.get("icc_profile")
        assert r.file == f"stimuli/{r.stimulus_id}.png"
        assert len(r.stimulus_id) == 16 and all(ch in "0123456789abcdef" for ch in r.stimulus_id)
    assert len(sizes) == 1 and len(layouts) == 1


def test_real_images_take_the_generated_images_path(built_study, tiny_model_dir):
    """Re-rendering a real stimulus from the model's own preprocessing reproduces its file byte for byte."""
    from cytomodel.models import load_model
    st = load_study(built_study)
    model = load_model(tiny_model_dir)
    data_root = st.meta["provenance"]["data_source"]
    r = st.manifest[st.manifest.source == "real"].iloc[0]
    arr = model.preprocess(f"{data_root}/{r.origin}")
    assert pad_stimulus(render_stimulus(arr, 96, "bicubic"), st.meta["stimulus_bytes"]) == \
        (built_study / r.file).read_bytes()


def test_stimuli_are_compressed_losslessly_and_padded_to_one_size(built_study):
    """Every file has the one size of the set (the largest compact file + MIN_PADDING), smaller than the raw
    pixels; its padding is inside the compressed stream and the pixels decode exactly as rendered."""
    import io
    import zlib

    from study_app.build.render import MIN_PADDING, png_chunks as chunks_of

    st = load_study(built_study)
    size = st.meta["stimulus_bytes"]
    raw = 96 * (96 * 3 + 1)                                          # the filtered scanlines, uncompressed
    assert size < 0.9 * raw
    for r in st.manifest.itertuples():
        data = (built_study / r.file).read_bytes()
        assert len(data) == size
        d = zlib.decompressobj()
        pixels = d.decompress(dict(chunks_of(data))[b"IDAT"])
        assert d.eof and not d.unused_data and len(pixels) == raw    # one valid stream, nothing after it
    a = load_study(built_study).manifest.iloc[0]
    with Image.open(built_study / a.file) as im:
        arr = np.asarray(im.convert("RGB"))
    compact = render_stimulus(arr, 96, "bicubic")                   # the same pixels, encoded again
    padded = pad_stimulus(compact, len(compact) + MIN_PADDING + 1000)
    with Image.open(io.BytesIO(padded)) as im:
        assert (np.asarray(im) == arr).all()
    with pytest.raises(ValueError, match="at least"):
        pad_stimulus(compact, len(compact) + MIN_PADDING - 1)


def test_model_outputs_are_stored(built_study):
    st = load_study(built_study)
    m = st.manifest
    probs = m[[f"model_prob_{c}" for c in st.classes]]
    assert probs.notna().all().all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    assert m.model_pred_class.isin(st.classes).all()
    assert (m.model_confidence >= m.model_margin).all() and m.model_anomaly.notna().all()
    assert "diffusion classifier ran" in st.meta["classifier"]


def test_study_metadata_and_provenance(built_study):
    meta = json.loads((built_study / "study.json").read_text())
    assert meta["study_id"] == "tiny" and len(meta["content_hash"]) == 64 and len(meta["config_hash"]) == 64
    prov = meta["provenance"]
    assert prov["code_version"] and prov["data_hash"] and prov["config"]["stimuli"]["n_per_class"] == 2
    assert prov["model"]["stage"] == "base" and len(prov["model"]["weights_sha256"]) == 64
    assert prov["framing"]["source"] == "model crop_fraction (unchecked)" and prov["device"] == "cpu"
    assert meta["manifest_sha256"] == __import__("cytocore.provenance", fromlist=["x"]).sha256_file(
        built_study / "manifest.csv")
    audit = json.loads((built_study / "audit.json").read_text())
    assert audit["passed"] and audit["auroc"]["file"] == 0.5 and audit["constant_within_group"]["file"]
    assert audit["served_names_random"] and audit["n_permutations"] == 2000
    # above 0.6 only by chance (random orders on 22 stimuli), as the permutation test says
    for group, auroc in audit["auroc"].items():
        assert auroc <= 0.6 or audit["p_value"][group] >= 0.01, (group, audit)
    assert audit["n_real"] + audit["n_synthetic"] == 22         # the 3 labelled example cells are not audited
    assert set(audit["confounds"]["auroc"]) >= {"mean_r", "dark_area", "sharpness"}


def test_build_refuses_to_overwrite_a_study_with_answers(tiny_config, tiny_dataset, tiny_model_dir, tmp_path):
    dst = tmp_path / "s"
    dst.mkdir()
    (dst / "study.db").write_bytes(b"")
    with pytest.raises(StudyBuildError, match="study.db"):
        build_study(tiny_dataset, tiny_model_dir, dst, tiny_config(), overwrite=True)
    (dst / "study.db").unlink()
    (dst / "x").write_text("x")
    with pytest.raises(StudyBuildError, match="not empty"):
        build_study(tiny_dataset, tiny_model_dir, dst, tiny_config())


def test_build_refuses_to_overwrite_answers_in_a_database_elsewhere(study_copy, tiny_config, tiny_dataset,
                                                                     tiny_model_dir, tmp_path, monkeypatch):
    """The documented PostgreSQL set-up: the database is not in the folder (here: $CYTOSTUDY_DB_URL elsewhere)."""
    from study_app.bots import make_profile, run_bot
    from study_app.serve.session import StudyService
    monkeypatch.setenv("CYTOSTUDY_DB_URL", f"sqlite:///{tmp_path / 'elsewhere.db'}")
    svc = StudyService(study_copy)
    run_bot(svc, make_profile(svc), max_trials=2)
    svc.close()
    before = (study_copy / "manifest.csv").read_bytes()
    with pytest.raises(StudyBuildError, match="2 responses in sqlite:///.*elsewhere.db"):
        build_study(tiny_dataset, tiny_model_dir, study_copy, tiny_config(), overwrite=True)
    assert (study_copy / "manifest.csv").read_bytes() == before          # nothing was touched
    from study_app.build.guard import prepare_output
    monkeypatch.setenv("CYTOSTUDY_DB_URL", f"sqlite:///{tmp_path / 'fresh.db'}")   # no answers there: allowed
    prepare_output(study_copy, overwrite=True)
    kept = list((study_copy / "manifests").glob("*/manifest.csv"))
    assert [p.read_bytes() for p in kept] == [before]                    # the old version is archived
    assert sorted(p.name for p in study_copy.iterdir()) == ["manifests"]


def test_build_fails_when_there_are_too_few_real_images(tiny_config, tiny_dataset, tiny_model_dir, tmp_path):
    with pytest.raises(StudyBuildError, match="distinct"):
        build_study(tiny_dataset, tiny_model_dir, tmp_path / "s", tiny_config(**{"stimuli.n_per_class": 12}))


def test_build_refuses_a_model_whose_classes_do_not_match_the_data(tiny_config, tiny_dataset, tiny_model_dir,
                                                                   tmp_path):
    other = tmp_path / "other-data"
    for i, c in enumerate(("neutrophil", "eosinophil", "alpha")):
        shutil.copytree(tiny_dataset / sorted(p.name for p in tiny_dataset.iterdir() if p.is_dir())[i], other / c)
    with pytest.raises(StudyBuildError, match=r"share 1 class\(es\) \(\['alpha'\]\).*rename the data's class folders"):
        build_study(other, tiny_model_dir, tmp_path / "s", tiny_config())
    with pytest.raises(StudyBuildError, match=r"stimuli.classes \['delta'\] are not classes of the model"):
        build_study(tiny_dataset, tiny_model_dir, tmp_path / "s2", tiny_config(**{"stimuli.classes": ["alpha", "delta"]}))


def test_device_policy(tiny_model_dir):
    import torch
    from cytomodel.runtime import default_device

    from study_app.build import load_study_model, resolve_device
    assert resolve_device(None) == default_device()
    model = load_study_model(tiny_model_dir, "cpu")
    assert {p.device.type for p in model.unet.parameters()} == {"cpu"}
    with pytest.raises(StudyBuildError, match="not a torch device"):
        resolve_device("gpu")
    assert isinstance(resolve_device("cpu"), torch.device)
