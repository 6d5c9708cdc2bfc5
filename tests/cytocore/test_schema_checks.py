"""The checks of validate_responses: one study version per table, one description per stimulus, model-only tables;
each failure names the column, the rows and what to do."""
import json

import numpy as np
import pytest

from analysis.simulate import simulate_study
from cytocore import schema_checks
from cytocore.lineage import LINEAGE_FIELDS, UNKNOWN, lineage_from_export_record, read_lineage
from cytocore.schema import ANSWER_COLUMNS, ResponseDataError
from cytocore.validation import validate_responses


@pytest.fixture(scope="module")
def base():
    return simulate_study(n_raters=3, n_trials=40, classes=("a", "b", "c"), seed=2)


def test_checks_are_a_list_of_named_functions():
    names = [c.__name__ for c in schema_checks.CHECKS]
    assert names[:3] == ["check_is_frame", "check_columns", "check_not_empty"]
    assert {"check_one_study", "check_stimulus_consistency", "check_codes"} <= set(names)
    assert all(r.__name__.startswith("rule_") for r in schema_checks.EXCLUSION_RULES)


def test_rows_of_two_study_versions_are_refused_with_the_rows(base):
    df = base.copy()
    df.loc[df.index[-5:], "study_id"] = "sim-v2"
    with pytest.raises(ResponseDataError, match=r"study_id.*more than one study version.*5 rows.*cytostudy export"):
        validate_responses(df)
    df = base.copy()
    df["study_content_hash"] = "aaa"
    df.loc[df.index[:2], "study_content_hash"] = "bbb"
    with pytest.raises(ResponseDataError, match=r"study_content_hash.*rows 0, 1"):
        validate_responses(df)


def test_a_stimulus_edited_by_hand_is_refused(base):
    df = base.copy()
    sid = df["stimulus_id"].value_counts().index[0]
    row = df.index[df["stimulus_id"] == sid][0]
    df.loc[row, "true_class"] = "b" if df.loc[row, "true_class"] != "b" else "c"
    with pytest.raises(ResponseDataError, match=rf"true_class.*{sid}.*edited by hand"):
        validate_responses(df)


def test_metadata_and_rows_must_name_the_same_study(base):
    df = base.copy()
    df.attrs = {"cytostudy": {"study_id": "other"}}
    with pytest.raises(ResponseDataError, match="metadata says study 'other'"):
        validate_responses(df)


def test_model_only_table_validates_without_human_analyses(base):
    df = base.copy()
    df[list(ANSWER_COLUMNS)] = np.nan
    rep = validate_responses(df)
    assert not rep.has_human_answers and rep.for_task("authenticity").empty and len(rep.for_task("model"))
    assert any("model-only" in n for n in rep.notes)
    df["auth_response"] = df["auth_response"].astype(object)
    df.loc[df.index[0], "auth_response"] = "real"   # one answer: not model-only, and the rest are missing
    with pytest.raises(ResponseDataError, match="auth_response.*missing"):
        validate_responses(df)


def test_lineage_reads_attrs_sidecar_and_study_folder(tmp_path, base):
    study = tmp_path / "study"
    study.mkdir()
    (study / "study.json").write_text(json.dumps({"study_id": "sim", "config_hash": "c" * 64, "content_hash": "h" * 64,
                                                  "provenance": {"model_data_hash": "t" * 64}}))
    (study / "manifest.csv").write_text("stimulus_id\ns1\n")
    data = tmp_path / "r.parquet"
    df = base.copy()
    df.attrs = {"cytostudy": {"model_weights_sha256": "w" * 64}}
    df.to_parquet(data)
    (tmp_path / "r.parquet.lineage.json").write_text(json.dumps({"export_code_version": "0.1.0"}))
    lin = read_lineage(df.attrs, data, study)
    assert set(LINEAGE_FIELDS) <= set(lin)
    assert lin["study_content_hash"] == "h" * 64 and lin["model_training_data_hash"] == "t" * 64
    assert lin["model_weights_sha256"] == "w" * 64 and lin["export_code_version"] == "0.1.0"
    assert len(lin["manifest_sha256"]) == 64 and lin["exported_utc"] == UNKNOWN
    # an export of before the one vocabulary (stimuli_data_hash, the model's fields only nested) reads the same
    old = {"study_id": "sim", "stimuli_data_hash": "s" * 64,
           "model": {"name": "m", "weights_sha256": "w" * 64, "data_hash": "t" * 64, "train_steps": 6}}
    assert lineage_from_export_record(old) == {"study_id": "sim", "stimuli_source_hash": "s" * 64, "model_name": "m",
                                               "model_weights_sha256": "w" * 64,
                                               "model_training_data_hash": "t" * 64, "model_train_steps": 6}
    from analysis.inputs import load_export
    lin2 = load_export(data, study).lineage
    assert lin2["model_weights_sha256"] == "w" * 64          # parquet carries attrs
    (study / "study.json").write_text(json.dumps({"study_id": "another"}))
    with pytest.raises(ResponseDataError, match="study folder .* is study 'another'"):
        load_export(data, study)
