"""Optical-density stain normalisation (cytomodel.data.stain) and its place in the intake. Another lab is drawn by
``make_smear``'s "rapid" palette — flat colours painted per structure, not a Beer–Lambert stain — so the check does
not share the method's own model of how stains differ."""
import numpy as np
import pytest
from PIL import Image

from cytomodel.data.framing import FramingContract, FramingError, measure_contract
from cytomodel.data.intake import Intake
from cytomodel.data.stain import (STAIN_PX, StainStatistics, at_stain_px, image_background, measure_stain,
                                  normalise_stain, od_map)
from cytomodel.testing import make_smear


def _fields(palette, seeds, size=128):
    return [make_smear(size, um_per_px=0.2, cell_um=float(np.random.default_rng(s).uniform(10, 14)), n_rbc=12,
                       seed=s, palette=palette) for s in seeds]


@pytest.fixture(scope="module")
def contract():
    return measure_contract(_fields("mgg", range(40)), training_px=(128, 128))


def test_a_set_normalised_onto_its_own_statistics_is_unchanged():
    imgs = [np.asarray(im) for im in _fields("mgg", range(6))]
    stats = measure_stain(imgs)
    np.testing.assert_allclose(od_map(stats, stats), np.eye(3), atol=1e-6)
    for im in imgs:
        assert np.abs(normalise_stain(im, stats, stats).astype(int) - im).max() <= 1


def test_another_labs_colours_are_brought_to_the_training_labs(contract):
    """The same fields (same seeds) in the other lab's palette end nearer the training palette's pixels. The palettes
    are not a linear map of optical density apart (measured: 20.3 → 13.7 levels; Reinhard, whose affine map in
    CIELAB suits flat palettes, reaches 6.8 here but lost 14 points on the real other lab whose background is
    yellow: docs/real-images.md), so the bound is loose; the background is exact."""
    seeds = range(100, 112)
    other = [np.asarray(im) for im in _fields("rapid", seeds)]
    ours = [np.asarray(im).astype(float) for im in _fields("mgg", seeds)]
    source = measure_stain(other)
    normalised = [normalise_stain(im, source, contract.stain_statistics) for im in other]
    before = np.mean([np.abs(o - t).mean() for o, t in zip(other, ours)])
    after = np.mean([np.abs(n - t).mean() for n, t in zip(normalised, ours)])
    assert after < 0.75 * before, (before, after)
    # the background is re-lit with the training images' own (the yellow lamp gone: blue 172 → 217); within 8
    # levels, as the brightest tenth of a noisy background lies above OD 0 and the map stretches that noise
    bg = np.median([image_background(n) for n in normalised], 0)
    np.testing.assert_allclose(bg, contract.stain_statistics.background, atol=8)


def test_a_set_of_the_same_stain_with_another_mix_of_cell_and_red_cells_is_left_alone():
    """Tight crops of large cells with few red cells (another lab's framing, or one cell type) against fields rich in
    red cells, all in one palette: over all stained pixels the two sets' moments differ (measured: ‖M − I‖ 1.30),
    per compartment in the training proportions they do not (0.06)."""
    import dataclasses

    def fields(n_rbc, cell_um, um_per_px, seeds):
        return [np.asarray(make_smear(128, um_per_px=um_per_px, cell_um=cell_um, n_rbc=n_rbc, seed=s, palette="mgg"))
                for s in seeds]

    rich = measure_stain(fields(14, 12.0, 0.2, range(20)))
    tight = measure_stain(fields(2, 16.0, 0.13, range(100, 120)))
    assert tight.shares["other"] < 0.1 < 0.5 < rich.shares["other"]
    per_compartment = np.linalg.norm(od_map(tight, rich) - np.eye(3))
    before = dataclasses.replace(tight, compartments={}, shares={})   # a record measured before compartments
    all_pixels = np.linalg.norm(od_map(before, rich) - np.eye(3))
    assert per_compartment < 0.15 < 0.8 < all_pixels, (per_compartment, all_pixels)


def test_statistics_are_taken_at_one_size_whatever_the_images():
    small = [np.asarray(im) for im in _fields("mgg", range(6), size=64)]
    assert at_stain_px(small[0]).shape == (STAIN_PX, STAIN_PX, 3)
    assert measure_stain(small).n_images == 6


def test_record_round_trip_and_bad_inputs(contract):
    stats = contract.stain_statistics
    assert StainStatistics.from_dict(stats.to_dict()).to_dict() == stats.to_dict()
    again = FramingContract.from_dict(contract.to_dict())
    assert again.stain_statistics.to_dict() == stats.to_dict()
    with pytest.raises(ValueError, match="od_moment"):
        StainStatistics.from_dict({"background": [1, 2, 3], "od_moment": [[1, 0], [0, 1]]})
    with pytest.raises(ValueError, match="compartment_shares"):
        StainStatistics.from_dict({**stats.to_dict(), "compartment_shares": {}})
    # a record measured before compartments (all stained pixels only) still reads, and is mapped that way
    old = StainStatistics.from_dict({k: v for k, v in stats.to_dict().items()
                                     if k not in ("compartments", "compartment_shares")})
    assert old.compartments == {} and np.allclose(od_map(old, stats), np.eye(3), atol=1e-6)
    with pytest.raises(ValueError, match="too few to measure a stain"):
        measure_stain([np.full((64, 64, 3), 240, np.uint8)] * 3)
    with pytest.raises(ValueError, match="RGB"):
        measure_stain([np.zeros((64, 64), np.uint8)])


def test_intake_normalises_per_set_and_says_so(contract):
    other = _fields("rapid", range(200, 210))
    intake = Intake(contract, 32, stain="optical-density")
    cells = intake.frame(other)
    assert all("optical-density stain normalisation" in c.rule for c in cells)
    assert "stain" in intake.plan_record()["128x128"]
    # the set's statistics are the set's: one image more or less does not change another's pixels
    alone = Intake(contract, 32, stain="optical-density")
    alone.frame(other[:9])
    assert np.abs(alone.frame_one(other[0]).image.astype(int) - cells[0].image).max() <= 3
    # an image of a size no set was planned for is framed, not normalised, and its row says why
    single = Intake(contract, 32, stain="optical-density").frame_one(make_smear(150, um_per_px=0.2, seed=7))
    assert single.image is not None and "not stain-normalised" in single.message
    assert "stain normalisation" not in single.rule


def test_a_model_without_stain_statistics_is_refused_with_the_command_to_measure_them():
    with pytest.raises(FramingError, match="cytomodel framing measure"):
        Intake(FramingContract(1.0, 1.0), 32, stain="optical-density")


def test_auto_normalises_only_a_set_lit_unlike_the_training_images(contract):
    ours = Intake(contract, 32, stain="auto")
    plain = Intake(contract, 32, stain="none")
    same_lab = _fields("mgg", range(300, 308))
    cells = ours.frame(same_lab)
    record = ours.plan_record()["128x128"]["stain"]
    assert record["normalised"] is False and record["background_delta_e"] < 1.0
    for a, b in zip(cells, plain.frame(same_lab)):
        assert np.array_equal(a.image, b.image) and "stain" not in a.rule
    other = Intake(contract, 32, stain="auto")
    cells = other.frame(_fields("rapid", range(300, 308)))
    assert other.plan_record()["128x128"]["stain"]["normalised"] is True
    assert all("optical-density stain normalisation (auto: background ΔE" in c.rule for c in cells)
    # a model recorded before stain statistics existed: auto frames as before, without an error
    old = Intake(FramingContract.from_dict({**contract.to_dict(), "stain": None}), 32, stain="auto")
    assert all("stain" not in c.rule for c in old.frame(_fields("rapid", range(300, 303))))


@pytest.mark.shared_data
def test_the_bundled_baseline_reads_another_lab_better_with_the_default_intake(shared_data):
    """tecom_wbc (rapid stain, yellow background) through baseline-32's own intake: 'auto' normalises it (measured
    0.370 → 0.767 balanced accuracy over the 4 shared classes), and leaves PBC's originals exactly as they were."""
    from pathlib import Path

    from cytomodel.data import framed_arrays, scan_dataset
    from cytomodel.evaluate import classification_summary, load_baseline

    clf = load_baseline()
    classes = ["eosinophil", "lymphocyte", "monocyte", "neutrophil"]
    recs = [r for r in scan_dataset(shared_data / "tecom_wbc") if r.label in classes]
    scores = {}
    for stain in ("none", "auto"):
        intake = clf.intake(stain=stain)
        cells = intake.frame([r.path for r in recs])
        arrays, keep = framed_arrays(cells, clf.resolution)
        proba = clf.predict_proba(arrays)[:, [clf.class_names.index(c) for c in classes]]
        y = np.array([classes.index(recs[i].label) for i in keep])
        scores[stain] = classification_summary(y, proba.argmax(1), len(classes))["balanced_accuracy"]
    assert intake.plan_record()["128x128"]["stain"]["normalised"] is True
    assert scores["auto"] >= scores["none"] + 0.25, scores
    mini = Path(__file__).resolve().parents[2] / "data" / "pbc_mini"
    originals = sorted(mini.glob("*/*.jpg"))[:40]
    a, b = clf.intake(stain="auto"), clf.intake(stain="none")
    for x, y in zip(a.frame(originals), b.frame(originals)):
        assert np.array_equal(x.image, y.image) and "stain" not in x.rule


def test_the_training_record_samples_its_images_and_survives_unstained_ones(monkeypatch):
    import cytomodel.data.framing as framing

    monkeypatch.setattr(framing, "STAIN_SAMPLE", 5)
    record = measure_contract(_fields("mgg", range(12)), training_px=(128, 128))
    assert record.stain["n_images"] == 5 and record.n_images == 12
    blank = framing._stain_record([np.full((128, 128, 3), 240, np.uint8)] * 3)
    assert blank is None


def test_the_warnings_classify_prints_before_a_run_name_the_normalisation(contract):
    """classify asks for the warnings with the sources only (no framed cells yet): they must still be said."""
    other = _fields("rapid", range(400, 408))
    auto = Intake(contract, 32, stain="auto")
    auto.plan(other)
    msgs = auto.warnings([], other)
    assert any("colours outside the range" in m and "stain-normalised in optical density" in m for m in msgs), msgs
    plain = Intake(contract, 32, stain="none")
    plain.plan(other)
    assert any("--stain-normalisation optical-density" in m for m in plain.warnings([], other))
    assert Intake(contract, 32).warnings([], []) == []
