"""Building a study: identical encoding for real and synthetic stimuli, manifest, model outputs, leak audit."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from study_app.audit import leak_audit, png_chunks
from study_app.stimuli import StudyBuildError, audit_population, build_study, load_study, render_stimulus


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
    from cytomodel.model import load_model
    st = load_study(built_study)
    model = load_model(tiny_model_dir)
    data_root = st.meta["provenance"]["data_source"]
    r = st.manifest[st.manifest.source == "real"].iloc[0]
    arr = model.preprocess(f"{data_root}/{r.origin}")
    assert render_stimulus(arr, 96, "bicubic") == (built_study / r.file).read_bytes()


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
    audit = json.loads((built_study / "audit.json").read_text())
    assert audit["passed"] and audit["auroc"]["file"] == 0.5 and audit["constant_within_group"]["file"]
    # above 0.6 only by chance (random ids / orders on 25 stimuli), as the permutation test says
    for group, auroc in audit["auroc"].items():
        assert auroc <= 0.6 or audit["p_value"][group] >= 0.05, (group, audit)
    assert audit["n_real"] + audit["n_synthetic"] == 22         # the 3 labelled example cells are not audited


def _copy(built_study, tmp_path):
    dst = tmp_path / "leaky"
    shutil.copytree(built_study, dst)
    return dst, audit_population(load_study(dst).manifest)


def test_leak_audit_catches_a_file_size_leak(built_study, tmp_path):
    dst, m = _copy(built_study, tmp_path)
    for r in m[m.source == "real"].itertuples():   # real images saved compressed: smaller files
        Image.open(dst / r.file).save(dst / r.file, compress_level=9)
    res = leak_audit(m, dst, n_permutations=20)   # smallest p = 1/21 < 0.05
    assert not res.passed and res.auroc["file"] > 0.9, res.auroc


def test_leak_audit_catches_an_id_leak(built_study, tmp_path):
    dst, m = _copy(built_study, tmp_path)
    m = m.copy()
    m["stimulus_id"] = [("00" if s == "real" else "ff") + sid[2:] for s, sid in zip(m.source, m.stimulus_id)]
    res = leak_audit(m, dst, n_permutations=20)   # smallest p = 1/21 < 0.05
    assert not res.passed and res.auroc["url"] > 0.9, res.auroc


def test_leak_audit_catches_an_order_leak(built_study, tmp_path):
    dst, m = _copy(built_study, tmp_path)
    m = m.sort_values("source").reset_index(drop=True)   # all real first in the manifest
    res = leak_audit(m, dst, n_permutations=20)   # smallest p = 1/21 < 0.05
    assert not res.passed and res.auroc["order"] > 0.9, res.auroc


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


def test_build_fails_when_there_are_too_few_real_images(tiny_config, tiny_dataset, tiny_model_dir, tmp_path):
    with pytest.raises(StudyBuildError, match="distinct"):
        build_study(tiny_dataset, tiny_model_dir, tmp_path / "s", tiny_config(**{"stimuli.n_per_class": 12}))
