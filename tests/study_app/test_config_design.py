"""Study config validation and the trial-sequence design (pure functions, no model needed)."""
from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from study_app.config import StudyConfigError, config_hash, load_study_config
from study_app.design import counterbalanced_subsets, trial_sequence


def fake_manifest(n_per=4, classes=("a", "b", "c"), morphs=(0.5,), n_prac=2, n_att=1, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for c in classes:
        for _ in range(n_per):
            rows.append(("main", "real", c, 0.0))
            rows.append(("main", "synthetic", c, 1.0))
            for m in morphs:
                rows.append(("main", "synthetic", c, m))
    for src in ("real", "synthetic"):
        rows += [("practice", src, classes[i % len(classes)], 0.0 if src == "real" else 1.0) for i in range(n_prac)]
        rows += [("attention", src, classes[0], 0.0 if src == "real" else 1.0) for _ in range(n_att)]
    df = pd.DataFrame(rows, columns=["role", "source", "true_class", "morph_strength"])
    df["stimulus_id"] = [f"{x:016x}" for x in rng.integers(0, 2**62, len(df))]
    return df.sort_values("stimulus_id").reset_index(drop=True)


def test_config_defaults_and_toml(tmp_path):
    cfg = load_study_config()
    assert cfg.confidence.levels == 4 and cfg.stimuli.leak_auroc_max == 0.6
    p = tmp_path / "s.toml"
    p.write_text('[study]\nid = "x1"\ncode = "ABC"\n[stimuli]\nn_per_class = 7\nmorph_strengths = [0.25, 0.75]\n'
                 '[confidence]\nlevels = 3\nstyle = "labels"\nlabels = ["low", "mid", "high"]\n')
    cfg2 = load_study_config(p)
    assert (cfg2.id, cfg2.code, cfg2.stimuli.n_per_class, cfg2.stimuli.morph_strengths) == ("x1", "ABC", 7, [0.25, 0.75])
    assert config_hash(cfg2) != config_hash(cfg) and config_hash(cfg2) == config_hash(load_study_config(p))


@pytest.mark.parametrize("key,value,field", [
    ("stimuli.morph_strengths", [1.2], "morph_strengths"), ("confidence.levels", 1, "confidence.levels"),
    ("confidence.style", "stars", "confidence.style"), ("id", "bad id!", "id"),
    ("design.practice_trials", 99, "design.practice_trials"), ("stimuli.upscale", "magic", "upscale"),
])
def test_config_errors_name_the_field(key, value, field):
    with pytest.raises(StudyConfigError, match=field.split(".")[-1]):
        load_study_config(None, {key: value})


def test_unknown_field_is_an_error(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text("[design]\nblok_size = 3\n")
    with pytest.raises(StudyConfigError, match="blok_size"):
        load_study_config(p)


def test_sequence_is_seeded_per_participant():
    m = fake_manifest()
    cfg = load_study_config(None, {"design.block_size": 6, "design.attention_checks": 2})
    a, b = trial_sequence(m, cfg, 0), trial_sequence(m, cfg, 0)
    assert a == b                                   # reproducible
    c = trial_sequence(m, cfg, 1)
    assert [t.stimulus_id for t in a] != [t.stimulus_id for t in c]   # own order
    main = [t for t in a if t.phase == "main"]
    assert [t.trial_index for t in main] == list(range(len(main)))
    assert sum(t.is_attention_check for t in main) == 2
    assert all(not t.is_attention_check for t in main[:3])
    att = [t for t in main if t.is_attention_check]
    src = dict(zip(m["stimulus_id"], m["source"]))
    assert all(t.instructed_answer == src[t.stimulus_id] for t in att)
    # every main stimulus exactly once (no subsets configured)
    ids = [t.stimulus_id for t in main if not t.is_attention_check]
    assert sorted(ids) == sorted(m.loc[m.role == "main", "stimulus_id"])
    prac = [t for t in a if t.phase == "practice"]
    assert len(prac) == 4 and {src[t.stimulus_id] for t in prac} == {"real", "synthetic"}


def test_blocks_balance_real_and_synthetic():
    m = fake_manifest(n_per=4)
    cfg = load_study_config(None, {"design.block_size": 12, "design.attention_checks": 0})
    src = dict(zip(m["stimulus_id"], m["source"]))
    for k in range(5):
        main = [t for t in trial_sequence(m, cfg, k) if t.phase == "main"]
        by_block = Counter((t.block, src[t.stimulus_id]) for t in main)
        blocks = sorted({t.block for t in main})
        assert len(blocks) == 3
        reals = [by_block[(b, "real")] for b in blocks]
        syns = [by_block[(b, "synthetic")] for b in blocks]
        assert max(reals) - min(reals) <= 1 and max(syns) - min(syns) <= 1
        # block order is contiguous
        assert [t.block for t in main] == sorted(t.block for t in main)


def test_counterbalanced_subsets_give_each_image_the_same_number_of_raters():
    m = fake_manifest(n_per=4)        # 36 main stimuli
    cfg = load_study_config(None, {"design.stimuli_per_participant": 12, "design.attention_checks": 0})
    subsets = counterbalanced_subsets(m, cfg)
    assert len(subsets) == 3 and sorted(map(len, subsets)) == [12, 12, 12]
    assert sorted(sum(subsets, [])) == sorted(m.loc[m.role == "main", "stimulus_id"])
    src = dict(zip(m["stimulus_id"], m["source"]))
    for s in subsets:   # same source mix in every subset
        assert Counter(src[x] for x in s) == Counter({"synthetic": 8, "real": 4})
    counts = Counter()
    for k in range(9):   # 9 participants -> every image rated exactly 3 times
        counts.update(t.stimulus_id for t in trial_sequence(m, cfg, k) if t.phase == "main")
    assert set(counts.values()) == {3}


@pytest.mark.parametrize("key,value,field", [
    ("stimuli.n_per_class", "three", "stimuli.n_per_class"), ("stimuli.display_px", 384.5, "stimuli.display_px"),
    ("design.breaks", "no", "design.breaks"), ("code", 1234, "code"), ("roles", "haematologist", "roles"),
    ("stimuli.morph_strengths", 0.5, "stimuli.morph_strengths"), ("design.show_score", "maybe", "design.show_score"),
    ("stimuli.superres_steps", 0, "stimuli.superres_steps"), ("stimuli.leak_permutations", 30, "leak_permutations"),
    ("code", "has space", "code"), ("design.abandon_after_minutes", 0, "abandon_after_minutes"),
])
def test_every_field_is_type_checked_with_its_name(key, value, field):
    with pytest.raises(StudyConfigError, match=re.escape(field)):
        load_study_config(None, {key: value})


def test_a_toml_file_with_wrong_types_names_the_file_and_the_field(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text('[study]\ncode = 1234\n')
    with pytest.raises(StudyConfigError, match=r"s\.toml: config field 'code': expected a string"):
        load_study_config(p)
    p.write_text('[design]\nshow_score = "false"\nmin_rt_ms = 300\n')   # text that is clearly a value is read as it
    cfg = load_study_config(p)
    assert cfg.design.show_score is False and cfg.design.min_rt_ms == 300.0
