"""An export's two tables (responses, stimuli) read and joined in one place; a single joined table — an older
export, another tool's — read as it is; the checks that tie the two tables together."""
from pathlib import Path

import pandas as pd
import pytest

from analysis.simulate import simulate_study
from cytocore.schema import (RESPONSE_COLUMNS, STIMULUS_TABLE_COLUMNS, ResponseDataError, join_stimuli,
                             load_export_tables, load_responses, model_prob_columns)
from cytocore.study_files import export_file, stimuli_table_for
from cytocore.validation import validate_responses

OLD_EXPORT = Path(__file__).parent / "data" / "export_7b00395"   # written by `cytostudy export` at commit 7b00395


@pytest.fixture(scope="module")
def joined():
    return simulate_study(n_raters=3, n_trials=40, classes=("a", "b", "c"), seed=2)


def split(joined: pd.DataFrame, unanswered: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(responses, stimuli) of a joined table, the stimulus table with ``unanswered`` more main stimuli (copies
    of answered ones under new ids)."""
    responses = joined[list(RESPONSE_COLUMNS)]
    stimuli = joined[list(STIMULUS_TABLE_COLUMNS) + model_prob_columns(joined)].drop_duplicates("stimulus_id")
    extra = stimuli.iloc[:unanswered].assign(stimulus_id=[f"never-{i}" for i in range(unanswered)])
    stimuli = pd.concat([stimuli.sort_values("stimulus_id"), extra], ignore_index=True)
    return responses.reset_index(drop=True), stimuli.assign(role="main")


def write_pair(folder: Path, responses: pd.DataFrame, stimuli: pd.DataFrame, suffix: str = ".parquet") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / f"responses{suffix}"
    for df, path in ((responses, data), (stimuli, stimuli_table_for(data))):
        df.to_parquet(path) if suffix == ".parquet" else df.to_csv(path, index=False)
    return data


def test_the_stimulus_table_is_named_beside_the_responses(tmp_path):
    assert stimuli_table_for(tmp_path / "responses.parquet") == tmp_path / "stimuli.parquet"
    assert stimuli_table_for(tmp_path / "responses-20260101T0000Z.csv") == tmp_path / "stimuli-20260101T0000Z.csv"
    assert stimuli_table_for(tmp_path / "mine.parquet") == tmp_path / "mine-stimuli.parquet"
    assert export_file(tmp_path) == tmp_path / "responses.parquet"
    (tmp_path / "responses.csv").write_text("")
    assert export_file(tmp_path) == tmp_path / "responses.csv"      # a folder with only the CSV pair
    assert export_file(tmp_path / "x.csv") == tmp_path / "x.csv"


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_two_tables_read_as_the_joined_table(joined, tmp_path, suffix):
    responses, stimuli = split(joined)
    data = write_pair(tmp_path, responses, stimuli, suffix)
    for path in (data, tmp_path):                     # the responses file, or the export folder
        df, st = load_export_tables(path)
        assert st is not None and len(st) == joined["stimulus_id"].nunique()
        cols = [c for c in joined.columns if c not in ("auth_confidence", "class_confidence")]
        pd.testing.assert_frame_equal(df[cols], joined[cols], check_dtype=False)
    rep = validate_responses(df, stimuli=st)
    assert rep.stimuli is not None and len(rep.model_rows()) == len(st)


def test_a_single_joined_table_reads_unchanged(joined, tmp_path):
    joined.to_parquet(tmp_path / "responses.parquet")
    df, st = load_export_tables(tmp_path / "responses.parquet")
    assert st is None
    pd.testing.assert_frame_equal(df, joined)
    rep = validate_responses(df)
    assert rep.stimuli is None
    pd.testing.assert_frame_equal(rep.model_rows(), rep.for_task("model"))


def test_an_older_single_table_export_still_loads_and_validates():
    """The file `cytostudy export` wrote before the two tables: source, class and model columns on every row and the
    raw confidence percent beside the level."""
    for data in (OLD_EXPORT / "responses.csv", OLD_EXPORT / "responses.parquet", OLD_EXPORT):
        df, st = load_export_tables(data)
        assert st is None and len(df) == 24 and {"auth_confidence", "source", "model_prob_alpha"} <= set(df.columns)
        rep = validate_responses(df)
        assert rep.study_id == "tiny" and len(rep.data) == 18 and rep.confidence_levels == 4
    assert df["auth_confidence"].max() == 100.0


def test_every_stimulus_enters_the_model_side_answered_ones_first_in_answer_order(joined):
    responses, stimuli = split(joined, unanswered=3)
    rep = validate_responses(join_stimuli(responses, stimuli), stimuli=stimuli)
    rows = rep.model_rows()
    before = rep.for_task("model").drop_duplicates("stimulus_id")["stimulus_id"].tolist()
    assert rows["stimulus_id"].tolist() == before + ["never-0", "never-1", "never-2"]
    single = validate_responses(joined)              # the same answers as one joined table: only the answered
    assert single.model_rows()["stimulus_id"].drop_duplicates().tolist() == before


def test_only_main_stimuli_of_the_stimulus_table_enter_the_model_side(joined):
    responses, stimuli = split(joined, unanswered=2)
    stimuli.loc[stimuli["stimulus_id"] == "never-0", "role"] = "example"
    rep = validate_responses(join_stimuli(responses, stimuli), stimuli=stimuli)
    assert "never-0" not in set(rep.model_rows()["stimulus_id"]) and "never-1" in set(rep.model_rows()["stimulus_id"])


def test_an_answered_stimulus_missing_from_the_stimulus_table_names_the_files_and_ids(joined, tmp_path):
    responses, stimuli = split(joined)
    gone = sorted(stimuli["stimulus_id"])[:2]
    data = write_pair(tmp_path, responses, stimuli[~stimuli["stimulus_id"].isin(gone)])
    with pytest.raises(ResponseDataError) as e:
        load_export_tables(data)
    msg = str(e.value)
    assert "2 stimulus id(s) answered in" in msg and str(data) in msg and str(tmp_path / "stimuli.parquet") in msg
    assert all(repr(g) in msg for g in gone) and "cytostudy export" in msg
    with pytest.raises(ResponseDataError, match="not in the stimulus table"):   # validation checks the same
        validate_responses(joined, stimuli=stimuli[~stimuli["stimulus_id"].isin(gone)])


def test_a_stimulus_twice_in_the_stimulus_table_or_copies_in_the_responses_are_refused(joined, tmp_path):
    responses, stimuli = split(joined)
    with pytest.raises(ResponseDataError, match="more than once"):
        join_stimuli(responses, pd.concat([stimuli, stimuli.iloc[:1]]))
    with pytest.raises(ResponseDataError, match="lacks column.*true_class"):
        join_stimuli(responses, stimuli.drop(columns="true_class"))
    with pytest.raises(ResponseDataError, match="already carries stimulus column.*source"):
        join_stimuli(joined, stimuli)


def test_an_unanswered_stimulus_is_checked_too(joined):
    responses, stimuli = split(joined, unanswered=1)
    stimuli.loc[stimuli["stimulus_id"] == "never-0", "source"] = "fake"
    with pytest.raises(ResponseDataError, match="the stimulus table: column 'source'.*'fake'"):
        validate_responses(join_stimuli(responses, stimuli), stimuli=stimuli)
