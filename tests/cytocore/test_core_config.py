"""The shared config mechanism: types checked against the dataclass before any work, errors name the field."""
from dataclasses import dataclass, field

import pytest

from cytocore.config import ConfigError, build_config, load_toml, parse_overrides, to_dict


@dataclass
class Inner:
    levels: int = 4
    labels: list[str] = field(default_factory=lambda: ["a", "b"])


@dataclass
class Outer:
    name: str = "x"
    rate: float = 0.5
    flag: bool = True
    sizes: tuple[int, ...] = (1, 2)
    limit: int | None = None
    inner: Inner = field(default_factory=Inner)

    def validate(self):
        if self.rate < 0:
            raise ConfigError(f"config field 'rate': must be >= 0 (got {self.rate})")
        return self


def test_defaults_file_values_and_dotted_overrides(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('name = "y"\nrate = 1\n[inner]\nlevels = 6\n')
    over = parse_overrides(["inner.labels=['p', 'q']", "sizes=[3, 4]", "limit=none", "name=plain text"])
    cfg = build_config(Outer, load_toml(f), over)
    assert cfg.name == "plain text" and cfg.rate == 1.0 and isinstance(cfg.rate, float)
    assert cfg.inner.levels == 6 and cfg.inner.labels == ["p", "q"] and cfg.sizes == (3, 4) and cfg.limit is None
    assert to_dict(cfg) == {"name": "plain text", "rate": 1.0, "flag": True, "sizes": [3, 4], "limit": None,
                            "inner": {"levels": 6, "labels": ["p", "q"]}}


@pytest.mark.parametrize("data, field_name", [
    ({"inner": {"levels": "three"}}, "inner.levels"),     # a string where an integer belongs
    ({"inner": {"levels": 4.5}}, "inner.levels"),         # a float where an integer belongs
    ({"flag": "no"}, "flag"),                             # a string where true/false belongs
    ({"name": 1234}, "name"),                             # a number where a string belongs
    ({"inner": {"labels": "a"}}, "inner.labels"),         # a string where a list belongs
    ({"sizes": 3}, "sizes"),
    ({"nonsense": 1}, "nonsense"),
    ({"inner": {"nonsense": 1}}, "inner.nonsense"),
    ({"rate": -1.0}, "rate"),                             # the class's own validation
])
def test_bad_values_name_the_field(data, field_name):
    with pytest.raises(ConfigError, match=field_name.replace(".", r"\.")):
        build_config(Outer, data)


def test_command_line_text_is_typed_by_the_field():
    cfg = build_config(Outer, overrides=parse_overrides(["rate=1e-3", "flag=false", "limit=7", "inner.levels=3"]))
    assert (cfg.rate, cfg.flag, cfg.limit, cfg.inner.levels) == (1e-3, False, 7, 3)
    with pytest.raises(ConfigError, match="rate"):
        build_config(Outer, overrides=parse_overrides(["rate=fast"]))
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["rate"])


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_toml(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("rate = = 1")
    with pytest.raises(ConfigError, match="bad.toml"):
        load_toml(bad)
