"""How the diffusion classifier estimates errors: :class:`ClassifierConfig` and its allowed values (torch-free).

A *draw* is one (t, ε, dihedral view) of an image, shared by every class still evaluated for it. The fields that
count draws keep the names of the command line's flags and of the results' ``trials`` column: ``trials`` (draws per
image at most), ``min_trials`` (draws before the first test)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

STRATEGIES = ("paired-ttest", "topk", "exhaustive")
SELECTIONS = ("vdc", "stratified", "random")
WEIGHTINGS = ("uniform", "min-snr")
ERROR_REGIONS = ("image", "disc")
LAB_CONDITIONS = ("none", "unknown")
ANOMALY_SCORES = ("zeta", "best-error", "class-gain", "texture", "class-gain+texture", "class-gain+texture-gain",
                  "class-gain+texture+baseline", "class-gain+texture+baseline-softmax")
# the raw statistics each anomaly score standardises and averages (columns of a results table): ``novelty_raw`` from
# the base stage's errors; ``texture_raw`` (the texture gain) and ``texture_profile`` from a cascade's 128-px stage
# (:mod:`.texture`). The profile is read from the per-level columns ``texture_t<t>`` (gains) and
# ``texture_null_t<t>`` (log null-class errors): how far a cell's values across noise levels lie from those of its
# class's validation cells (Mahalanobis distance; a reference fitted before the null columns existed reads the gains)
PROFILE_PART = "texture_profile"
LEVEL_PREFIX = "texture_t"
NULL_LEVEL_PREFIX = "texture_null_t"
SCORE_PARTS = {"best-error": ("novelty_raw",), "class-gain": ("novelty_raw",),
               "texture": ("texture_raw", PROFILE_PART),
               "class-gain+texture": ("novelty_raw", "texture_raw", PROFILE_PART),
               "class-gain+texture-gain": ("novelty_raw", "texture_raw"),   # without the profile: best on PMY
               "class-gain+texture+baseline": ("novelty_raw", "texture_raw", PROFILE_PART, "baseline_neighbours"),
               # the baseline's 1 − max softmax instead: it flags fewer of another lab's normal cells
               # (docs/classifier.md)
               "class-gain+texture+baseline-softmax": ("novelty_raw", "texture_raw", PROFILE_PART, "baseline_raw")}
# ``baseline_neighbours``: how far a baseline CNN's features of the same cell lie from its training cells' (cosine
# distance to the k-th nearest; :mod:`.baseline_part`); ``baseline_distance``: from every class's (relative
# Mahalanobis); ``baseline_raw``: its 1 − max softmax. A +baseline reference fitted before a part existed reads the
# one it was fitted on
BASELINE_PARTS = ("baseline_raw", "baseline_distance", "baseline_neighbours")
# the baseline's parts that need its feature density (``baseline fit-density``), and the training features kept in it
DENSITY_PARTS = ("baseline_distance", "baseline_neighbours")
FIT_DENSITY = "fit one with `cytomodel baseline fit-density --model DIR --data TRAINING_DATA --split train`"
# fields that change the scale of the errors, and so the meaning of a fitted temperature
PLAN_LENGTH = 256
SCALE_FIELDS = ("t_min", "t_max", "weighting", "min_snr_gamma", "tta", "error_region", "disc_radius", "lab_condition")
# what those fields were before they existed (a temperature fitted then was fitted with these)
SCALE_DEFAULTS = {"error_region": "image", "disc_radius": 0.35, "lab_condition": "none"}


@dataclass
class ClassifierConfig:
    """How errors are estimated. Defaults: chosen on PBC *validation* data with benchmarks/classifier_design.py
    (docs/classifier.md): t in [100, 900] with uniform weights, top-k pruning to 4 classes after 2 draws and to 2
    after 6, at most 24 draws (68 UNet calls for 8 classes)."""
    strategy: str = "topk"                    # "paired-ttest" | "topk" | "exhaustive"
    trials: int = 24                          # noise draws per image at most (exactly this many for "exhaustive")
    t_min: int = 100                          # timestep range (inclusive) of the draws
    t_max: int = 900
    timestep_selection: str = "vdc"           # "vdc" | "stratified" | "random"
    weighting: str = "uniform"                # "uniform" | "min-snr" (the training loss weights)
    min_snr_gamma: float = 5.0
    tta: bool = True                          # a random dihedral view of the image per draw (same for all classes)
    p_value: float = 2e-3                     # paired t-test threshold (CytoDiffusion)
    min_trials: int = 4                       # draws before the first test
    test_every: int = 1                       # draws between tests
    topk_schedule: tuple[tuple[int, int], ...] = ((2, 4), (6, 2))  # (after n draws, keep k classes)
    precision: str = "bf16"                   # "bf16" | "fp32"
    batch_size: int = 512                     # max image-class pairs per UNet call
    image_batch: int = 64                     # images processed together
    seed: int = 0
    anomaly_k: int = 10                       # ζ uses the best class and the next k-1
    anomaly: str = "zeta"                     # what anomaly_score is: "zeta" (−ζ, CytoDiffusion), "best-error" (how
                                              # poorly the predicted class explains the cell) or "class-gain" (how
                                              # little it explains beyond no class; one null-class call per draw),
                                              # "texture" (how little the class explains the cell's fine detail,
                                              # and how unlike its class's that detail is across scales, from a
                                              # cascade's 128-px stage), "class-gain+texture" (the mean of both;
                                              # "class-gain+texture-gain" without the profile) or
                                              # "class-gain+texture+baseline" (and how far a baseline CNN's
                                              # features lie from every class's; "…-softmax": its 1 − max softmax),
                                              # each part standardised against validation cells of that class
    error_region: str = "image"               # "image": mean squared error over the whole image; "disc": inside a
    disc_radius: float = 0.35                 # centred disc of this radius (fraction of the width) — the cell
    lab_condition: str = "none"               # "none": the training lab's look; "unknown": a model trained with lab
                                              # variation is not told the image's lab (other hospitals' cells)
    temperature: float | None = None          # None: the model's fitted temperature (or 1 if it has none)

    def validate(self) -> "ClassifierConfig":
        def bad(name: str, why: str) -> None:
            raise ValueError(f"classifier config '{name}': {why} (got {getattr(self, name)!r})")

        if self.strategy not in STRATEGIES:
            bad("strategy", f"use one of {', '.join(STRATEGIES)}")
        if self.timestep_selection not in SELECTIONS:
            bad("timestep_selection", f"use one of {', '.join(SELECTIONS)}")
        if self.weighting not in WEIGHTINGS:
            bad("weighting", f"use one of {', '.join(WEIGHTINGS)}")
        if self.trials < 1:
            bad("trials", "must be >= 1")
        if not 0 <= self.t_min <= self.t_max:
            bad("t_max", "need 0 <= t_min <= t_max")
        if not 0 < self.p_value < 1:
            bad("p_value", "must be in (0, 1)")
        if self.min_trials < 2:
            bad("min_trials", "a paired t-test needs at least 2 draws")
        if self.test_every < 1 or self.batch_size < 1 or self.image_batch < 1:
            bad("test_every", "test_every, batch_size and image_batch must be >= 1")
        if self.precision not in ("bf16", "fp32", "fp16"):
            bad("precision", "use 'bf16' or 'fp32'")
        sched = tuple((int(n), int(k)) for n, k in self.topk_schedule)
        if any(n < 1 or k < 1 for n, k in sched) or list(sched) != sorted(sched, key=lambda s: s[0]):
            bad("topk_schedule", "pairs (after_draws >= 1, keep_k >= 1) in increasing draw order")
        self.topk_schedule = sched
        if self.temperature is not None and self.temperature <= 0:
            bad("temperature", "must be positive")
        if self.error_region not in ERROR_REGIONS:
            bad("error_region", f"use one of {', '.join(ERROR_REGIONS)}")
        if not 0.05 <= self.disc_radius <= 0.71:
            bad("disc_radius", "must be in [0.05, 0.71] (a fraction of the image width)")
        if self.anomaly not in ANOMALY_SCORES:
            bad("anomaly", f"use one of {', '.join(ANOMALY_SCORES)}")
        if self.lab_condition not in LAB_CONDITIONS:
            bad("lab_condition", f"use one of {', '.join(LAB_CONDITIONS)}")
        return self

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["topk_schedule"] = [list(p) for p in self.topk_schedule]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ClassifierConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        if "topk_schedule" in d:
            d["topk_schedule"] = tuple(tuple(p) for p in d["topk_schedule"])
        return cls(**d).validate()

    @property
    def novelty_kind(self) -> str | None:
        """The statistic of the base stage's errors in ``novelty_raw`` ("best-error", "class-gain") or None."""
        if "novelty_raw" not in SCORE_PARTS.get(self.anomaly, ()):
            return None
        return "best-error" if self.anomaly == "best-error" else "class-gain"

    @property
    def needs_texture(self) -> bool:
        return "texture_raw" in SCORE_PARTS.get(self.anomaly, ())

    @property
    def needs_baseline(self) -> bool:
        return any(c in BASELINE_PARTS for c in SCORE_PARTS.get(self.anomaly, ()))

    def scale_key(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in SCALE_FIELDS}


def scale_key_of(config: dict[str, Any]) -> dict[str, Any]:
    """The fields of a (recorded) classifier config that set the scale of the errors, defaults filled in: what a
    fitted temperature or anomaly reference is keyed by."""
    return {k: config.get(k, SCALE_DEFAULTS.get(k)) for k in SCALE_FIELDS}
