"""Typed configs: a dataclass is the schema; TOML files, dicts and ``key=value`` overrides fill it.

One mechanism for every config of the project (training, classifier, study, analysis)::

    cfg = build_config(StudyConfig, load_toml(path), overrides=parse_overrides(["stimuli.n_per_class=3"]))

Values are checked against the field's annotation (``int``, ``float``, ``bool``, ``str``, ``list[...]``,
``tuple[...]``, ``X | None``, ``dict``, nested dataclasses) before any work, and an error names the field and what
is allowed. Strings from a command line are parsed as TOML values (``3``, ``1e-3``, ``true``, ``[16, 32]``, ``none``);
a string field also takes the bare text.
"""
from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Mapping


class ConfigError(ValueError):
    """A bad config value or file; the message names the field (or file) and what to do."""


class ConfigFileNotFound(ConfigError, FileNotFoundError):
    """The config file named does not exist."""


_NONE_WORDS = {"none", "null"}


def load_toml(path: str | Path, table: str | None = None) -> dict[str, Any]:
    """Read a TOML file (optionally one ``[table]`` of it, or the top level when that table is absent)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigFileNotFound(f"config file {path} does not exist")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: not valid TOML ({exc})") from None
    if table is not None and table in data:
        if not isinstance(data[table], dict):
            raise ConfigError(f"config file {path}: [{table}] must be a table")
        return dict(data[table])
    return data


def parse_overrides(items: Iterable[str] | None) -> dict[str, str]:
    """``["a=1", "section.b=x"]`` -> ``{"a": "1", "section.b": "x"}`` (values stay text; the field types them)."""
    out: dict[str, str] = {}
    for text in items or ():
        if "=" not in text:
            raise ConfigError(f"override {text!r} must look like key=value, e.g. max_steps=5000")
        key, value = text.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"override {text!r} has no key before '='")
        out[key] = value
    return out


def nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted keys into nested dicts: ``{"design.breaks": x}`` -> ``{"design": {"breaks": x}}``."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {key!r}: {p!r} is a value, not a section")
        node[leaf] = value
    return out


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict update (tables merge, values replace)."""
    out = dict(base)
    for k, v in update.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def build_config(cls, data: Mapping[str, Any] | None = None, overrides: Mapping[str, Any] | None = None,
                 where: str = "", error: type[ConfigError] = ConfigError):
    """An instance of dataclass ``cls`` from defaults, then ``data`` (nested dicts), then dotted ``overrides``.

    Every value is type-checked; unknown fields are errors. ``validate()`` runs when the class defines it.
    """
    merged = merge(dict(data or {}), nest(overrides or {}))
    try:
        obj = _build(cls, merged, where)
    except ConfigError as exc:
        raise error(str(exc)) from None
    validate = getattr(obj, "validate", None)
    return validate() if callable(validate) else obj


def field_names(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def to_dict(obj) -> dict[str, Any]:
    """A config as plain JSON/TOML values (tuples become lists), for provenance records."""
    def plain(v):
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v
    return plain(obj)


# --------------------------------------------------------------------------------------------- internals
def _build(cls, data: Mapping[str, Any], where: str):
    if not isinstance(data, Mapping):
        raise ConfigError(f"config {'[' + where + ']' if where else ''} must be a table of fields, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        known = ", ".join(sorted(fields))
        raise ConfigError(f"unknown config field(s) {', '.join(_name(where, u) for u in unknown)}; "
                          f"known fields{' of [' + where + ']' if where else ''}: {known}")
    values = {name: coerce(hints[name], value, _name(where, name)) for name, value in data.items()}
    return cls(**values)


def _name(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _describe(tp) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is type(None):
        return "none"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin in (list, tuple):
        inner = args[0] if args else Any
        return f"a list of {_describe(inner)}s"
    if origin is dict or tp is dict:
        return "a table"
    if dataclasses.is_dataclass(tp):
        return "a table"
    return {int: "an integer", float: "a number", bool: "true/false", str: "a string"}.get(tp, str(tp))


def coerce(tp, value: Any, name: str) -> Any:
    """``value`` as type ``tp`` or a :class:`ConfigError` naming ``name``; command-line text is parsed as TOML."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if isinstance(value, str) and value.strip()[:1] in {"'", '"'}:
        value = _parse_text(value, name)  # a quoted string from a command line
    if isinstance(value, str) and tp is not str and not (origin in (typing.Union, types.UnionType) and str in args):
        value = _parse_text(value, name)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        if isinstance(value, str) and value.strip().lower() in _NONE_WORDS and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return coerce(a, value, name)
            except ConfigError as exc:
                errors.append(exc)
        raise ConfigError(f"config field '{name}': expected {_describe(tp)}, got {value!r}")
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if dataclasses.is_dataclass(value):
            return value
        return _build(tp, value, name)
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config field '{name}': expected {_describe(tp)} (e.g. [..]), got {value!r}")
        inner = args[0] if args else Any
        items = [coerce(inner, v, f"{name}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if (origin is tuple or tp is tuple) else items
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"config field '{name}': expected a table, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config field '{name}': expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config field '{name}': expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config field '{name}': expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"config field '{name}': expected a string (in quotes), got {value!r}")
        return value
    return value


def _parse_text(text: str, name: str) -> Any:
    stripped = text.strip()
    if stripped.lower() in _NONE_WORDS or stripped == "":
        return None
    try:
        return tomllib.loads(f"v = {stripped}")["v"]
    except tomllib.TOMLDecodeError:
        raise ConfigError(f"config field '{name}': cannot parse {text!r} (numbers like 3 or 1e-3, true/false, "
                          "lists like [16, 32], strings in quotes)") from None
