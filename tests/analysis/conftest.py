import sys
import warnings

import pytest

warnings.filterwarnings("ignore", message=".*ArviZ is undergoing a major refactor.*")


@pytest.fixture(autouse=True, scope="session")
def _no_torch():
    yield
    assert "torch" not in sys.modules, "analysis tests must not import torch"
