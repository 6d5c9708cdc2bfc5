"""The analysis must run where torch is not installed: importing it (and its models) must not pull torch in."""
import subprocess
import sys


def test_analysis_does_not_import_torch():
    code = ("import sys, analysis, cytocore.schema, analysis.simulate, analysis.models, analysis.cli, analysis.pipeline, analysis.report, analysis.steps; "
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))")
    subprocess.run([sys.executable, "-c", code], check=True)
