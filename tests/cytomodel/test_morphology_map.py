"""``cytomodel map``: the representations are seeded and shaped as documented, the check's metrics find subtypes that
were planted (and nothing in shuffled labels), stable clusters are found stable, and the command writes a map that
opens in a browser without a network — on the tiny model, and (when ../shared/data is here) on real PBC cells."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cytomodel.cli import main
from cytomodel.morphology_map.cells import sample_cells, unspecified
from cytomodel.morphology_map.check import checkable, cluster_cells, knn_probe, subtype_ami, subtype_check, umap_embed
from cytomodel.morphology_map.stability import cluster_class
from cytomodel.testing import TINY_CLASSES, make_cell_image

REPO = Path(__file__).resolve().parents[2]


def blobs(sizes=(40, 40, 40), dims=20, spread=8.0, seed=0):
    """Gaussian blobs with known labels: the metrics' ground truth, made by a generator the metrics do not share."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, spread, (len(sizes), dims))
    x = np.concatenate([rng.normal(c, 1.0, (n, dims)) for c, n in zip(centres, sizes)])
    y = np.repeat([f"s{k}" for k in range(len(sizes))], sizes)
    return x, y


def textured_cell(texture: str, rng: np.random.Generator, size: int = 40) -> Image.Image:
    """A cell of the tiny class ``alpha`` whose disc carries a texture the tiny data generator never draws: coarse
    horizontal stripes or a coarse checkerboard — the planted 'subtype'."""
    img = np.asarray(make_cell_image(0, rng, size)).astype(np.float64)
    yy, xx = np.mgrid[:size, :size]
    disc = (xx - size / 2) ** 2 + (yy - size / 2) ** 2 < (0.19 * size) ** 2
    pattern = (yy // 5) % 2 == 0 if texture == "striped" else ((yy // 7) + (xx // 7)) % 2 == 0
    img[disc & pattern] = img[disc & pattern] * 0.45 + np.array([250, 240, 120]) * 0.55
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def subtyped_data(tmp_path_factory) -> Path:
    """A manifest of the tiny classes where ``alpha`` has two planted subtypes (24 cells each); the others none."""
    root = tmp_path_factory.mktemp("subtyped")
    rng = np.random.default_rng(5)
    rows = []
    for texture in ("striped", "checked"):
        for j in range(24):
            p = f"alpha/{texture}_{j:02d}.png"
            (root / "alpha").mkdir(exist_ok=True)
            textured_cell(texture, rng).save(root / p)
            rows.append((p, "alpha", texture.upper()))
    for i, c in enumerate(TINY_CLASSES[1:], start=1):
        (root / c).mkdir(exist_ok=True)
        for j in range(16):
            p = f"{c}/{c}_{j:02d}.png"
            make_cell_image(i, rng).save(root / p)
            rows.append((p, c, c.upper()))
    with open(root / "manifest.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "subtype", "split"])
        w.writerows([(*r, "val") for r in rows])
    (root / "added").mkdir()
    for j in range(3):
        textured_cell("striped", rng).save(root / "added" / f"lab_{j}.png")
    return root


# ----------------------------------------------------------------------------------------------- the metrics
def test_metrics_recover_planted_blobs_and_nothing_in_shuffled_labels():
    x, y = blobs()
    clusters = cluster_cells(x, seed=0)
    assert subtype_ami(clusters, y) > 0.8
    probe = knn_probe(x, y, k=5, folds=5, seed=0, permutations=200)
    assert probe["balanced_accuracy"] > 0.95 and probe["chance"] == pytest.approx(1 / 3)
    assert probe["p_value"] < 0.01
    shuffled = np.random.default_rng(1).permutation(y)
    assert abs(subtype_ami(clusters, shuffled)) < 0.1
    null = knn_probe(x, shuffled, k=5, folds=5, seed=0, permutations=200)
    assert abs(null["balanced_accuracy"] - 1 / 3) < 0.2
    # seeded: the same seed gives the same UMAP and the same clusters
    a, b = umap_embed(x, seed=3).embedding_, umap_embed(x, seed=3).embedding_
    assert np.array_equal(a, b)
    assert np.array_equal(cluster_cells(x, seed=0), clusters)


def test_subtypes_that_say_no_more_than_the_class_are_not_checked():
    assert unspecified("ig", "IG") and unspecified("neutrophil", "NEUTROPHIL") and unspecified("ig", "")
    assert not unspecified("ig", "MMY")
    labels = ["ig"] * 14 + ["neutrophil"] * 8 + ["lymphocyte"] * 5
    subtypes = ["MY"] * 6 + ["PMY"] * 5 + ["MMY"] * 3 + ["SNE"] * 5 + ["BNE"] * 3 + [""] * 5
    got = checkable(labels, subtypes, min_per_subtype=5)
    assert list(got) == ["ig"] and len(got["ig"]) == 11        # MMY (3) too rare; neutrophil has one big subtype


def test_check_table_is_tidy_and_reads_the_planted_subtype():
    x, y = blobs(sizes=(30, 30))
    noise = np.random.default_rng(2).normal(size=x.shape)
    labels = np.array(["a"] * 60 + ["b"] * 20)
    subtypes = np.concatenate([y, [""] * 20])
    feats = {"planted": np.concatenate([x, noise[:20]]), "noise": np.concatenate([noise, noise[:20]])}
    table = subtype_check(feats, labels, subtypes, seed=0, permutations=200)
    assert list(table.columns) == ["representation", "class", "metric", "value", "n"]
    assert set(table["class"]) == {"a"} and set(table["n"]) == {60}
    v = table.set_index(["representation", "metric"])["value"]
    assert v[("planted", "knn_balanced_accuracy")] > 0.95 and v[("planted", "ami_kmeans")] > 0.8
    assert v[("noise", "knn_balanced_accuracy")] < 0.75 and v[("noise", "ami_kmeans")] < 0.2
    assert v[("planted", "knn_chance")] == 0.5


def test_stability_finds_planted_clusters_stable():
    x, _ = blobs(sizes=(30, 30), spread=10.0)
    res = cluster_class(x, "planted", "a", np.arange(60), seed=0, runs=3, subsample=0.8)
    stab = res.stability()
    assert len(stab) == 2 and all(s > 0.9 for s in stab.values())
    typ = res.typicality()
    assert typ.shape == (60,) and np.nanmin(typ) > 0.8


# ----------------------------------------------------------------------------------------------- representations
def test_diffusion_features_are_seeded_and_order_independent(tiny_model_dir):
    from cytomodel.models import load_base
    from cytomodel.morphology_map.representations import diffusion_features, error_features, pixel_features

    model = load_base(tiny_model_dir)
    rng = np.random.default_rng(0)
    images = np.stack([np.asarray(make_cell_image(i % 3, rng, model.resolution)) for i in range(6)])
    a = diffusion_features(model, images, noise_level=50, draws=3, seed=1)
    channels = model.unet.config.block_out_channels[-1]
    assert a.shape == (6, channels) and a.dtype == np.float32 and np.isfinite(a).all()
    assert np.array_equal(a, diffusion_features(model, images, noise_level=50, draws=3, seed=1))
    assert not np.allclose(a, diffusion_features(model, images, noise_level=50, draws=3, seed=2))
    order = np.array([3, 0, 5, 1, 4, 2])
    b = diffusion_features(model, images[order], noise_level=50, draws=3, seed=1, batch_size=4)
    np.testing.assert_allclose(b, a[order], rtol=1e-4, atol=1e-5)
    e = error_features(model, images, trials=2, seed=0)
    assert e.shape == (6, len(model.class_names)) and np.allclose(e.sum(axis=1), 0, atol=1e-5)
    assert pixel_features(images).shape == (6, model.resolution ** 2 * 3)
    with pytest.raises(ValueError, match="noise level"):
        diffusion_features(model, images, noise_level=10_000)


# ----------------------------------------------------------------------------------------------- the command
@pytest.fixture(scope="module")
def map_run(tiny_model_dir, tiny_baseline_dir, subtyped_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("map") / "out"
    argv = ["map", "--model", str(tiny_model_dir), "--data", str(subtyped_data / "manifest.csv"), "--split", "val",
            "--per-class", "0", "--baseline", str(tiny_baseline_dir), "--add", str(subtyped_data / "added"),
            "--noise-level", "20,200", "--draws", "2", "--errors", "--error-trials", "2", "--runs", "2",
            "--permutations", "99", "--seed", "7", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    return out


def test_map_command_writes_the_map_tables_figures_and_provenance(map_run, tiny_model_dir, capsys):
    out = map_run
    for f in ("map.html", "summary.md", "provenance.json", "features.npz", "figures/map.pdf", "figures/map.png",
              "figures/check.pdf", "figures/check.png", "tables/check.csv", "tables/cells.csv",
              "tables/candidates.csv", "tables/added.csv", "tables/subtype_counts.csv"):
        assert (out / f).is_file() and (out / f).stat().st_size > 0, f
    check = pd.read_csv(out / "tables" / "check.csv")
    assert list(check.columns) == ["representation", "class", "metric", "value", "n"]
    assert set(check["class"]) == {"alpha", "(trained classes)"} and set(check["n"]) == {48, 80}
    trained = check[check["class"] == "(trained classes)"].set_index(["representation", "metric"])["value"]
    assert trained[("pixels", "knn_balanced_accuracy")] > 0.9 and trained[("pixels", "knn_chance")] == 1 / 3
    check = check[check["class"] == "alpha"]
    assert set(check["representation"]) == {"diffusion_t20", "diffusion_t200", "denoising_errors", "baseline_cnn",
                                            "pixels"}
    v = check.set_index(["representation", "metric"])["value"]
    assert v[("pixels", "knn_balanced_accuracy")] > 0.8           # the planted texture is in the pixels
    assert v[("pixels", "knn_chance")] == 0.5
    cells = pd.read_csv(out / "tables" / "cells.csv")
    assert len(cells) == 80 and {"x_pixels", "cluster_diffusion_t20"} <= set(cells.columns)
    added = pd.read_csv(out / "tables" / "added.csv")
    assert len(added) == 3 and added["nearest_class_pixels"].notna().all()
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["command"] == "cytomodel map" and prov["config"]["seed"] == 7 and prov["code_version"]
    assert prov["model"]["weights_sha256"] and prov["baseline"]["weights_sha256"] and prov["data_hash"]
    assert prov["data"]["manifest_sha256"] and prov["added"]["cells"] == 3
    assert "map.html" in prov["outputs"] and "tables/check.csv" in prov["outputs"]
    html = (out / "map.html").read_text()
    assert '<script src="http' not in html and '"thumb":"/9j/' in html     # plotly.js and the thumbnails inline


def test_map_html_opens_offline_in_chromium_and_shows_the_hovered_cell(map_run, tmp_path):
    exe = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if exe is None:
        pytest.skip("Chromium not found (/usr/bin/chromium): apt-get install chromium")
    pw = pytest.importorskip("playwright.sync_api")
    html = tmp_path / "map.html"          # alone: the page must need nothing beside it
    shutil.copy(map_run / "map.html", html)
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"]
    with pw.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=args)
        page = browser.new_page()
        errors, requests = [], []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: requests.append(r.url) if not r.url.startswith(("file:", "data:")) else None)
        page.goto(html.as_uri())
        page.wait_for_load_state("load")
        page.wait_for_selector("#map .main-svg")
        assert page.locator("#map .scatterlayer .point").count() >= 80
        box = page.locator("#map .scatterlayer .trace").first.locator(".point").first.bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)   # a real hover (alpha's trace)
        page.wait_for_function("document.getElementById('cell-img').src.startsWith('data:image/jpeg')")
        assert page.locator("#cell-label").inner_text() == "alpha"
        assert page.locator("#cell-subtype").inner_text() in ("STRIPED", "CHECKED")
        assert page.locator("#cell-cluster").inner_text().startswith("alpha ")
        assert page.locator("table").count() >= 2
        browser.close()
    assert not errors, errors
    assert not requests, requests


def test_bad_input_is_a_clear_error(tiny_model_dir, subtyped_data, tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        main(["map", "--help"])
    assert done.value.code == 0 and "--noise-level" in capsys.readouterr().out
    base = ["map", "--model", str(tiny_model_dir), "--out", str(tmp_path / "o"), "--baseline", "none", "--quiet"]
    assert main(base + ["--data", str(tmp_path / "nowhere")]) == 2
    assert "nowhere does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(base + ["--data", str(subtyped_data), "--add", str(tmp_path / "empty")]) == 2
    assert "--add" in capsys.readouterr().err
    assert main(base + ["--data", str(subtyped_data), "--noise-level", "ten"]) == 2
    assert "--noise-level 'ten'" in capsys.readouterr().err
    assert main(base + ["--data", str(subtyped_data), "--classes", "alpha,omega"]) == 2
    assert "omega" in capsys.readouterr().err
    assert main(base[:-3] + ["--baseline", str(tmp_path), "--data", str(subtyped_data)]) == 2
    assert "not a baseline folder" in capsys.readouterr().err


def test_sample_is_seeded_and_reads_subtypes(subtyped_data):
    a = sample_cells(subtyped_data / "manifest.csv", "val", per_class=5, seed=0)
    assert a.equals(sample_cells(subtyped_data, "val", per_class=5, seed=0))
    assert len(a) == 15 and set(a.loc[a["label"] == "alpha", "subtype"]) <= {"STRIPED", "CHECKED"}
    assert a.loc[a["label"] == "beta", "subtype"].isna().all()       # BETA says no more than the class
    assert not a.equals(sample_cells(subtyped_data, "val", per_class=5, seed=1))


# ----------------------------------------------------------------------------------------------- real data
@pytest.mark.shared_data
def test_map_of_real_pbc_cells_with_the_bundled_models(shared_data, tmp_path):
    from cytomodel import bundled_baseline_path, bundled_classifier_path
    from cytomodel.morphology_map import MapConfig, build_map

    cfg = MapConfig(split="val", per_class=24, classes=("neutrophil", "ig"), draws=2, runs=1, permutations=9,
                    min_per_subtype=4)
    res = build_map(bundled_classifier_path(), shared_data / "pbc" / "manifest.csv", tmp_path / "map", cfg,
                    baseline_dir=bundled_baseline_path(), progress=False)
    assert len(res.cells) >= 44 and set(res.cells["label"]) == {"neutrophil", "ig"}
    assert {"BNE", "SNE"} <= set(res.cells["subtype"].dropna())
    assert set(res.check["class"]) == {"neutrophil", "ig", "(trained classes)"}
    assert set(res.check["representation"]) == {"diffusion_t100", "baseline_cnn", "pixels"}
    ba = res.check[res.check["metric"] == "knn_balanced_accuracy"]["value"]
    assert ba.between(0, 1).all()
    assert (tmp_path / "map" / "map.html").stat().st_size > 1_000_000          # plotly.js inline
