"""Validation of the tidy response table: clear errors and stated exclusions, never silent drops."""
import numpy as np
import pandas as pd
import pytest

from cytocore.schema import (AUTH_RESPONSES, CANNOT_TELL, PHASES, REQUIRED_COLUMNS, ResponseDataError,
                             load_responses)
from cytocore.validation import validate_responses
from analysis.simulate import simulate_study


@pytest.fixture(scope="module")
def base():
    return simulate_study(n_raters=4, n_trials=80, seed=11, practice_trials=3, attention_checks=2)


def test_contract_constants():
    assert AUTH_RESPONSES == ("real", "synthetic")
    assert CANNOT_TELL == "cannot_tell"
    assert PHASES == ("practice", "main")
    assert "model_prob_" not in " ".join(REQUIRED_COLUMNS)
    assert {"participant_id", "auth_confidence_level", "model_margin", "morph_strength"} <= set(REQUIRED_COLUMNS)


def test_valid_table_passes_and_states_practice_and_attention(base):
    rep = validate_responses(base)
    assert rep.confidence_levels == 4
    assert len(rep.data) == 4 * 80
    assert not rep.exclusions
    assert any("practice" in n for n in rep.notes) and any("attention" in n for n in rep.notes)
    assert len(rep.data_sha256) == 64


def test_missing_column_names_it(base):
    with pytest.raises(ResponseDataError, match="auth_confidence_level"):
        validate_responses(base.drop(columns=["auth_confidence_level"]))


def test_unknown_auth_code_names_value(base):
    df = base.copy()
    df.loc[5, "auth_response"] = "fake"
    with pytest.raises(ResponseDataError, match=r"auth_response.*'fake'"):
        validate_responses(df)


def test_unknown_class_code(base):
    df = base.copy()
    df.loc[3, "class_response"] = "blast"
    with pytest.raises(ResponseDataError, match=r"class_response.*'blast'"):
        validate_responses(df)


@pytest.mark.parametrize("bad", [0, 5, 2.5])
def test_confidence_outside_scale(base, bad):
    df = base.copy()
    df["auth_confidence_level"] = df["auth_confidence_level"].astype(float)
    df.loc[7, "auth_confidence_level"] = bad
    with pytest.raises(ResponseDataError, match=r"auth_confidence_level.*1\.\.4"):
        validate_responses(df)


def test_all_identical_rater_is_a_stated_exclusion(base):
    df = base.copy()
    df.loc[df["participant_id"] == "r01", "auth_response"] = "real"
    rep = validate_responses(df)
    ex = [e for e in rep.exclusions if e.what == "rater"]
    assert len(ex) == 1 and ex[0].ids == ("r01",) and ex[0].scope == "authenticity"
    assert "always 'real'" in ex[0].reason
    assert "r01" not in set(rep.for_task("authenticity")["participant_id"])
    assert "r01" in set(rep.for_task("classification")["participant_id"])
    assert "r01" in rep.to_markdown()


def test_class_with_no_responses_is_stated(base):
    df = base[base["true_class"] != "basophil"]
    rep = validate_responses(df)
    ex = [e for e in rep.exclusions if e.what == "class"]
    assert ex and ex[0].ids == ("basophil",) and ex[0].scope == "classification"


def test_morph_and_prob_checks(base):
    df = base.copy()
    df.loc[df.index[df["source"] == "real"][0], "morph_strength"] = 0.5
    with pytest.raises(ResponseDataError, match="morph_strength"):
        validate_responses(df)
    df = base.copy()
    df["model_prob_basophil"] = df["model_prob_basophil"] + 0.3
    with pytest.raises(ResponseDataError, match="sum to 1|probabilit"):
        validate_responses(df)


def test_failed_attention_checks_exclude_rater(base):
    df = base.copy()
    att = df["is_attention_check"] & (df["participant_id"] == "r02")
    df.loc[att, "auth_response"] = np.where(df.loc[att, "source"] == "real", "synthetic", "real")
    rep = validate_responses(df)
    assert any(e.ids == ("r02",) and e.scope == "all" for e in rep.exclusions)
    assert "r02" not in set(rep.for_task("classification")["participant_id"])


def test_everyone_identical_is_an_error_not_a_crash(base):
    df = base.copy()
    df["auth_response"] = "synthetic"
    with pytest.raises(ResponseDataError, match="no rater is left"):
        validate_responses(df)


def test_round_trip_csv_parquet(base, tmp_path):
    for ext in ("csv", "parquet"):
        p = tmp_path / f"r.{ext}"
        (base.to_csv(p, index=False) if ext == "csv" else base.to_parquet(p))
        rep = validate_responses(load_responses(p))
        assert len(rep.data) == 4 * 80
    with pytest.raises(ResponseDataError, match="unsupported"):
        load_responses(tmp_path / "x.xlsx") if (tmp_path / "x.xlsx").write_text("") is not None else None
