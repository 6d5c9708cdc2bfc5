"""The data layer: discovery, decoding of every common image flavour, preprocessing, caching, and every bad-input
case (corrupt or truncated files, too-small images, empty classes, unknown labels, broken manifests)."""
import io
import logging
import os

import numpy as np
import pytest
from PIL import Image

from cytomodel.testing import make_cell_image, make_dataset
from cytomodel.data import DataError, load_arrays, load_dataset, load_image, preprocess, scan_dataset


def _png_bytes(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


@pytest.fixture
def tree(tmp_path):
    """A fresh 3-class folder tree (8 images per class, 40 px) that tests may damage."""
    return make_dataset(tmp_path / "tree", n_per_class=8)


# ----------------------------------------------------------------------------------------------- discovery
def test_class_folders(tree):
    data = load_dataset(tree, 16)
    assert data.images.shape == (24, 16, 16, 3) and data.images.dtype == np.uint8
    assert data.class_names == ["alpha", "beta", "gamma"]
    assert np.bincount(data.labels).tolist() == [8, 8, 8]
    assert all(data.class_names[y] == r.label for y, r in zip(data.labels, data.records))
    assert data.skipped == [] and len(data.data_hash) == 64


def test_data_hash_tracks_content(tree, tmp_path):
    h1 = load_dataset(tree, 16, use_cache=False).data_hash
    assert load_dataset(tree, 16, use_cache=False).data_hash == h1
    copy = make_dataset(tmp_path / "same", n_per_class=8)  # same content elsewhere: same hash
    assert load_dataset(copy, 16, use_cache=False).data_hash == h1
    make_cell_image(0, np.random.default_rng(99)).save(tree / "alpha" / "alpha_000.png")
    assert load_dataset(tree, 16, use_cache=False).data_hash != h1


def test_manifest_with_splits(tree):
    rows = ["path,label,split"]
    for i, p in enumerate(sorted(tree.rglob("*.png"))):
        rows.append(f"{p.relative_to(tree).as_posix()},{p.parent.name},{'train' if i % 4 else 'test'}")
    (tree / "manifest.csv").write_text("\n".join(rows) + "\n")
    train = load_dataset(tree, 16, split="train")
    test = load_dataset(tree / "manifest.csv", 16, split="test", class_names=train.class_names)
    assert len(train.images) == 18 and len(test.images) == 6
    assert {r.split for r in train.records} == {"train"}
    assert len(load_dataset(tree, 16, split=["train", "test"]).images) == 24
    with pytest.raises(DataError, match="no rows with split in \\['nonsense'\\]"):
        scan_dataset(tree, split="nonsense")


def test_manifest_with_byte_order_mark(tree):
    """Spreadsheet programs save CSVs with a UTF-8 BOM; the 'path' column must still be found."""
    files = sorted(tree.rglob("*.png"))
    text = "path,label\n" + "".join(f"{p.relative_to(tree).as_posix()},{p.parent.name}\n" for p in files)
    (tree / "manifest.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert len(scan_dataset(tree)) == len(files)


def test_split_needs_manifest(tree):
    with pytest.raises(DataError, match="no manifest"):
        scan_dataset(tree, split="train")


# ----------------------------------------------------------------------------------------------- bad input
def test_missing_source(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        scan_dataset(tmp_path / "nowhere")


def test_no_class_folders(tmp_path):
    (tmp_path / "flat").mkdir()
    Image.new("RGB", (40, 40)).save(tmp_path / "flat" / "a.png")
    with pytest.raises(DataError, match="no class sub-folders"):
        scan_dataset(tmp_path / "flat")


def test_empty_class_folder_is_named(tree):
    (tree / "delta").mkdir()
    (tree / "delta" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match="class folder .*delta has no images"):
        load_dataset(tree, 16)


def test_unknown_label_is_named(tree):
    with pytest.raises(DataError, match=r"unknown label\(s\) \['gamma'\]"):
        load_dataset(tree, 16, class_names=["alpha", "beta"])


@pytest.mark.parametrize("header, missing", [("file_name,label", "path"), ("path,class", "label")])
def test_missing_manifest_column_is_named(tmp_path, header, missing):
    (tmp_path / "m.csv").write_text(f"{header}\na.png,alpha\n")
    with pytest.raises(DataError, match=f"no '{missing}' column"):
        scan_dataset(tmp_path / "m.csv")


def test_empty_manifest_field_names_the_line(tmp_path):
    (tmp_path / "m.csv").write_text("path,label\na.png,alpha\nb.png,\n")
    with pytest.raises(DataError, match="line 3: empty label"):
        scan_dataset(tmp_path / "m.csv")
    (tmp_path / "m.csv").write_text("path,label\n")
    with pytest.raises(DataError, match="has no rows"):
        scan_dataset(tmp_path / "m.csv")


def _damage(tree):
    """One file of random bytes, one truncated PNG: both must be reported by path."""
    corrupt = tree / "alpha" / "alpha_001.png"
    corrupt.write_bytes(np.random.default_rng(0).bytes(500))
    truncated = tree / "beta" / "beta_002.png"
    truncated.write_bytes(truncated.read_bytes()[:300])
    return corrupt, truncated


def test_corrupt_and_truncated_files_are_skipped_and_reported(tree, caplog):
    corrupt, truncated = _damage(tree)
    with caplog.at_level(logging.WARNING):
        data = load_dataset(tree, 16)
    assert len(data.images) == 22 and len(data.records) == 22
    assert sorted(p for p, _ in data.skipped) == sorted([str(corrupt), str(truncated)])
    assert str(corrupt) in caplog.text and str(truncated) in caplog.text
    assert all(str(r.path) not in {str(corrupt), str(truncated)} for r in data.records)
    # labels stay aligned with the surviving records
    assert all(data.class_names[y] == r.label for y, r in zip(data.labels, data.records))
    # the cached reload reports the same skipped paths
    again = load_dataset(tree, 16)
    assert sorted(p for p, _ in again.skipped) == sorted(p for p, _ in data.skipped)
    np.testing.assert_array_equal(again.images, data.images)


@pytest.mark.parametrize("cached", [False, True])
def test_strict_fails_on_corrupt_file(tree, cached):
    corrupt, truncated = _damage(tree)
    if cached:
        load_dataset(tree, 16)  # populate the cache, then ask strictly
    with pytest.raises(DataError) as exc:
        load_dataset(tree, 16, strict=True)
    assert str(corrupt) in str(exc.value) or str(truncated) in str(exc.value)


def test_missing_file_in_manifest_is_reported(tree):
    (tree / "manifest.csv").write_text("path,label\nalpha/alpha_000.png,alpha\nalpha/gone.png,alpha\n")
    data = load_dataset(tree, 16)
    assert len(data.images) == 1 and data.skipped[0][0].endswith("gone.png")


def test_all_unreadable_is_an_error(tmp_path):
    (tmp_path / "d" / "a").mkdir(parents=True)
    (tmp_path / "d" / "a" / "x.png").write_bytes(b"nope")
    with pytest.raises(DataError, match="none of the images could be decoded"):
        load_dataset(tmp_path / "d", 16)


def test_too_small_image_is_rejected_with_a_message(tree):
    small = tree / "gamma" / "gamma_003.png"
    Image.new("RGB", (12, 30), (200, 100, 100)).save(small)
    with pytest.raises(DataError, match=r"gamma_003.png: image is 12x30.*smaller than the model's 16px"):
        load_dataset(tree, 16)
    # the crop fraction counts too: a 40 px image cropped to half is 20 px
    with pytest.raises(DataError, match="smaller than the model's 32px"):
        preprocess(Image.new("RGB", (40, 40)), 32, crop_fraction=0.5)


# ----------------------------------------------------------------------------------------------- image modes
def test_grayscale_is_converted():
    out = load_image(_png_bytes(Image.new("L", (20, 20), 100)))
    assert out.mode == "RGB" and np.asarray(out)[0, 0].tolist() == [100, 100, 100]


def test_rgba_is_composited_on_white():
    rgba = Image.new("RGBA", (20, 20), (10, 20, 30, 0))
    rgba.putpixel((5, 5), (10, 20, 30, 255))
    arr = np.asarray(load_image(_png_bytes(rgba)))
    assert arr[0, 0].tolist() == [255, 255, 255] and arr[5, 5].tolist() == [10, 20, 30]


def test_palette_is_converted():
    pal = Image.new("RGB", (20, 20), (200, 30, 90)).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    assert pal.mode == "P"
    arr = np.asarray(load_image(_png_bytes(pal)))
    assert arr.shape == (20, 20, 3) and np.abs(arr[0, 0].astype(int) - [200, 30, 90]).max() <= 2


def test_sixteen_bit_is_rescaled():
    arr16 = np.full((20, 20), 65535, np.uint16)
    arr16[:10] = 32768
    img = Image.fromarray(arr16)
    assert img.mode.startswith("I")
    out = np.asarray(load_image(_png_bytes(img)))
    assert out[15, 0].tolist() == [255, 255, 255] and out[0, 0].tolist() == [128, 128, 128]


def test_cmyk_jpeg_and_pil_input():
    cmyk = Image.new("CMYK", (20, 20), (0, 0, 0, 0))
    out = load_image(_png_bytes(cmyk, "JPEG"))
    assert out.mode == "RGB" and np.asarray(out).min() >= 250
    assert load_image(Image.new("L", (5, 5))).mode == "RGB"


def test_mixed_modes_load_as_one_dataset(tmp_path):
    root = tmp_path / "modes"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
    Image.new("L", (32, 32), 90).save(root / "a" / "gray.png")
    Image.new("RGBA", (32, 32), (200, 0, 0, 255)).save(root / "a" / "rgba.png")
    Image.fromarray(np.full((32, 32), 4000, np.uint16)).save(root / "b" / "deep.png")
    Image.new("RGB", (32, 32), (0, 0, 200)).convert("P").save(root / "b" / "pal.png")
    data = load_dataset(root, 16)
    assert data.images.shape == (4, 16, 16, 3) and data.skipped == []


# ----------------------------------------------------------------------------------------------- preprocessing + cache
def test_centre_crop_and_resize_are_deterministic():
    arr = np.zeros((60, 100, 3), np.uint8)
    arr[:, 20:80] = 255  # the centred 60x60 square is white; the margins are black
    img = Image.fromarray(arr)
    out = preprocess(img, 30)
    assert out.shape == (30, 30, 3) and out.min() == 255
    np.testing.assert_array_equal(preprocess(img, 30), out)
    same = preprocess(Image.fromarray(np.full((30, 30, 3), 7, np.uint8)), 30)
    assert (same == 7).all()  # already the right size: untouched


def test_cache_avoids_decoding_and_notices_changes(tree, monkeypatch):
    first = load_dataset(tree, 16)
    import cytomodel.data.dataset as data_mod

    def boom(*_a, **_k):
        raise AssertionError("decoded although cached")
    monkeypatch.setattr(data_mod, "load_image", boom)
    np.testing.assert_array_equal(load_dataset(tree, 16).images, first.images)
    monkeypatch.undo()
    # rewriting a file (new size / mtime) invalidates the cache
    target = tree / "beta" / "beta_000.png"
    make_cell_image(1, np.random.default_rng(7)).save(target)
    os.utime(target, ns=(1, 1))
    changed = load_dataset(tree, 16)
    assert changed.data_hash != first.data_hash


def test_load_arrays_needs_records():
    with pytest.raises(DataError, match="no images"):
        load_arrays([], 16)


# ----------------------------------------------------------------------------------------------- real data
def test_pbc_manifest_splits(shared_data):
    counts = {s: len(scan_dataset(shared_data / "pbc", split=s)) for s in ("train", "val", "test")}
    assert counts == {"train": 11964, "val": 1709, "test": 1795}  # as documented in ../shared/data/README.md
    labels = {r.label for r in scan_dataset(shared_data / "pbc")}
    assert len(labels) == 8 and "neutrophil" in labels


def test_bccd_shares_pbc_labels(shared_data):
    pbc = sorted({r.label for r in scan_dataset(shared_data / "pbc")})
    bccd = scan_dataset(shared_data / "bccd_wbc", classes=pbc)
    assert {r.label for r in bccd} <= set(pbc) and len(bccd) > 300
