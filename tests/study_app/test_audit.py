"""The leak audit (browser-visible features, two-sided, permutation-tested) and the content-confound check: each
catches an injected leak or confound, neither cries wolf on an unchanged study, and the verdict does not depend on
the permutation seed."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from study_app.audit import confound_check, leak_audit
from study_app.audit.stats import aurocs, permutation_tests
from study_app.build import render_stimulus
from study_app.study import audit_population, load_study


def _copy(built_study, tmp_path):
    dst = tmp_path / "leaky"
    shutil.copytree(built_study, dst, ignore=shutil.ignore_patterns("study.db*", "exports"))
    return dst, audit_population(load_study(dst).manifest)


def test_rank_auroc_and_the_two_sided_permutation_test():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    X = np.c_[np.arange(8), -np.arange(8), np.ones(8)]          # perfect, perfectly reversed, constant
    np.testing.assert_allclose(aurocs(X, y), [1.0, 0.0, 0.5])
    t = permutation_tests(X, y, {"up": [0], "down": [1], "const": [2]}, ["up", "down", "const"], 500, 0)
    assert t["up"].auroc == t["down"].auroc == 1.0              # an AUROC below 0.5 separates just as well
    assert t["down"].direction == "synthetic lower" and t["const"].p_value == 1.0
    assert t["up"].p_value < 0.05 and t["up"].p_holm >= t["up"].p_value


def test_the_verdict_on_an_unchanged_study_does_not_depend_on_the_seed(built_study):
    m = audit_population(load_study(built_study).manifest)
    results = [leak_audit(m, built_study, seed=seed, n_permutations=2000) for seed in range(12)]
    assert all(r.passed for r in results)
    # Monte-Carlo error of 2000 permutations: SD <= 0.011 per raw p; Holm multiplies a raw p by up to the number of
    # groups (SD <= 0.022 here). The range of 12 draws stays under 7 SD unless the seed changes more than the draws.
    sd = len(results[0].auroc) * np.sqrt(0.25 / 2000)
    for g in results[0].auroc:
        ps = [r.p_value[g] for r in results]
        assert max(ps) - min(ps) < 7 * sd, (g, ps)


def test_leak_audit_catches_a_file_size_leak(built_study, tmp_path):
    dst, m = _copy(built_study, tmp_path)
    for r in m[m.source == "real"].itertuples():   # real images saved compressed: smaller files
        Image.open(dst / r.file).save(dst / r.file, compress_level=9)
    res = leak_audit(m, dst)
    assert not res.passed and res.auroc["file"] > 0.9, res.auroc


def test_leak_audit_catches_an_order_leak_in_either_direction(built_study, tmp_path):
    dst, m = _copy(built_study, tmp_path)
    for ascending in (True, False):   # all real first, or all real last, in the manifest
        leaky = m.sort_values("source", ascending=ascending).reset_index(drop=True)
        res = leak_audit(leaky, dst)
        assert not res.passed and res.auroc["order"] > 0.9, res.auroc


def test_leak_audit_catches_served_names_that_identify_the_image(built_study, monkeypatch):
    """Content-hash media URLs (Streamlit's own) would let anyone with the public images spot the real ones."""
    import hashlib

    import study_app.serve.media as media
    m = audit_population(load_study(built_study).manifest)
    assert leak_audit(m, built_study, n_permutations=200).url_problems == []
    first = m.iloc[0]
    data = (built_study / first.file).read_bytes()
    monkeypatch.setattr(media, "served_name", lambda: hashlib.sha256(data).hexdigest()[:24] + ".png")
    res = leak_audit(m, built_study, n_permutations=200)
    assert not res.passed and "SERVED NAMES IDENTIFY IMAGES" in res.summary()


def _recropped(built_study, tmp_path, crop_real: float, crop_other: float):
    """Real images only, half of them rendered at another crop and labelled "synthetic": a pure framing confound."""
    from cytomodel.data import load_image, preprocess

    st = load_study(built_study)
    dst = tmp_path / f"crop-{crop_real}-{crop_other}"
    (dst / "stimuli").mkdir(parents=True)
    data_root = st.meta["provenance"]["data_source"]
    files = sorted(str(p) for p in Path(data_root).glob("*/*.png"))[:24]
    rows = []
    for k, f in enumerate(files):
        crop = crop_real if k % 2 == 0 else crop_other
        arr = preprocess(load_image(f), 16, crop)
        (dst / "stimuli" / f"{k:04d}.png").write_bytes(render_stimulus(arr, 96, "bicubic"))
        rows.append({"stimulus_id": f"{k:04d}", "file": f"stimuli/{k:04d}.png", "role": "main",
                     "source": "real" if k % 2 == 0 else "synthetic", "morph_strength": 0.0 if k % 2 == 0 else 1.0})
    return dst, pd.DataFrame(rows)


def test_confound_check_sees_a_crop_mismatch_and_suggests_the_crop(built_study, tmp_path):
    dst, m = _recropped(built_study, tmp_path, crop_real=1.0, crop_other=0.6)
    res = confound_check(m, dst, crop_fraction=1.0, threshold=0.75)
    assert "dark_area" in res.flagged and not res.passed, res.summary()
    assert res.direction["dark_area"] == "synthetic higher"      # the tighter crop makes the cell bigger
    assert 0.45 < res.suggested_crop < 0.8, res.suggested_crop


def test_confound_check_stays_quiet_when_nothing_differs(built_study, tmp_path):
    dst, m = _recropped(built_study, tmp_path, crop_real=1.0, crop_other=1.0)
    res = confound_check(m, dst, crop_fraction=1.0, threshold=0.75)
    assert res.passed and not res.flagged, res.summary()
    assert res.auroc["dark_area"] < 0.8


def test_confound_check_reports_without_failing_by_default(built_study):
    m = audit_population(load_study(built_study).manifest)
    res = confound_check(m, built_study, crop_fraction=1.0, threshold=None, n_permutations=300)
    assert res.passed and set(res.auroc) == {"mean_r", "mean_g", "mean_b", "dark_r", "dark_g", "dark_b",
                                             "dark_area", "sharpness"}
