"""Run the cytomodel command line as the tests do: exit status 0 asserted, the warnings it raised returned."""
import warnings

from cytomodel.cli import main


def run_cli(argv: list[str]) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(argv) == 0
    return [str(w.message) for w in caught]
