"""The analysis config: TOML file, several overrides after one --set, flags in between; errors name the field."""
import pytest

from analysis.cli import build_parser, main, report_config
from analysis.config import AnalysisConfig, ConfigError, load_analysis_config


def test_defaults_file_and_overrides(tmp_path):
    toml = tmp_path / "analysis.toml"
    toml.write_text('[analysis]\nmorph_model = "psi"\nmorph_gamma = 0.1\n[analysis.sampler]\ndraws = 321\n')
    cfg = load_analysis_config(toml, ["sampler.chains=3", "class_gamma=0.2", "analyses=[\"sdt\"]"])
    assert (cfg.morph_model, cfg.morph_gamma, cfg.sampler.draws, cfg.sampler.chains) == ("psi", 0.1, 321, 3)
    assert cfg.class_gamma == 0.2 and cfg.analyses == ("sdt",)
    assert AnalysisConfig().sampler.chains == 4 and AnalysisConfig().morph_model == "sdt"


@pytest.mark.parametrize("over, field", [(["morph_model=logit"], "morph_model"), (["sampler.draws=0"], "draws"),
                                         (["lapse=lots"], "lapse"), (["nosuch=1"], "nosuch"),
                                         (["analyses=[\"sdt\", \"x\"]"], "analyses"),
                                         (["metad_group=everyone"], "metad_group")])
def test_bad_values_name_the_field(over, field):
    with pytest.raises(ConfigError, match=field):
        load_analysis_config(None, over)


def test_cli_precedence_flags_then_set(tmp_path):
    toml = tmp_path / "a.toml"
    toml.write_text("[sampler]\ndraws = 300\ntune = 300\n")
    a = build_parser().parse_args(["report", "--data", "x.csv", "--out", "o", "--config", str(toml), "--draws", "400",
                                   "--set", "sampler.tune=222", "rope_halfwidth=0.1", "--set", "jobs=1"])
    cfg = report_config(a)
    assert (cfg.sampler.draws, cfg.sampler.tune, cfg.rope_halfwidth, cfg.jobs) == (400, 222, 0.1, 1)


def test_cli_bad_config_exits_2_naming_field_and_flag(tmp_path, capsys):
    assert main(["report", "--data", str(tmp_path / "x.csv"), "--out", str(tmp_path / "o"),
                 "--set", "sampler.draws=none"]) == 2
    err = capsys.readouterr().err
    assert "sampler.draws" in err and "--draws" in err
