"""What determines an analysis: :class:`AnalysisConfig` (recorded in every output), from defaults, a TOML file
and ``key=value`` overrides through :mod:`cytocore.config`.

    cfg = load_analysis_config("analysis.toml", ["sampler.draws=2000", "morph_model=psi"])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from cytocore.config import ConfigError, build_config, load_toml, parse_overrides, to_dict

from .fitting import SamplerConfig
from .models import D_PRIME_CREDIBLE, D_PRIME_FLOOR, METAD_GROUP_FORMS

__all__ = ["ALL_ANALYSES", "AnalysisConfig", "ConfigError", "load_analysis_config"]

ALL_ANALYSES = ("sdt", "psychometric", "metacognition", "comparison", "power", "mrmc")
_CHOICES = {
    "sdt_synthetic": ("full", "all"),
    "morph_model": ("sdt", "psi"),
    "morph_family": ("cumulative_normal", "logistic", "weibull"),
    "class_family": ("logistic", "cumulative_normal", "weibull"),
    "class_evidence": ("model_margin", "model_confidence"),
    "confidence_scale": ("auto", "percent", "probability", "levels"),
    "morph_dispersion": ("stimulus", "betabinomial", "none"),
    "class_dispersion": ("stimulus", "none"),
}


@dataclass
class AnalysisConfig:
    """Everything that determines the analysis (recorded in every output)."""

    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    analyses: tuple[str, ...] = ALL_ANALYSES
    rope_halfwidth: float = 0.05        # ROPE around chance accuracy 0.5
    interval_prob: float = 0.95         # headline interval for the group accuracy
    hdi_prob: float = 0.94              # tables
    sdt_synthetic: str = "full"         # "full": real vs fully synthetic; "all": morphs count as synthetic
    stimulus_effects: bool = True
    # the morph curve: "sdt" = yes/no signal detection (d′ grows with strength, one criterion per rater; the
    # real-or-synthetic design); "psi" = ψ = γ + (1 − γ − λ)F, for forced-choice designs
    morph_model: str = "sdt"
    morph_family: str = "cumulative_normal"
    morph_gamma: float | str = "free"   # ψ form only
    class_family: str = "logistic"
    class_gamma: float | str = "chance"  # "chance" = 1/n_classes, "free", or a number
    class_evidence: str = "model_margin"
    # stimulus difficulty in the morph and class-evidence models: a stimulus effect (one row per answer), the
    # beta-binomial's overdispersion (morph counts only) or neither (docs/analysis.md: chosen by LOO)
    morph_dispersion: str = "stimulus"
    class_dispersion: str = "stimulus"
    lapse: float | str = "free"
    # meta-d′: an M-ratio (meta-d′/d′) only for observers whose d′ is above metad_d_floor with posterior probability
    # ≥ metad_credible; the others get meta-d′ and the type-2 AUROC (docs/analysis.md: why the floor is not 0)
    metad_d_floor: float = D_PRIME_FLOOR
    metad_credible: float = D_PRIME_CREDIBLE
    # the experts' group M-ratio: "raters" (the geometric mean over these raters, each rater's log M on its own) or
    # "population" (HMeta-d's hierarchical log M ~ N(μ, σ); diverged in the gate's criteria scenario, docs/analysis.md)
    metad_group: str = "raters"
    anomaly_threshold: float | None = None
    confidence_scale: str = "auto"
    power_raters: tuple[int, ...] = (5, 10, 20, 40)
    power_trials: tuple[int, ...] = (100, 300, 600)
    power_sims: int = 300
    # MRMC (Obuchowski–Rockette, Hillis df): test level, and the sizing table's AUC difference and grid
    mrmc_alpha: float = 0.05
    mrmc_effect: float = 0.05
    mrmc_readers: tuple[int, ...] = (5, 10, 15, 20)
    mrmc_cases: tuple[int, ...] = (100, 200, 400)
    min_attention_accuracy: float | None = 0.5
    # analyses whose fits run side by side in separate processes (each fit's chains then one after the other):
    # None = one process per CPU; 1 = one fit after another, each fit's chains in parallel (SamplerConfig.cores)
    jobs: int | None = None

    def validate(self) -> "AnalysisConfig":
        """Check choices and ranges; numbers given as text for γ/λ become numbers.  Errors name the field."""
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"config field '{name}': {getattr(self, name)!r} is not one of {list(allowed)}")
        if self.morph_model == "sdt" and self.morph_family == "weibull":
            raise ConfigError("config field 'morph_family': the yes/no morph model takes 'cumulative_normal' or "
                              "'logistic' (the Weibull is for the ψ form, morph_model = 'psi')")
        for name, words in (("morph_gamma", ("free",)), ("class_gamma", ("free", "chance")), ("lapse", ("free",))):
            v = getattr(self, name)
            if isinstance(v, str) and v not in words:
                try:
                    v = float(v)
                except ValueError:
                    raise ConfigError(f"config field '{name}': use a number or one of {list(words)}, got {v!r}") from None
                setattr(self, name, v)
            if not isinstance(v, str) and not 0 <= v < 1:
                raise ConfigError(f"config field '{name}': a rate in [0, 1), got {v}")
        unknown = [a for a in self.analyses if a not in ALL_ANALYSES]
        if unknown:
            raise ConfigError(f"config field 'analyses': unknown {unknown}; choose from {list(ALL_ANALYSES)}")
        if not 0 < self.rope_halfwidth < 0.5 or not 0 < self.interval_prob < 1 or not 0 < self.hdi_prob < 1:
            raise ConfigError("config fields 'rope_halfwidth' (0–0.5), 'interval_prob' and 'hdi_prob' (0–1) are out "
                              "of range")
        if not 0 < self.mrmc_alpha < 1 or not 0 < self.mrmc_effect < 0.5:
            raise ConfigError("config fields 'mrmc_alpha' (0–1) and 'mrmc_effect' (an AUC difference, 0–0.5) are out "
                              "of range")
        if self.metad_d_floor < 0 or not 0.5 <= self.metad_credible < 1:
            raise ConfigError("config fields 'metad_d_floor' (a d′, ≥ 0) and 'metad_credible' (a probability in "
                              f"[0.5, 1)) are out of range (got {self.metad_d_floor}, {self.metad_credible})")
        if self.metad_group not in METAD_GROUP_FORMS:
            raise ConfigError(f"config field 'metad_group': {self.metad_group!r}; use one of "
                              f"{', '.join(METAD_GROUP_FORMS)}")
        if self.power_sims < 0:
            raise ConfigError(f"config field 'power_sims': simulated studies per design, ≥ 0 (got {self.power_sims}; "
                              "0 skips the power table)")
        if self.jobs is not None and self.jobs < 1:
            raise ConfigError(f"config field 'jobs': must be ≥ 1 (got {self.jobs}); leave it unset to use one per CPU")
        try:
            self.sampler.validate()
        except ValueError as e:
            raise ConfigError(f"config field {e}") from None
        return self

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


def load_analysis_config(path: str | Path | None = None, overrides: Iterable[str] | Mapping[str, Any] | None = None
                         ) -> AnalysisConfig:
    """Defaults, then the ``[analysis]`` table (or the top level) of a TOML file, then ``key=value`` overrides
    (dotted for the sampler: ``sampler.draws=2000``)."""
    data = load_toml(path, table="analysis") if path is not None else {}
    over = overrides if isinstance(overrides, Mapping) else parse_overrides(overrides)
    return build_config(AnalysisConfig, data, over)
