import pytest

from cytomodel.train.config import PRESETS, load_config


def test_presets_validate():
    for name in PRESETS:
        cfg = load_config(name)
        assert cfg.preset == name


def test_overrides_and_file(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("[train]\nmax_steps = 123\nblock_out_channels = [16, 32]\n")
    cfg = load_config("cpu-32", f, ["learning_rate=1e-3", "min_snr_gamma=none"])
    assert cfg.max_steps == 123 and cfg.block_out_channels == (16, 32)
    assert cfg.learning_rate == 1e-3 and cfg.min_snr_gamma is None


@pytest.mark.parametrize("override, field", [("batch_size=0", "batch_size"), ("nonsense=1", "nonsense"),
                                             ("flips=3", "flips"), ("beta_schedule='cubic'", "beta_schedule"),
                                             ("learning_rate=fast", "learning_rate")])
def test_bad_values_name_the_field(override, field):
    with pytest.raises(ValueError, match=field):
        load_config("cpu-32", overrides=[override])


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown preset"):
        load_config("gpu-9000")
