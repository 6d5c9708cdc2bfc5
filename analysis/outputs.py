"""The report folder, written as results arrive: each fit (netCDF + its summary) the moment it finishes, each
step's tables and figures when the step ends — in whichever process ran it — so a later failure loses nothing.

    fits/<name>.nc, fits/<name>.json   tables/<name>.csv|md   figures/<name>.pdf|svg|png
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from cytocore.provenance import atomic_output, atomic_write_text, sha256_file

from .fitting import Fit
from .markdown import md_table

__all__ = ["OutputFolder"]


@dataclass
class OutputFolder:
    """Where a report goes, and the stamp (data hash, code version, config, lineage) every artefact carries."""

    root: Path
    stamp: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self.root = Path(self.root)
        for sub in ("tables", "fits", "figures"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    @property
    def line(self) -> str:
        s = self.stamp
        study = s.get("lineage", {}).get("study_content_hash", "unknown")
        return (f"code {s.get('code_version', '?')} · data sha256 {str(s.get('data_sha256', '?'))[:16]} · "
                f"study {str(study)[:16]} · {s.get('created_utc', '')}")

    def write_fit(self, fit: Fit) -> Path:
        idata = fit.idata
        attrs = {"data_sha256": self.stamp.get("data_sha256", ""), "code_version": self.stamp.get("code_version", ""),
                 "analysis_config": json.dumps(self.stamp.get("config", {}), default=str),
                 "lineage": json.dumps(self.stamp.get("lineage", {}), default=str)}
        for g in idata.groups():
            getattr(idata, g).attrs.update(attrs)
        path = self.root / "fits" / f"{fit.name}.nc"
        with atomic_output(path) as tmp:
            idata.to_netcdf(str(tmp))
        d = fit.diagnostics
        atomic_write_text(self.root / "fits" / f"{fit.name}.json", json.dumps({
            "model": fit.name, "ok": d.ok, "rhat_max": d.rhat_max, "ess_bulk_min": d.ess_bulk_min,
            "ess_tail_min": d.ess_tail_min, "divergences": d.divergences, "draws": d.n_draws,
            "problems": d.problems, "attempts": fit.attempts, "seconds": fit.seconds, "info": fit.info,
            "priors": fit.priors,
            "netcdf_sha256": sha256_file(path), **attrs}, indent=2, default=str))
        return path

    def write_tables(self, tables: dict[str, pd.DataFrame]) -> None:
        for name, t in tables.items():
            if t is None or t.empty:
                continue
            with atomic_output(self.root / "tables" / f"{name}.csv") as tmp:
                t.to_csv(tmp, index=False)
            atomic_write_text(self.root / "tables" / f"{name}.md", f"<!-- {self.line} -->\n\n" + md_table(t) + "\n")

    def draw(self, fn: Callable, result) -> dict[str, dict[str, str]]:
        """Run a step's figure function in the house style; returns name → {ext: path}."""
        import matplotlib.pyplot as plt

        from .figstyle import STYLE
        with plt.rc_context(STYLE):
            return fn(result, self.root / "figures", {"Subject": self.line})
