"""Atomic writes leave either the old file or the new one, never half of either; the version has one format."""
import json
import re

import pytest

import cytocore
from cytocore.provenance import atomic_output, code_version, write_json


def test_atomic_output_keeps_the_old_file_when_the_writer_fails(tmp_path):
    path = tmp_path / "table.csv"
    write_json(tmp_path / "x.json", {"a": 1})
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_output(path) as tmp:
            assert tmp.suffix == ".csv" and tmp.parent == path.parent
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["table.csv", "x.json"]
    with atomic_output(path) as tmp:
        tmp.write_text("new")
    assert path.read_text() == "new" and json.loads((tmp_path / "x.json").read_text()) == {"a": 1}


def test_code_version_format():
    v = code_version()
    assert v == cytocore.__version__ or re.fullmatch(re.escape(cytocore.__version__) + r"\+g[0-9a-f]{12}(\.dirty)?", v)
