"""One classification table for every classifier: today's names, and the baseline's old names mapped on read."""
import pandas as pd

from cytocore.classification import prob_column, prob_columns, with_current_names


def test_old_baseline_names_are_mapped_and_current_tables_are_left_as_they_are():
    old = pd.DataFrame({"path": ["a.png"], "label": ["x"], "predicted": ["x"], "confidence": [0.9],
                        "p_x": [0.9], "p_y": [0.1], "framing_status": ["ok"]})
    new = with_current_names(old)
    assert list(new.columns) == ["image", "label", "pred_class", "confidence", "prob_x", "prob_y", "framing_status"]
    assert prob_columns(new) == [prob_column("x"), prob_column("y")]
    assert with_current_names(new) is new


def test_nothing_is_overwritten_when_both_names_are_there():
    t = pd.DataFrame({"image": ["a"], "path": ["/data/a"], "pred_class": ["x"], "prob_x": [1.0], "p_value": [0.2]})
    assert list(with_current_names(t).columns) == list(t.columns)
