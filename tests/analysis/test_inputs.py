"""What the analysis reads from an export: both tables (the model side sees every stimulus, answered or not), the
confidence as the recorded level with no guess, and a single joined table as before."""
import numpy as np
import pandas as pd
import pytest

from analysis import prepare
from analysis.config import AnalysisConfig
from analysis.inputs import load_export
from analysis.simulate import simulate_study
from analysis.steps.base import Context
from cytocore.schema import RESPONSE_COLUMNS, STIMULUS_TABLE_COLUMNS, model_prob_columns
from cytocore.validation import validate_responses


@pytest.fixture(scope="module")
def joined():
    return simulate_study(n_raters=3, n_trials=40, classes=("a", "b", "c"), seed=5)


@pytest.fixture
def export(joined, tmp_path):
    """An export folder of ``joined``'s answers whose stimulus table has 4 main stimuli nobody answered."""
    stimuli = joined[list(STIMULUS_TABLE_COLUMNS) + model_prob_columns(joined)].drop_duplicates("stimulus_id")
    extra = stimuli.iloc[:4].assign(stimulus_id=[f"never-{i}" for i in range(4)])
    pd.concat([stimuli, extra], ignore_index=True).assign(role="main").to_parquet(tmp_path / "stimuli.parquet")
    joined[list(RESPONSE_COLUMNS)].to_parquet(tmp_path / "responses.parquet")
    return tmp_path


def test_the_model_side_sees_every_stimulus_of_the_stimulus_table(joined, export):
    df, lineage, stimuli = load_export(export)
    assert lineage["study_id"] == "sim" and len(stimuli) == joined["stimulus_id"].nunique() + 4
    two = Context(validate_responses(df, stimuli=stimuli), AnalysisConfig())
    one = Context(validate_responses(joined), AnalysisConfig())
    n = len(one.model)
    assert len(two.model) == n + 4 and set(two.model["stimulus_id"].iloc[n:]) == {f"never-{i}" for i in range(4)}
    # the answered stimuli come first, in the order a single joined table gives them, with the same judgements
    cols = ["stimulus_id", "source", "model_pred_class", "class_correct", "class_level_fixed"]
    pd.testing.assert_frame_equal(two.model[cols].iloc[:n], one.model[cols])
    assert two.model.attrs["anomaly_threshold"] == np.median(two.model["model_anomaly"])   # over every stimulus


def test_an_export_s_confidence_is_read_as_its_level_without_a_guess(joined):
    lev = joined["auth_confidence_level"]
    p, how = prepare.confidence_probability(None, lev, 4, 0.5)
    assert how.method == "levels" and "export states its scale" in how.description
    np.testing.assert_allclose(p, 0.5 + 0.5 * (lev.to_numpy() - 1) / 3)
    with pytest.raises(ValueError, match="confidence_scale 'percent'.*'levels' or 'auto'"):
        prepare.confidence_probability(None, lev, 4, 0.5, "percent")
    # a table made elsewhere with a raw percent column: still recognised as percent
    _, how = prepare.confidence_probability(joined["auth_confidence"], lev, 4, 0.5)
    assert how.method == "percent"
