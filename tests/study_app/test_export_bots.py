"""Tidy export (docs/tidy-responses.md, validated by cytocore.schema), simulated raters, and the command line."""
from __future__ import annotations

import pandas as pd
import pytest

from cytocore.schema import REQUIRED_COLUMNS, load_responses
from cytocore.validation import validate_responses
from study_app.bots import make_profile, run_bot, simulate_raters
from study_app.cli import main as cli
from study_app.export import (EXTRA_COLUMNS, PROVENANCE_KEYS, NoResponses, export_responses, export_study,
                              read_provenance, write_export)
from study_app.serve.session import StudyService


def test_bots_take_the_participant_path_and_the_export_validates(service, tmp_path):
    prof = make_profile(service, d_prime=1.5, criterion=0.2, class_accuracy=0.8, meta_ratio=0.8)
    res = simulate_raters(service, 3, prof, seed=1, threads=3)
    assert [r.answered for r in res] == [12, 12, 12]
    assert all(len(set(r.acknowledged)) == 12 for r in res)
    df = export_responses(service)
    cols = list(REQUIRED_COLUMNS) + [f"model_prob_{c}" for c in service.classes] + list(EXTRA_COLUMNS)
    assert list(df.columns) == cols                 # the documented schema, then presentations and reconnects
    assert (df.n_presentations == 1).all() and (df.n_reconnects == 0).all() and df.image_load_ms.notna().all()
    assert len(df) == 36 and set(df.participant_role) == {"bot"}
    assert df.groupby("participant_id").phase.value_counts().unstack().to_dict("list") == {
        "main": [10, 10, 10], "practice": [2, 2, 2]}
    rep = validate_responses(df, classes=service.classes)
    assert len(rep.data) == 27                                        # main, attention checks removed
    assert df.auth_rt_ms.gt(30).all() and (df.class_rt_ms >= df.auth_rt_ms).all()   # server-side times
    assert df.model_pred_class.notna().all() and df.responded_at.dt.tz is not None
    # morph strength and source come from the manifest
    real = df[df.source == "real"]
    assert (real.morph_strength == 0).all() and set(df.morph_strength) <= {0.0, 0.5, 1.0}
    paths = write_export(df, tmp_path / "out")
    back = load_responses(paths[1])
    pd.testing.assert_frame_equal(back.reset_index(drop=True), df, check_dtype=False)
    validate_responses(load_responses(paths[0]), classes=service.classes)


def test_export_carries_provenance_in_the_parquet_file_and_a_sidecar(service, built_study, tmp_path):
    import json

    from cytocore.provenance import sha256_file
    with pytest.raises(NoResponses, match="cytostudy simulate"):     # nobody answered yet: say what to do
        export_study(service, tmp_path / "empty")
    simulate_raters(service, 1, make_profile(service), seed=2)
    df, paths = export_study(service, tmp_path / "out" / "responses.parquet")
    prov = read_provenance(paths[1])
    assert set(PROVENANCE_KEYS) <= set(prov) and prov["n_responses"] == len(df) == 12
    side = json.loads(paths[2].read_text())
    assert paths[2].name == "responses.parquet.provenance.json"
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


def test_bot_sensitivity_shows_in_the_data(built_study, tmp_path):
    """A rater with d' = 4 is far more accurate on real vs synthetic than one with d' = 0 (known truth)."""
    svc = StudyService(built_study, f"sqlite:///{tmp_path / 'b.db'}")
    good = run_bot(svc, make_profile(svc, d_prime=4.0, lapse=0.0), seed=5)
    bad = run_bot(svc, make_profile(svc, d_prime=0.0, lapse=0.0), seed=5)
    df = export_responses(svc)
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
    assert (tmp_path / "exp" / "responses.parquet").is_file() and (tmp_path / "exp" / "responses.csv").is_file()
    assert cli(["status", str(built_study), "--db-url", url]) == 0
    assert "responses: 24" in capsys.readouterr().out
    assert cli(["audit", str(built_study)]) == 0
    assert "leak audit PASS" in capsys.readouterr().out
    assert cli(["export", str(tmp_path / "nope"), "--out", str(tmp_path / "x")]) == 2
    assert "not a built study" in capsys.readouterr().err
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    assert cli(["export", str(built_study), "--db-url", empty, "--out", str(tmp_path / "y")]) == 2
    assert "no responses" in capsys.readouterr().err
