"""Checks on a built stimulus set: the leak audit (everything a browser sees but the pixels) and the
content-confound check (simple image statistics), run at the end of every build and by ``cytostudy audit``."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..study import audit_population
from .confounds import ConfoundResult, confound_check
from .leak import AuditResult, LeakAuditError, leak_audit, png_chunks

__all__ = ["AuditReport", "AuditResult", "ConfoundResult", "LeakAuditError", "confound_check", "leak_audit",
           "png_chunks", "run_audits"]


@dataclass
class AuditReport:
    leak: AuditResult
    confounds: ConfoundResult

    @property
    def passed(self) -> bool:
        return self.leak.passed and self.confounds.passed

    def summary(self) -> str:
        return self.leak.summary() + "; " + self.confounds.summary()

    def lines(self) -> list[str]:
        return [self.leak.summary(), *self.leak.notes, self.confounds.summary(), *self.confounds.notes]

    def verdict(self) -> dict[str, Any]:
        """The short form kept in study.json."""
        return {"passed": self.passed, "auroc": self.leak.auroc, "p_value": self.leak.p_value,
                "confounds_flagged": self.confounds.flagged, "confound_auroc": self.confounds.auroc}

    def to_dict(self) -> dict[str, Any]:
        return {**self.leak.to_dict(), "confounds": self.confounds.to_dict(), "passed": self.passed}


def run_audits(manifest: pd.DataFrame, study_dir: str | Path, cfg, sequences=None,
               crop_fraction: float | None = None) -> AuditReport:
    """Both checks on the audited population (all but the labelled example cells)."""
    s = cfg.stimuli
    m = audit_population(manifest)
    leak = leak_audit(m, study_dir, threshold=s.leak_auroc_max, sequences=sequences, seed=s.seed,
                      n_permutations=s.leak_permutations)
    conf = confound_check(m, study_dir, crop_fraction=crop_fraction, threshold=s.confound_auroc_max, seed=s.seed,
                          n_permutations=s.leak_permutations)
    return AuditReport(leak, conf)
