"""Trial sequences: counterbalanced stimulus subsets, blocks balanced for source, seeded per-participant order.

Everything here is a pure function of (manifest, config, participant number), so a participant's sequence can be
recomputed and audited at any time, and the order of one participant does not depend on any other's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .config import StudyConfig


@dataclass(frozen=True)
class TrialSpec:
    phase: str                 # "practice" or "main"
    trial_index: int           # 0-based within the phase
    block: int
    stimulus_id: str
    is_attention_check: bool = False
    instructed_answer: str | None = None   # attention checks: the answer the participant is asked to give


def _rng(*keys: int) -> np.random.Generator:
    return np.random.default_rng([int(k) & 0xFFFFFFFF for k in keys])


def strata(manifest: pd.DataFrame) -> pd.Series:
    """Stratum of each stimulus: source, morph strength and class."""
    return (manifest["source"].astype(str) + "|" + manifest["morph_strength"].map(lambda m: f"{float(m):.3f}")
            + "|" + manifest["true_class"].astype(str))


def _deal(ids_by_stratum: dict[str, list[str]], n_bins: int, rng: np.random.Generator) -> list[list[str]]:
    """Deal stimuli stratum by stratum round-robin into ``n_bins`` bins (continuing across strata), so every bin
    gets the same number of each stratum, +-1."""
    bins: list[list[str]] = [[] for _ in range(n_bins)]
    pos = int(rng.integers(n_bins))
    for key in sorted(ids_by_stratum):
        ids = list(ids_by_stratum[key])
        rng.shuffle(ids)
        for sid in ids:
            bins[pos % n_bins].append(sid)
            pos += 1
    return bins


def main_pool(manifest: pd.DataFrame) -> pd.DataFrame:
    return manifest[manifest["role"] == "main"]


def n_subsets(manifest: pd.DataFrame, cfg: StudyConfig) -> int:
    n = len(main_pool(manifest))
    k = cfg.design.stimuli_per_participant
    return 1 if k <= 0 or k >= n else math.ceil(n / k)


def counterbalanced_subsets(manifest: pd.DataFrame, cfg: StudyConfig) -> list[list[str]]:
    """Partition the main stimuli into subsets of (about) ``stimuli_per_participant``, each with the same mix of
    source x morph strength x class; participant number k rates subset k mod S, so each image gets a balanced
    number of raters."""
    main = main_pool(manifest)
    S = n_subsets(manifest, cfg)
    by = {k: list(g["stimulus_id"]) for k, g in main.groupby(strata(main), sort=True)}
    return _deal(by, S, _rng(cfg.seed, 0xC0B1))


def trial_sequence(manifest: pd.DataFrame, cfg: StudyConfig, number: int, slot: int | None = None) -> list[TrialSpec]:
    """The full sequence (practice then main) for participant ``number`` (0-based, in order of arrival; it seeds the
    order). ``slot`` picks the counterbalanced subset (default: the number); a slot freed by an abandoned
    participant is given to the next one to join, so every subset keeps its share of complete raters."""
    rng = _rng(cfg.seed, 0x5EED, number)
    d = cfg.design
    seq: list[TrialSpec] = []

    # practice: balanced real / synthetic, shuffled
    prac = manifest[manifest["role"] == "practice"]
    n_prac = min(d.practice_trials, len(prac))
    if n_prac:
        real = list(prac.loc[prac["source"] == "real", "stimulus_id"])
        syn = list(prac.loc[prac["source"] == "synthetic", "stimulus_id"])
        rng.shuffle(real)
        rng.shuffle(syn)
        n_real = min(len(real), (n_prac + int(rng.integers(2))) // 2)
        chosen = real[:n_real] + syn[:n_prac - n_real]
        chosen += real[n_real:][:n_prac - len(chosen)]
        rng.shuffle(chosen)
        seq += [TrialSpec("practice", i, 0, sid) for i, sid in enumerate(chosen)]

    # main: this participant's counterbalanced subset, dealt into source-balanced blocks, shuffled within blocks
    subsets = counterbalanced_subsets(manifest, cfg)
    mine = set(subsets[(number if slot is None else slot) % len(subsets)])
    main = main_pool(manifest)
    main = main[main["stimulus_id"].isin(mine)]
    n_blocks = max(1, round(len(main) / d.block_size))
    by = {k: list(g["stimulus_id"]) for k, g in main.groupby(strata(main), sort=True)}
    blocks = _deal(by, n_blocks, rng)
    ordered: list[tuple[int, str]] = []
    for b, ids in enumerate(blocks):
        ids = list(ids)
        rng.shuffle(ids)
        ordered += [(b, sid) for sid in ids]

    # attention checks: instructed answers, spread over the sequence (never the first three trials)
    att = manifest[manifest["role"] == "attention"]
    n_att = min(d.attention_checks, len(att)) if len(ordered) >= 4 else 0
    if n_att:
        pool = list(att["stimulus_id"])
        rng.shuffle(pool)
        src = dict(zip(att["stimulus_id"], att["source"]))
        picks = [pool[i % len(pool)] for i in range(n_att)]
        seg = len(ordered) / (n_att + 1)
        inserts = sorted(min(len(ordered), max(3, int((i + 1) * seg + rng.integers(-int(seg // 3), int(seg // 3) + 1))))
                         for i in range(n_att))
        for k, (at, sid) in enumerate(zip(reversed(inserts), reversed(picks))):
            block = ordered[at - 1][0] if at > 0 else 0
            ordered.insert(at, (block, "@" + sid))
        main_specs = []
        for i, (b, sid) in enumerate(ordered):
            if sid.startswith("@"):
                s = sid[1:]
                main_specs.append(TrialSpec("main", i, b, s, True, src[s]))
            else:
                main_specs.append(TrialSpec("main", i, b, sid))
    else:
        main_specs = [TrialSpec("main", i, b, sid) for i, (b, sid) in enumerate(ordered)]
    return seq + main_specs
