"""Tidy export in two tables (docs/tidy-responses.md, validated by cytocore.schema), simulated raters, and the
command line."""
from __future__ import annotations

import pandas as pd
import pytest

from cytocore.schema import (RAW_CONFIDENCE_COLUMNS, RESPONSE_COLUMNS, STIMULUS_COLUMNS, STIMULUS_TABLE_COLUMNS,
                             join_stimuli, load_export_tables, load_responses)
from cytocore.validation import validate_responses
from study_app.bots import make_profile, run_bot, simulate_raters
from study_app.cli import main as cli
from study_app.export import (EXTRA_COLUMNS, PROVENANCE_KEYS, NoResponses, export_responses, export_stimuli,
                              export_study, export_zip, read_provenance, write_export)
from study_app.serve.session import StudyService


def test_bots_take_the_participant_path_and_the_export_validates(service, tmp_path):
    prof = make_profile(service, d_prime=1.5, criterion=0.2, class_accuracy=0.8, meta_ratio=0.8)
    res = simulate_raters(service, 3, prof, seed=1, threads=3)
    assert [r.answered for r in res] == [12, 12, 12]
    assert all(len(set(r.acknowledged)) == 12 for r in res)
    df = export_responses(service)
    assert list(df.columns) == list(RESPONSE_COLUMNS) + list(EXTRA_COLUMNS)    # answers only: no stimulus copies
    assert not set(df.columns) & {*STIMULUS_COLUMNS, *RAW_CONFIDENCE_COLUMNS}   # confidence once, as the level
    assert (df.n_presentations == 1).all() and (df.n_reconnects == 0).all() and df.image_load_ms.notna().all()
    assert len(df) == 36 and set(df.participant_role) == {"bot"}
    assert df.groupby("participant_id").phase.value_counts().unstack().to_dict("list") == {
        "main": [10, 10, 10], "practice": [2, 2, 2]}
    stimuli = export_stimuli(service)
    manifest = service.study.manifest
    assert list(stimuli.columns[:len(STIMULUS_TABLE_COLUMNS) + 1]) == ["stimulus_id", "role",
                                                                       *STIMULUS_TABLE_COLUMNS[1:]]
    assert sorted(stimuli.stimulus_id) == sorted(manifest.index)         # every stimulus, answered or not
    assert not set(stimuli.stimulus_id[stimuli.role == "example"]) & set(df.stimulus_id)
    rep = validate_responses(join_stimuli(df, stimuli), classes=service.classes, stimuli=stimuli)
    assert len(rep.data) == 27                                        # main, attention checks removed
    assert sorted(rep.stimuli.stimulus_id) == sorted(manifest.index[manifest.role == "main"])
    assert df.auth_rt_ms.gt(30).all() and (df.class_rt_ms >= df.auth_rt_ms).all()   # server-side times
    assert stimuli.model_pred_class.notna().all() and df.responded_at.dt.tz is not None
    # morph strength and source come from the manifest, once per stimulus
    real = stimuli[stimuli.source == "real"]
    assert (real.morph_strength == 0).all() and set(stimuli.morph_strength) <= {0.0, 0.5, 1.0}
    paths = write_export(df, stimuli, tmp_path / "out")
    assert [p.name for p in paths] == ["responses.csv", "responses.parquet", "stimuli.csv", "stimuli.parquet"]
    back, back_stimuli = load_export_tables(paths[1])
    pd.testing.assert_frame_equal(back.reset_index(drop=True), join_stimuli(df, stimuli), check_dtype=False)
    pd.testing.assert_frame_equal(back_stimuli, stimuli, check_dtype=False)
    for data in (paths[0], tmp_path / "out"):    # the CSV pair, and the folder, read the same
        validate_responses(load_responses(data), classes=service.classes)


def test_export_carries_provenance_in_the_parquet_file_and_a_sidecar(service, built_study, tmp_path):
    import json

    from cytocore.provenance import sha256_file
    with pytest.raises(NoResponses, match="cytostudy simulate"):     # nobody answered yet: say what to do
        export_study(service, tmp_path / "empty")
    simulate_raters(service, 1, make_profile(service), seed=2)
    df, paths = export_study(service, tmp_path / "out" / "responses.parquet")
    prov = read_provenance(paths[1])
    assert set(PROVENANCE_KEYS) <= set(prov) and prov["n_responses"] == len(df) == 12
    assert prov["n_stimuli"] == len(service.study.manifest) and read_provenance(paths[3]) == prov
    assert prov["confidence_scale"] == {"levels": service.K, "shown_as": "percent",
                                        "chance": {"authenticity": 0.5, "classification": 1 / len(service.classes)},
                                        "probability_of_level": "chance + (1 − chance)·(level − 1)/(K − 1)"}
    side = json.loads(paths[4].read_text())
    assert paths[4].name == "responses.parquet.provenance.json"
    assert {k: side[k] for k in PROVENANCE_KEYS} == {k: prov[k] for k in PROVENANCE_KEYS}
    meta = json.loads((built_study / "study.json").read_text())
    assert prov["study_id"] == "tiny" and prov["study_content_hash"] == meta["content_hash"]
    assert prov["study_config_hash"] == meta["config_hash"]
    assert prov["manifest_sha256"] == sha256_file(built_study / "manifest.csv")
    assert prov["stimuli_source_hash"] == meta["provenance"]["data_hash"]    # one vocabulary: cytocore.lineage
    assert prov["model_training_data_hash"] == meta["provenance"]["model"]["data_hash"]
    assert prov["model_weights_sha256"] == meta["provenance"]["model"]["weights_sha256"]
    assert "stimuli_data_hash" not in prov
    model = prov["model"]
    assert set(model) >= {"name", "path", "data_hash", "train_steps", "code_version", "weights_sha256"}
    assert model["weights_sha256"] == sha256_file(f"{model['path']}/diffusion_pytorch_model.safetensors")
    assert side["files"]["responses.parquet"] == sha256_file(paths[1])
    assert side["files"]["stimuli.parquet"] == sha256_file(paths[3])


def test_the_admin_download_is_one_zip_of_both_tables(service, tmp_path):
    import io
    import zipfile
    simulate_raters(service, 1, make_profile(service), seed=2)
    _, paths = export_study(service, tmp_path / "exports" / "responses-20260101T000000Z.csv")
    assert [p.name for p in paths] == ["responses-20260101T000000Z.csv", "responses-20260101T000000Z.parquet",
                                       "stimuli-20260101T000000Z.csv", "stimuli-20260101T000000Z.parquet",
                                       "responses-20260101T000000Z.parquet.provenance.json"]
    z = zipfile.ZipFile(io.BytesIO(export_zip(paths)))
    assert z.namelist() == [p.name for p in paths]
    assert z.read(paths[3].name) == paths[3].read_bytes()
    back = load_responses(paths[1])        # the stimulus table of a named export is found beside it
    assert len(back) == 12 and back["source"].notna().all()


def test_bot_sensitivity_shows_in_the_data(built_study, tmp_path):
    """A rater with d' = 4 is far more accurate on real vs synthetic than one with d' = 0 (known truth)."""
    svc = StudyService(built_study, f"sqlite:///{tmp_path / 'b.db'}")
    good = run_bot(svc, make_profile(svc, d_prime=4.0, lapse=0.0), seed=5)
    bad = run_bot(svc, make_profile(svc, d_prime=0.0, lapse=0.0), seed=5)
    df = join_stimuli(export_responses(svc), export_stimuli(svc))
    df = df[(df.phase == "main") & ~df.is_attention_check & (df.morph_strength != 0.5)]
    acc = (df.auth_response == df.source).groupby(df.participant_id).mean()
    assert acc[good.participant_id] >= 0.8 and acc[good.participant_id] > acc[bad.participant_id]
    svc.close()


def test_cli_commands(built_study, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    assert cli(["invite", str(built_study), "--db-url", url, "--n", "2", "--base-url", "https://study.example"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "participant_id,number,link" and out[1].split(",")[2].startswith("https://study.example/?t=")
    assert cli(["simulate", str(built_study), "--db-url", url, "--n", "2", "--d-prime", "2", "--threads", "2"]) == 0
    assert "answered 24 trials" in capsys.readouterr().out
    assert cli(["export", str(built_study), "--db-url", url, "--out", str(tmp_path / "exp")]) == 0
    assert {p.name for p in (tmp_path / "exp").iterdir()} == {
        "responses.csv", "responses.parquet", "stimuli.csv", "stimuli.parquet", "responses.parquet.provenance.json"}
    assert cli(["status", str(built_study), "--db-url", url]) == 0
    assert "responses: 24" in capsys.readouterr().out
    assert cli(["audit", str(built_study)]) == 0
    assert "leak audit PASS" in capsys.readouterr().out
    assert cli(["export", str(tmp_path / "nope"), "--out", str(tmp_path / "x")]) == 2
    assert "not a built study" in capsys.readouterr().err
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    assert cli(["export", str(built_study), "--db-url", empty, "--out", str(tmp_path / "y")]) == 2
    assert "no responses" in capsys.readouterr().err
